//! Self-describing cup controllers: ResourceDefinitions embedded as wasm custom sections.
//!
//! A controller package is one `.wasm` file (a core module or a component) that carries,
//! after its own sections, at the top level:
//!
//! * one `cup.controller` section: a [`ControllerManifest`] (format version, controller ABI,
//!   the sha256 of every embedded definition and of the module without `cup.*` sections);
//! * one `cup.definition` section per ResourceDefinition, as canonical JSON, ordered by
//!   `metadata.name`.
//!
//! The crate has three jobs, each a module:
//!
//! * `layout` ([`Layout`]): walk the section headers of a module (in memory or by seeking in
//!   a file), never decoding or copying code. Reading the definitions of a 14 MB module
//!   touches only its headers and its `cup.*` payloads.
//! * `embed` ([`embed`]): drop any old `cup.*` sections, copy every other section byte for
//!   byte, append the new ones. Deterministic and idempotent. [`embed_files`] is the whole
//!   command: read definition files ([`read_definition_file`]), embed into a file, write
//!   atomically.
//! * `package` ([`read_package`]): read the `cup.*` sections back and judge their integrity
//!   ([`Integrity`]): ok, no cup sections, stripped, or tampered (with what differs).
//!
//! Besides, `wasm` tells a module's [`imports`] and whether it validates ([`validate_wasm`]).
//!
//! The exact formats and limits are in `docs/FORMAT.md`.

// Here, not in [workspace.lints]: binaries share that table and need not document every item.
#![warn(missing_docs)]

mod definition_file;
mod embed;
mod error;
mod layout;
mod manifest;
mod package;
mod wasm;

pub use definition_file::{DefinitionFileError, read_definition_file};
pub use embed::{EmbedOutput, embed, embed_file, embed_files};
pub use error::{Error, Result};
pub use layout::{CustomName, Encoding, Layout, PREAMBLE_LEN, SectionHeader};
pub use manifest::{
    ABI_COMPONENT, ABI_WASI_P1, ControllerManifest, DefinitionDigest, FORMAT_VERSION, ModuleDigest,
    abi_for,
};
pub use package::{
    EmbeddedDefinition, Integrity, Package, ReadPackage, check_bytes, read_definitions_file,
    read_definitions_reader, read_package, read_package_and_digest, read_package_from,
};
pub use wasm::{Import, component_exports, imports, validate as validate_wasm};

/// Custom section name of each embedded ResourceDefinition.
pub const DEFINITION_SECTION: &str = "cup.definition";
/// Custom section name of the single controller manifest.
pub const CONTROLLER_SECTION: &str = "cup.controller";
/// Prefix of every section this crate owns; re-embedding drops all of them.
pub const CUP_PREFIX: &str = "cup.";

/// Documented caps (docs/FORMAT.md). They bound memory and time spent on untrusted modules.
pub mod limits {
    /// Most definitions one module may carry.
    pub const MAX_DEFINITIONS: usize = 64;
    /// Largest `cup.definition` payload (one definition's canonical JSON).
    pub const MAX_DEFINITION_BYTES: usize = 1 << 20;
    /// Largest `cup.controller` payload.
    pub const MAX_MANIFEST_BYTES: usize = 64 << 10;
    /// Largest total of all `cup.*` payloads in one module.
    pub const MAX_CUP_BYTES: usize = 4 << 20;
    /// Most top-level sections the scanner accepts (a wasm file has a few dozen in practice;
    /// the cap keeps a hostile file of millions of empty sections from exhausting memory).
    pub const MAX_SECTIONS: usize = 65_536;
    /// Longest custom-section name read; longer names cannot be `cup.*` names anyway.
    pub const MAX_SECTION_NAME: usize = 1024;
}

/// `sha256:<hex>` of some bytes, the digest notation used by OCI and in the manifest.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    finish_digest(sha2::Sha256::new_with_prefix(bytes))
}

/// The digest notation of what `hasher` has seen.
pub(crate) fn finish_digest(hasher: sha2::Sha256) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(hasher.finalize()))
}
