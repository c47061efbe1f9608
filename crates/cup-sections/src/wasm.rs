//! What the wasm itself says, beyond its package: its imports, and whether it validates.

use wasmparser::{Parser, Payload};

use crate::{Error, Result};

/// One import of a module (`module`/`name`) or a component (`name` only, `module` empty).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Import {
    /// Module name of a core module's import; empty for a component.
    pub module: String,
    /// The imported item's name (a field of `module`, or a component import).
    pub name: String,
}

/// Top-level imports. Parsing stops at the first section that comes after imports, so
/// code is never read.
pub fn imports(bytes: &[u8]) -> Result<Vec<Import>> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(malformed)?;
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(malformed)?;
                    out.push(Import {
                        module: import.module.to_owned(),
                        name: import.name.to_owned(),
                    });
                }
            }
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(malformed)?;
                    out.push(Import {
                        module: String::new(),
                        name: import.name.name.to_owned(),
                    });
                }
            }
            Payload::FunctionSection(_)
            | Payload::CodeSectionStart { .. }
            | Payload::ModuleSection { .. }
            | Payload::End(_) => break,
            _ => {}
        }
    }
    Ok(out)
}

/// A component's top-level exports (for a controller, `cup:controller/controller@<version>`);
/// empty for a core module. Nested modules and components are skipped, not searched.
pub fn component_exports(bytes: &[u8]) -> Result<Vec<String>> {
    if !Parser::is_component(bytes) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    // parse_all descends into nested modules and components; each ends with its own `End`.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth == 0 => break,
            Payload::End(_) => depth -= 1,
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    out.push(export.map_err(malformed)?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Full validation with every wasm feature wasmparser knows (the runtime decides later
/// which features it accepts).
pub fn validate(bytes: &[u8]) -> Result<()> {
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)
        .map(|_| ())
        .map_err(malformed)
}

fn malformed(e: wasmparser::BinaryReaderError) -> Error {
    Error::Malformed {
        offset: e.offset() as u64,
        reason: e.message().to_owned(),
    }
}
