//! Facts about a binary beyond its package: imports, and whether it validates.

use std::path::{Path, PathBuf};

use cup_model::ResourceDefinition;
use wasmparser::{Parser, Payload};

use crate::{Error, Result};

/// One import of a module (`module`/`name`) or a component (`name` only, `module` empty).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Import {
    pub module: String,
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

/// Why a definition file could not be used. The message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct DefinitionFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// Reads one ResourceDefinition JSON file (exactly one JSON value). Errors carry the path
/// and, for syntax errors, serde_json's line and column.
pub fn read_definition_file(
    path: &Path,
) -> std::result::Result<ResourceDefinition, DefinitionFileError> {
    let fail = |reason: String| DefinitionFileError {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let definition: ResourceDefinition =
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("invalid JSON: {e}")))?;
    cup_model::validate::definition(&definition).map_err(|e| fail(e.to_string()))?;
    Ok(definition)
}
