//! The example controller built for wasm32-wasip2 from the same source as the preview 1
//! command: a component that exports exactly `cup:controller/controller@0.1.0` (its four
//! functions) and imports nothing the host will not provide. Only the build is checked here;
//! running it is cupd's side.

use cup_e2e::flipt_component_wasm;
use wasmparser::component_types::{ComponentEntityType, ComponentItem};
use wasmparser::{Parser, Payload, Validator, WasmFeatures};

const INTERFACE: &str = "cup:controller/controller@0.1.0";
/// Declared by the world (the controller interface `use`s it), so every implementation
/// imports it; it holds only types, which a host satisfies without defining anything.
const TYPES: &str = "cup:controller/types@0.1.0";

/// The names of the top-level component's imports and exports, from its own import and
/// export sections (not those of the core modules and components nested in it).
fn top_level_names(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.expect("the component parses") {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import.expect("import").name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export.expect("export").name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    (imports, exports)
}

#[test]
fn flipt_component_exports_the_controller_interface_only() {
    let bytes = std::fs::read(flipt_component_wasm()).expect("reading the component");
    assert!(
        Parser::is_component(&bytes),
        "{} is not a component",
        flipt_component_wasm().display()
    );

    let (imports, exports) = top_level_names(&bytes);
    assert_eq!(exports, [INTERFACE], "exports");
    assert!(!imports.is_empty(), "std's WASI imports are listed");
    for import in &imports {
        assert!(
            import == TYPES || (import.starts_with("wasi:") && import.contains("@0.2.")),
            "{import} is neither WASI 0.2 nor the contract's types"
        );
        assert!(!import.starts_with("wasi:http/"), "{import}");
    }

    let types = Validator::new_with_features(WasmFeatures::default())
        .validate_all(&bytes)
        .expect("the component validates");
    let functions = |item: Option<&ComponentItem>| -> Vec<String> {
        let Some(ComponentEntityType::Instance(id)) = item.map(|item| item.ty) else {
            panic!("not an instance: {item:?}");
        };
        types[id]
            .exports
            .iter()
            .filter(|(_, item)| matches!(item.ty, ComponentEntityType::Func(_)))
            .map(|(name, _)| name.clone())
            .collect()
    };
    assert_eq!(
        functions(types.component_item_for_export(INTERFACE)),
        ["get", "list", "put", "delete"]
    );
    if imports.iter().any(|import| import == TYPES) {
        assert_eq!(
            functions(types.component_item_for_import(TYPES)),
            Vec::<String>::new(),
            "{TYPES} must hold types only"
        );
    }
}
