//! The `cup.controller` manifest: what a package claims about itself.

use serde::{Deserialize, Serialize};

/// Format version written by this crate. Readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;

/// The controller ABI of cup's WASI preview 1 command protocol
/// (`["wasi", verb, Kind, namespace, name?]`, JSON on stdin/stdout, exit 0/2/other).
pub const ABI_WASI_P1: &str = "cup.wasi-p1.v1";

/// The controller ABI of a component: the versioned interface it exports
/// (`wit/controller.wit`), whose calls are typed.
pub const ABI_COMPONENT: &str = "cup:controller/controller@0.1.0";

/// The ABI a binary of this encoding speaks: [`ABI_WASI_P1`] for a core module,
/// [`ABI_COMPONENT`] for a component.
pub fn abi_for(encoding: crate::Encoding) -> &'static str {
    match encoding {
        crate::Encoding::Module => ABI_WASI_P1,
        crate::Encoding::Component => ABI_COMPONENT,
    }
}

/// Canonical JSON content of the `cup.controller` section (docs/FORMAT.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerManifest {
    /// Version of this manifest format ([`FORMAT_VERSION`]).
    pub format: u32,
    /// Controller ABI the module speaks ([`ABI_WASI_P1`] or [`ABI_COMPONENT`]).
    pub abi: String,
    /// The module with every `cup.*` section removed.
    pub module: ModuleDigest,
    /// One entry per `cup.definition` section, ordered by name.
    pub definitions: Vec<DefinitionDigest>,
}

/// Digest and size of the module without its `cup.*` sections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleDigest {
    /// `sha256:<hex>`.
    pub sha256: String,
    /// Length in bytes of the module without its `cup.*` sections.
    pub size: u64,
}

/// Name and digest of one embedded definition (of its canonical JSON section payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionDigest {
    /// The definition's `metadata.name`.
    pub name: String,
    /// `sha256:<hex>` of the section payload.
    pub sha256: String,
}

impl ControllerManifest {
    /// Canonical JSON bytes (the section payload).
    pub fn to_canonical(&self) -> Vec<u8> {
        cup_model::to_canonical_json(self).expect("a manifest always serialises")
    }

    /// Digest identifying the set of embedded definitions: sha256 of the canonical JSON of
    /// the `definitions` list. Mirrored into OCI annotations.
    pub fn definitions_digest(&self) -> String {
        let bytes = cup_model::to_canonical_json(&self.definitions)
            .expect("a definition list always serialises");
        crate::sha256_digest(&bytes)
    }
}
