//! The JSON documents of OCI: image manifest, descriptor, image index.
//!
//! Field order of the structs is the serialization order, and maps are `BTreeMap`s, so the
//! bytes this crate writes are deterministic. Unknown descriptor fields (`platform`, `urls`,
//! …) are kept in `extra`, so rewriting an `index.json` another tool wrote loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content the descriptor points to.
    pub media_type: String,
    /// `sha256:` digest of that content.
    pub digest: String,
    /// Size of the content in bytes.
    pub size: u64,
    /// Annotations of the descriptor; in an `index.json`, `org.opencontainers.image.ref.name`
    /// carries the tag.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Fields this crate does not interpret (`platform`, `urls`, ...), kept so a rewrite loses
    /// nothing.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Descriptor {
    /// A descriptor with no annotations and no extra fields.
    pub fn new(media_type: &str, digest: String, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// The value of annotation `key`, if present.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }
}

/// An OCI image manifest (also the shape of a Docker schema 2 manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// `schemaVersion`: 2 for every current manifest and index.
    pub schema_version: u32,
    /// The manifest's own media type, when it states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type, when set (OCI 1.1 artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Descriptor of the config blob.
    pub config: Descriptor,
    /// Descriptors of the layers; cup's artifacts have exactly one, the wasm.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations; cup's mirror the embedded definitions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// The value of annotation `key`, if present.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// The `group/version/plural` keys listed in the definitions annotation.
    pub fn definition_keys(&self) -> Vec<String> {
        self.annotation(crate::annotations::DEFINITIONS)
            .map(|list| {
                list.split(',')
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An OCI image index: the `index.json` of a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// `schemaVersion`: 2 for every current manifest and index.
    pub schema_version: u32,
    /// The index's own media type, when it states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// One descriptor per manifest the layout holds, tagged ones named by annotation.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations of the index itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ImageIndex {
    fn default() -> Self {
        ImageIndex {
            schema_version: 2,
            media_type: Some(crate::media::OCI_INDEX.to_owned()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }
}

/// Just enough of any manifest-like document to tell what it is.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Probe {
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<serde_json::Value>,
    #[serde(default)]
    pub layers: Option<serde_json::Value>,
}
