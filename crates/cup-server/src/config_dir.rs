//! The config directory (`-api-resources`, the original cup's format): every `*.json` file below
//! it, recursively, in lexical order; only the first JSON value of each file is read.
//! Each must be a `cup.flipt.io/v1alpha1` object with a non-empty `metadata.name`; kinds
//! `ResourceDefinition`, `Controller` and `Binding` are used, others ignored. Every error
//! names the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cup_model::{Binding, CONFIG_API_VERSION, Controller, Implementation, ResourceDefinition};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::discovery;

/// A configuration problem; startup stops on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A directory of the config tree cannot be listed.
    #[error("reading config directory {dir}: {source}")]
    Walk {
        /// The directory that could not be read.
        dir: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file cannot be read, is not JSON, or is not a valid configuration object.
    #[error("parsing api resource {file:?}: {message}")]
    File {
        /// The file's path relative to the config directory.
        file: String,
        /// What is wrong with it.
        message: String,
    },
    /// The files contradict each other, such as a Binding that names a Controller no file defines;
    /// the message names the files.
    #[error("{0}")]
    Conflict(String),
}

/// A definition from a file, with its `/apis` encoding (schemas kept as written).
#[derive(Debug, Clone)]
pub struct ConfigDefinition {
    /// The file it came from, relative to the config directory.
    pub file: String,
    /// The definition as decoded.
    pub definition: ResourceDefinition,
    /// Its JSON as served under `/apis`, with the schemas exactly as written in the file.
    pub discovery: String,
}

/// A Controller from a file.
#[derive(Debug, Clone)]
pub struct ConfiguredController {
    /// The file it came from, relative to the config directory.
    pub file: String,
    /// The controller's `metadata.name`, which Bindings refer to.
    pub name: String,
    /// How it is implemented: template settings or where its wasm comes from.
    pub implementation: Implementation,
}

/// A Binding from a file.
#[derive(Debug, Clone)]
pub struct ConfiguredBinding {
    /// The file it came from, relative to the config directory.
    pub file: String,
    /// The Binding as decoded.
    pub binding: Binding,
}

/// Everything the directory holds.
#[derive(Debug, Clone, Default)]
pub struct ConfigDir {
    /// The config directory itself; wasm paths are relative to it.
    pub root: PathBuf,
    /// Every definition, in file order.
    pub definitions: Vec<ConfigDefinition>,
    /// Controllers by name.
    pub controllers: BTreeMap<String, ConfiguredController>,
    /// Bindings by name.
    pub bindings: BTreeMap<String, ConfiguredBinding>,
}

impl ConfigDir {
    /// The definition serving `group/version/plural`, if any.
    pub fn definition_for(&self, key: &str) -> Option<&ConfigDefinition> {
        self.definitions
            .iter()
            .find(|d| d.definition.keys().any(|k| k == key))
    }

    /// Whether some Binding names this controller.
    pub fn is_bound(&self, controller: &str) -> bool {
        self.bindings
            .values()
            .any(|b| b.binding.spec.controller == controller)
    }
}

/// The envelope every file must have.
#[derive(Deserialize)]
struct Header {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: HeaderMeta,
}

#[derive(Deserialize, Default)]
struct HeaderMeta {
    #[serde(default)]
    name: String,
}

/// Loads and cross-checks the directory.
pub fn load(root: &Path) -> Result<ConfigDir, ConfigError> {
    let mut dir = ConfigDir {
        root: root.to_owned(),
        ..ConfigDir::default()
    };
    for file in json_files(root)? {
        let rel = relative(root, &file);
        load_file(&mut dir, &file, &rel).map_err(|problem| {
            let message = match problem {
                FileProblem::Invalid(message) => message,
                // Most often the directory is not a config directory at all (cupd run with
                // the default `.` in a project).
                FileProblem::Foreign(message) => format!(
                    "{message}; every JSON file under {} must be a cup object (Controller, \
                     ResourceDefinition, Binding): pass -api-resources DIR naming the \
                     directory that holds only those",
                    root.display()
                ),
            };
            ConfigError::File {
                file: rel.clone(),
                message,
            }
        })?;
    }
    check_references(&dir)?;
    Ok(dir)
}

/// Why a config file was refused.
enum FileProblem {
    /// Not a cup object at all: not JSON, empty, or another API's document.
    Foreign(String),
    /// A cup object that is wrong, or a file that cannot be read.
    Invalid(String),
}

fn load_file(dir: &mut ConfigDir, path: &Path, rel: &str) -> Result<(), FileProblem> {
    let invalid = |e: &dyn std::fmt::Display| FileProblem::Invalid(e.to_string());
    let bytes = std::fs::read(path).map_err(|e| invalid(&e))?;
    let raw = first_value(&bytes).map_err(FileProblem::Foreign)?;
    let header: Header = serde_json::from_str(raw.get()).map_err(|e| invalid(&e))?;
    if header.api_version != CONFIG_API_VERSION {
        return Err(FileProblem::Foreign(format!(
            "unexpected APIVersion: {:?} (expected {CONFIG_API_VERSION:?})",
            header.api_version
        )));
    }
    if header.metadata.name.is_empty() {
        return Err(invalid(&"name cannot be empty"));
    }
    let added = match header.kind.as_str() {
        "ResourceDefinition" => add_definition(dir, raw.get(), rel),
        "Controller" => add_controller(dir, raw.get(), rel),
        "Binding" => add_binding(dir, raw.get(), rel),
        other => {
            tracing::debug!(
                file = rel,
                kind = other,
                "ignoring config object of unknown kind"
            );
            Ok(())
        }
    };
    added.map_err(FileProblem::Invalid)
}

fn first_value(bytes: &[u8]) -> Result<Box<RawValue>, String> {
    let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<Box<RawValue>>();
    match values.next() {
        Some(Ok(raw)) => Ok(raw),
        Some(Err(e)) => Err(format!("invalid JSON: {e}")),
        None => Err("empty file (expected a JSON object)".into()),
    }
}

fn add_definition(dir: &mut ConfigDir, raw: &str, rel: &str) -> Result<(), String> {
    let definition: ResourceDefinition = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    check_routable(&definition)?;
    for key in definition.keys() {
        if let Some(other) = dir.definition_for(&key) {
            return Err(format!("{key} is already defined by {:?}", other.file));
        }
    }
    let discovery = discovery::encode_raw(&definition, raw).map_err(|e| e.to_string())?;
    dir.definitions.push(ConfigDefinition {
        file: rel.to_owned(),
        definition,
        discovery,
    });
    Ok(())
}

/// What routing needs: URL-safe group and plural, a kind, schemas that compile. The
/// original checks only the schemas (at route registration); an empty group or plural
/// would give routes no client can name.
fn check_routable(def: &ResourceDefinition) -> Result<(), String> {
    for (field, value) in [
        ("spec.group", &def.spec.group),
        ("names.plural", &def.names.plural),
        ("names.kind", &def.names.kind),
    ] {
        if value.is_empty() || value.contains('/') || value == "." || value == ".." {
            return Err(format!(
                "{field} {value:?} must be one non-empty URL path segment"
            ));
        }
    }
    for (version, schema) in &def.spec.versions {
        if version.is_empty() || version.contains('/') {
            return Err(format!(
                "version {version:?} must be one non-empty URL path segment"
            ));
        }
        cup_model::compile_schema(schema)
            .map_err(|e| format!("spec.versions.{version}: schema does not compile: {e}"))?;
    }
    Ok(())
}

fn add_controller(dir: &mut ConfigDir, raw: &str, rel: &str) -> Result<(), String> {
    let controller: Controller = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let implementation = controller
        .spec
        .implementation()
        .map_err(|e| e.to_string())?;
    let name = controller.metadata.name;
    if let Some(other) = dir.controllers.get(&name) {
        return Err(format!(
            "controller {name:?} is already defined by {:?}",
            other.file
        ));
    }
    dir.controllers.insert(
        name.clone(),
        ConfiguredController {
            file: rel.to_owned(),
            name,
            implementation,
        },
    );
    Ok(())
}

fn add_binding(dir: &mut ConfigDir, raw: &str, rel: &str) -> Result<(), String> {
    let binding: Binding = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let name = binding.metadata.name.clone();
    if let Some(other) = dir.bindings.get(&name) {
        return Err(format!(
            "binding {name:?} is already defined by {:?}",
            other.file
        ));
    }
    dir.bindings.insert(
        name,
        ConfiguredBinding {
            file: rel.to_owned(),
            binding,
        },
    );
    Ok(())
}

/// Bindings must name existing controllers (as in the original: a startup error). Their
/// definitions may come from a module, so those are checked once modules are loaded.
fn check_references(dir: &ConfigDir) -> Result<(), ConfigError> {
    for b in dir.bindings.values() {
        let controller = &b.binding.spec.controller;
        if !dir.controllers.contains_key(controller) {
            return Err(ConfigError::Conflict(format!(
                "binding {:?} ({}): controller {controller:?} is not defined in the config directory",
                b.binding.metadata.name, b.file
            )));
        }
    }
    Ok(())
}

/// Regular `*.json` files below `root` in Go `WalkDir` order (lexical, depth first), which
/// is the order of their paths compared component by component. Symbolic links are not
/// followed, as in the original.
fn json_files(root: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let walk_err = |source| ConfigError::Walk {
        dir: root.to_owned(),
        source,
    };
    let mut out = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(walk_err)? {
            let entry = entry.map_err(walk_err)?;
            let kind = entry.file_type().map_err(walk_err)?;
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|x| x == "json") {
                out.push(path);
            }
        }
    }
    out.sort_by(|a, b| a.components().cmp(b.components()));
    Ok(out)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: &str = r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"resources.test.cup.flipt.io"},"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":{"type":"object","properties":{"spec":{"type":"object"}}}}}}"#;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn loads_every_kind_recursively_and_ignores_others() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "defs/resources.json", DEF);
        write(
            dir.path(),
            "template.json",
            r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"template"},"spec":{"type":"template"}}"#,
        );
        write(
            dir.path(),
            "binding.json",
            r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Binding","metadata":{"name":"b"},"spec":{"controller":"template","resources":["test.cup.flipt.io/v1alpha1/resources"]}} trailing"#,
        );
        write(
            dir.path(),
            "other.json",
            r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Widget","metadata":{"name":"w"}}"#,
        );
        write(dir.path(), "notes.txt", "not json");
        let config = load(dir.path()).unwrap();
        assert_eq!(config.definitions.len(), 1);
        assert_eq!(config.definitions[0].file, "defs/resources.json");
        assert!(config.controllers.contains_key("template"));
        assert!(config.is_bound("template"));
        assert!(
            config
                .definition_for("test.cup.flipt.io/v1alpha1/resources")
                .is_some()
        );
    }

    #[test]
    fn errors_name_the_file() {
        let cases = [
            (
                r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"x"}}"#,
                "unexpected APIVersion",
            ),
            (
                r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Binding","metadata":{}}"#,
                "name cannot be empty",
            ),
            ("{nope", "invalid JSON"),
            (
                r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"c"},"spec":{"type":"lua"}}"#,
                "unexpected controller type",
            ),
        ];
        for (text, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "sub/bad.json", text);
            let err = load(dir.path()).unwrap_err().to_string();
            assert!(
                err.starts_with("parsing api resource \"sub/bad.json\": "),
                "{err}"
            );
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn a_binding_to_an_unknown_controller_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "b.json",
            r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Binding","metadata":{"name":"b"},"spec":{"controller":"ghost","resources":[]}}"#,
        );
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("controller \"ghost\" is not defined"), "{err}");
    }

    #[test]
    fn bad_schemas_and_duplicate_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.json",
            &DEF.replace(
                r#""type":"object","properties""#,
                r#""type":12,"properties""#,
            ),
        );
        assert!(
            load(dir.path())
                .unwrap_err()
                .to_string()
                .contains("schema does not compile")
        );
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.json", DEF);
        write(
            dir.path(),
            "b.json",
            &DEF.replace("resources.test", "other.test"),
        );
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("\"b.json\"") && err.contains("already defined by \"a.json\""),
            "{err}"
        );
    }
}
