//! The shape check for WASI preview 1 commands.

use wasmtime::{ExternType, Module};

use crate::LoadError;

/// The only import module a cup controller may use.
pub const WASI_P1_MODULE: &str = "wasi_snapshot_preview1";

/// Checks that `module` is a WASI preview 1 *command* cup can run: it exports a `_start`
/// function taking and returning nothing and a 32-bit memory named `memory`, and imports only
/// functions from `wasi_snapshot_preview1`.
///
/// Done at load time so a library, a reactor (`_initialize` without `_start`), or a module built
/// for another host (`env::*` imports, WASI preview 2 adapters) is refused with a reason instead
/// of failing on every request. Whether each WASI import has the right signature is checked
/// afterwards by linking ([`Runtime::load`](crate::Runtime::load)).
pub fn ensure_wasi_command(module: &Module) -> Result<(), LoadError> {
    let refuse = |reason: String| Err(LoadError::NotACommand { reason });

    match module.get_export("_start") {
        Some(ExternType::Func(f)) => {
            if f.params().len() != 0 || f.results().len() != 0 {
                return refuse(format!(
                    "export `_start` must be a function of type [] -> [], it is {f}"
                ));
            }
        }
        Some(other) => {
            return refuse(format!(
                "export `_start` is a {}, not a function",
                kind(&other)
            ));
        }
        None => {
            let hint = if module.get_export("_initialize").is_some() {
                " (it exports `_initialize`: a WASI reactor/library, not a command)"
            } else {
                ""
            };
            return refuse(format!("it does not export `_start`{hint}"));
        }
    }

    match module.get_export("memory") {
        Some(ExternType::Memory(m)) => {
            if m.is_64() {
                return refuse(
                    "its `memory` is a 64-bit memory; WASI preview 1 needs a 32-bit one".into(),
                );
            }
        }
        Some(other) => {
            return refuse(format!(
                "export `memory` is a {}, not a memory",
                kind(&other)
            ));
        }
        None => return refuse("it does not export its linear memory as `memory`".into()),
    }

    let mut foreign = Vec::new();
    for import in module.imports() {
        let name = format!("{}::{}", import.module(), import.name());
        if import.module() != WASI_P1_MODULE {
            foreign.push(format!("{name} ({})", kind(&import.ty())));
        } else if !matches!(import.ty(), ExternType::Func(_)) {
            return refuse(format!(
                "it imports {name} as a {}; WASI preview 1 provides only functions",
                kind(&import.ty())
            ));
        }
    }
    if !foreign.is_empty() {
        let total = foreign.len();
        foreign.truncate(5);
        let more = if total > foreign.len() {
            format!(" and {} more", total - foreign.len())
        } else {
            String::new()
        };
        return refuse(format!(
            "it imports from outside {WASI_P1_MODULE}: {}{more}",
            foreign.join(", ")
        ));
    }
    Ok(())
}

fn kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "function",
        ExternType::Global(_) => "global",
        ExternType::Table(_) => "table",
        ExternType::Memory(_) => "memory",
        ExternType::Tag(_) => "tag",
    }
}
