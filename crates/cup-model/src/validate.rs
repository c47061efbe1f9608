//! Validation of configuration objects before they are embedded or served.

use thiserror::Error;

use crate::{CONFIG_API_VERSION, ResourceDefinition};

/// Why a ResourceDefinition is not acceptable. Messages name the offending field.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum DefinitionError {
    /// `apiVersion` is not [`CONFIG_API_VERSION`]; holds the value found.
    #[error("unexpected apiVersion {0:?} (expected \"cup.flipt.io/v1alpha1\")")]
    ApiVersion(String),
    /// `kind` is not `ResourceDefinition`; holds the value found.
    #[error("unexpected kind {0:?} (expected \"ResourceDefinition\")")]
    Kind(String),
    /// `metadata.name` is empty.
    #[error("metadata.name cannot be empty")]
    EmptyName,
    /// A required name field is empty.
    #[error("{field} cannot be empty")]
    EmptyField {
        /// Dotted path of the field, e.g. `names.kind`.
        field: &'static str,
    },
    /// A name that becomes a URL segment (group, version or plural) is `.`, `..`, or contains `/`,
    /// whitespace or a control character.
    #[error(
        "{field} {value:?} must be a single URL path segment (no '/', no whitespace, not '.' or '..')"
    )]
    BadSegment {
        /// Dotted path of the field, e.g. `spec.group`.
        field: &'static str,
        /// The value as found in the definition.
        value: String,
    },
    /// `spec.versions` has no entry.
    #[error("spec.versions cannot be empty: a definition needs at least one version")]
    NoVersions,
    /// A version's schema does not compile as JSON Schema.
    #[error("spec.versions.{version}: schema does not compile: {reason}")]
    Schema {
        /// The key under `spec.versions`.
        version: String,
        /// The schema compiler's message.
        reason: String,
    },
}

/// Checks a definition: known apiVersion/kind, names present, group/version/plural usable as
/// URL segments, at least one version, and every version's schema compiles as JSON Schema.
pub fn definition(def: &ResourceDefinition) -> Result<(), DefinitionError> {
    if def.api_version != CONFIG_API_VERSION {
        return Err(DefinitionError::ApiVersion(def.api_version.clone()));
    }
    if def.kind != "ResourceDefinition" {
        return Err(DefinitionError::Kind(def.kind.clone()));
    }
    if def.metadata.name.is_empty() {
        return Err(DefinitionError::EmptyName);
    }
    non_empty("names.kind", &def.names.kind)?;
    non_empty("names.singular", &def.names.singular)?;
    segment("names.plural", &def.names.plural)?;
    segment("spec.group", &def.spec.group)?;
    if def.spec.versions.is_empty() {
        return Err(DefinitionError::NoVersions);
    }
    for (version, schema) in &def.spec.versions {
        segment("spec.versions key", version)?;
        compile_schema(schema).map_err(|reason| DefinitionError::Schema {
            version: version.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Compiles a JSON Schema (draft auto-detected, as gojsonschema does). Remote `$ref`s are
/// not fetched: this build of jsonschema has no network resolver.
pub fn compile_schema(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

fn non_empty(field: &'static str, value: &str) -> Result<(), DefinitionError> {
    if value.is_empty() {
        return Err(DefinitionError::EmptyField { field });
    }
    Ok(())
}

fn segment(field: &'static str, value: &str) -> Result<(), DefinitionError> {
    non_empty(field, value)?;
    let bad = value == "."
        || value == ".."
        || value
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(DefinitionError::BadSegment {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ResourceDefinition {
        serde_json::from_str(r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"flags.flipt.io"},"names":{"kind":"Flag","singular":"flag","plural":"flags"},"spec":{"group":"flipt.io","versions":{"v1alpha1":{"type":"object"}}}}"#).unwrap()
    }

    #[test]
    fn accepts_a_good_definition() {
        assert_eq!(definition(&sample()), Ok(()));
    }

    #[test]
    fn names_each_problem() {
        let mut d = sample();
        d.api_version = "v1".into();
        assert_eq!(
            definition(&d),
            Err(DefinitionError::ApiVersion("v1".into()))
        );

        let mut d = sample();
        d.names.plural = "a/b".into();
        assert!(matches!(
            definition(&d),
            Err(DefinitionError::BadSegment {
                field: "names.plural",
                ..
            })
        ));

        let mut d = sample();
        d.spec.versions.clear();
        assert_eq!(definition(&d), Err(DefinitionError::NoVersions));

        let mut d = sample();
        d.spec
            .versions
            .insert("v1".into(), serde_json::json!({"type": 12}));
        let err = definition(&d).unwrap_err().to_string();
        assert!(
            err.starts_with("spec.versions.v1: schema does not compile"),
            "{err}"
        );
    }
}
