//! One ResourceDefinition JSON file, as given to embedding.

use std::path::{Path, PathBuf};

use cup_model::ResourceDefinition;

/// Why a definition file could not be used. The message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct DefinitionFileError {
    /// The file, as it was given.
    pub path: PathBuf,
    /// What is wrong: the file is unreadable, is not one JSON definition, or fails validation.
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
    cup_model::validate_definition(&definition).map_err(|e| fail(e.to_string()))?;
    Ok(definition)
}
