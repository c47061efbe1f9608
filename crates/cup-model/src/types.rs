use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// String maps (`labels`, `annotations`); `None` is emitted as `null`, as Go does for nil maps.
pub type StringMap = Option<BTreeMap<String, String>>;

/// Metadata of configuration objects (not namespaced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObjectMeta {
    /// Name of the object, unique among objects of its kind in a config directory.
    #[serde(default)]
    pub name: String,
    /// Free-form key/value labels, carried through unchanged.
    #[serde(default)]
    pub labels: StringMap,
    /// Free-form key/value annotations, carried through unchanged.
    #[serde(default)]
    pub annotations: StringMap,
}

/// Kind names of a definition: `kind` is TitleCase (`Flag`), `plural` appears in URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Names {
    /// TitleCase kind of a resource (`Flag`), as written in its `kind` field.
    #[serde(default)]
    pub kind: String,
    /// Lower-case singular name (`flag`).
    #[serde(default)]
    pub singular: String,
    /// Lower-case plural name (`flags`): the URL segment of the resource collection.
    #[serde(default)]
    pub plural: String,
}

/// `spec` of a ResourceDefinition: the group and one JSON Schema per version. Each schema
/// validates the *whole* resource document, not only its `spec` (as the original does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DefinitionSpec {
    /// API group (`flipt.io`): the first segment of every `group/version/plural` key.
    #[serde(default)]
    pub group: String,
    /// One JSON Schema per version name; each validates the whole resource document. Serialized
    /// only when non-empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, serde_json::Value>,
}

/// A ResourceDefinition. `names` is a top-level sibling of `spec`, unlike Kubernetes CRDs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ResourceDefinition {
    /// `apiVersion`: [`CONFIG_API_VERSION`](crate::CONFIG_API_VERSION) for a valid definition.
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// Always `ResourceDefinition` for a valid definition.
    #[serde(default)]
    pub kind: String,
    /// The definition's own name and labels; the name is conventionally `<plural>.<group>`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// How resources of this definition are named in documents and URLs.
    #[serde(default)]
    pub names: Names,
    /// Group and per-version schemas.
    #[serde(default)]
    pub spec: DefinitionSpec,
}

impl ResourceDefinition {
    /// `group/version/plural` keys, one per version: the keys of `/apis` and of Bindings.
    pub fn keys(&self) -> impl Iterator<Item = String> + '_ {
        self.spec
            .versions
            .keys()
            .map(|version| format!("{}/{}/{}", self.spec.group, version, self.names.plural))
    }
}

/// Metadata of a served resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResourceMeta {
    /// Namespace the resource lives in, as named in its URL.
    #[serde(default)]
    pub namespace: String,
    /// Name of the resource, unique within its kind and namespace.
    #[serde(default)]
    pub name: String,
    /// Free-form key/value labels; `None` round-trips as `null`.
    #[serde(default)]
    pub labels: StringMap,
    /// Free-form key/value annotations; `None` round-trips as `null`.
    #[serde(default)]
    pub annotations: StringMap,
}

/// A resource as served by the API. `spec` stays raw JSON (key order preserved).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resource {
    /// `apiVersion`: `group/version` of the resource's definition.
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// The definition's `names.kind`.
    #[serde(default)]
    pub kind: String,
    /// Namespace, name, labels and annotations.
    #[serde(default)]
    pub metadata: ResourceMeta,
    /// The user's payload, kept as raw JSON so its key order and number spelling survive; `null`
    /// when absent.
    #[serde(default = "null_raw")]
    pub spec: Box<RawValue>,
}

impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        self.api_version == other.api_version
            && self.kind == other.kind
            && self.metadata == other.metadata
            && self.spec.get() == other.spec.get()
    }
}

fn null_raw() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("`null` is valid JSON")
}

/// A Controller configuration object: `spec.type` is `template` or `wasm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Controller {
    /// `apiVersion`: [`CONFIG_API_VERSION`](crate::CONFIG_API_VERSION).
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Always `Controller`.
    pub kind: String,
    /// The controller's name, which Bindings refer to.
    pub metadata: ObjectMeta,
    /// Implementation type and its settings.
    pub spec: ControllerSpec,
}

/// `spec` of a Controller: `type` selects the implementation, `spec` holds its settings.
/// Kept loose here so an unknown type gets a clear error from [`ControllerSpec::implementation`]
/// instead of a generic serde message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerSpec {
    /// Implementation type as written in `spec.type`: `template` or `wasm`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Type-specific settings, decoded by [`ControllerSpec::implementation`]; omitted when `null`.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub spec: serde_json::Value,
}

/// How a controller is implemented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Implementation {
    /// Files rendered from Go-style templates (docs/API.md, "Template controller").
    Template(TemplateSpec),
    /// A WASI preview 1 command module, from a file or an OCI image.
    Wasm(WasmSpec),
}

/// Why a Controller's `spec` is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerSpecError {
    /// `spec.type` is neither `template` nor `wasm`; holds the type found.
    #[error("unexpected controller type: {0:?} (expected \"template\" or \"wasm\")")]
    UnknownType(String),
    /// The settings do not decode as the type's spec.
    #[error("invalid {kind} controller spec: {source}")]
    Invalid {
        /// The controller type whose settings failed to decode (`template` or `wasm`).
        kind: &'static str,
        /// The decoding error, naming the offending field.
        source: serde_json::Error,
    },
    /// A wasm controller names both `path` and `image`, or neither.
    #[error("wasm controller spec needs exactly one of \"path\" or \"image\"")]
    WasmSource,
}

impl ControllerSpec {
    /// Decodes the type-specific settings.
    pub fn implementation(&self) -> Result<Implementation, ControllerSpecError> {
        match self.kind.as_str() {
            "template" => {
                let spec = if self.spec.is_null() {
                    TemplateSpec::default()
                } else {
                    serde_json::from_value(self.spec.clone()).map_err(|source| {
                        ControllerSpecError::Invalid {
                            kind: "template",
                            source,
                        }
                    })?
                };
                Ok(Implementation::Template(spec))
            }
            "wasm" => {
                let spec: WasmSpec =
                    serde_json::from_value(self.spec.clone()).map_err(|source| {
                        ControllerSpecError::Invalid {
                            kind: "wasm",
                            source,
                        }
                    })?;
                if spec.path.is_some() == spec.image.is_some() {
                    return Err(ControllerSpecError::WasmSource);
                }
                Ok(Implementation::Wasm(spec))
            }
            other => Err(ControllerSpecError::UnknownType(other.to_owned())),
        }
    }
}

/// Template controller settings; empty strings mean "use the default".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TemplateSpec {
    /// Go template of the glob that lists every resource of a kind in a namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub list_template: String,
    /// Go template of the path of one resource's file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_template: String,
}

/// Where a wasm controller's module comes from: a path relative to the config directory,
/// or an OCI reference (ideally `repo@sha256:…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WasmSpec {
    /// Path of the `.wasm` file, relative to the config directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// OCI reference of the controller image; a `@sha256:` digest pins it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Signatures the image must carry before it is run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
}

/// `spec.verify` of a wasm controller: the image's manifest digest must carry a signature
/// (cosign's format) that one of these keys made, or a keyless one whose certificate names
/// one of these identities. Unknown fields are refused, so a misspelt key cannot switch
/// verification off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// Public keys: paths of PEM files relative to the config directory, or PEM text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Keyless signers (Sigstore): the OIDC issuer and subject their certificate must name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<IdentitySpec>,
}

/// A keyless signer: its certificate's OIDC issuer, and its subject (SAN e-mail or URI),
/// exactly or as a regular expression over the whole subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// The OIDC issuer (`https://accounts.google.com`, `https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// The subject, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The subject, as a regular expression that must match all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_regexp: Option<String>,
}

/// A Binding: which definitions (`group/version/plural`) a controller serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// `apiVersion`: [`CONFIG_API_VERSION`](crate::CONFIG_API_VERSION).
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Always `Binding`.
    pub kind: String,
    /// The binding's name.
    pub metadata: ObjectMeta,
    /// Which controller serves which definitions.
    pub spec: BindingSpec,
}

/// The original decodes these case-insensitively (its Go struct has no tags), so both
/// `controller` and `Controller` are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingSpec {
    /// Name of the Controller that serves the resources.
    #[serde(alias = "Controller")]
    pub controller: String,
    /// `group/version/plural` keys of the definitions it serves; empty when absent.
    #[serde(alias = "Resources", default)]
    pub resources: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFINITION: &str = r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"resources.test.cup.flipt.io","labels":null,"annotations":null},"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":{"type":"object","properties":{"spec":{"type":"object"}}}}}}"#;

    #[test]
    fn definition_round_trips_in_go_field_order() {
        let def: ResourceDefinition = serde_json::from_str(DEFINITION).unwrap();
        assert_eq!(def.names.plural, "resources");
        assert_eq!(
            def.keys().collect::<Vec<_>>(),
            ["test.cup.flipt.io/v1alpha1/resources"]
        );
        // serde_json::Value sorts object keys, so compare through Value for the schema part
        // and exact bytes for the rest of the envelope.
        let out = serde_json::to_string(&def).unwrap();
        assert!(out.starts_with(r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"resources.test.cup.flipt.io","labels":null,"annotations":null},"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":"#));
    }

    #[test]
    fn resource_keeps_spec_bytes_and_emits_null_maps() {
        let text = r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{"namespace":"default","name":"a"},"spec":{"z":1,"a":[1.50,2]}}"#;
        let res: Resource = serde_json::from_str(text).unwrap();
        assert_eq!(res.spec.get(), r#"{"z":1,"a":[1.50,2]}"#);
        assert_eq!(
            serde_json::to_string(&res).unwrap(),
            r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{"namespace":"default","name":"a","labels":null,"annotations":null},"spec":{"z":1,"a":[1.50,2]}}"#
        );
    }

    #[test]
    fn controller_specs_decode() {
        let wasm: Controller = serde_json::from_str(
            r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"flipt"},"spec":{"type":"wasm","spec":{"image":"127.0.0.1:5000/cup/flipt@sha256:00"}}}"#,
        )
        .unwrap();
        assert!(matches!(
            wasm.spec.implementation().unwrap(),
            Implementation::Wasm(WasmSpec {
                image: Some(_),
                path: None,
                verify: None,
            })
        ));
        let verified: Controller = serde_json::from_str(
            r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"flipt"},"spec":{"type":"wasm","spec":{"image":"r/flipt@sha256:00","verify":{"keys":["keys/ci.pub"]}}}}"#,
        )
        .unwrap();
        let Implementation::Wasm(spec) = verified.spec.implementation().unwrap() else {
            panic!("a wasm controller")
        };
        assert_eq!(spec.verify.unwrap().keys, ["keys/ci.pub"]);
        let misspelt: Controller = serde_json::from_str(
            r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"flipt"},"spec":{"type":"wasm","spec":{"image":"r/flipt@sha256:00","verify":{"key":["k.pub"]}}}}"#,
        )
        .unwrap();
        let error = misspelt.spec.implementation().unwrap_err().to_string();
        assert!(error.contains("unknown field `key`"), "{error}");
        let tmpl: Controller = serde_json::from_str(
            r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"t"},"spec":{"type":"template"}}"#,
        )
        .unwrap();
        assert_eq!(
            tmpl.spec.implementation().unwrap(),
            Implementation::Template(TemplateSpec::default())
        );
        let odd = ControllerSpec {
            kind: "lua".into(),
            spec: serde_json::Value::Null,
        };
        assert_eq!(
            odd.implementation().unwrap_err().to_string(),
            r#"unexpected controller type: "lua" (expected "template" or "wasm")"#
        );
    }

    #[test]
    fn binding_accepts_go_style_keys() {
        let b: Binding = serde_json::from_str(
            r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Binding","metadata":{"name":"b"},"spec":{"Controller":"c","Resources":["g/v/p"]}}"#,
        )
        .unwrap();
        assert_eq!(b.spec.controller, "c");
        assert_eq!(b.spec.resources, ["g/v/p"]);
    }
}
