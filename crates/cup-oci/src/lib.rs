//! cup controllers as OCI artifacts.
//!
//! A controller is one self-describing `.wasm` (its ResourceDefinitions live in `cup.*`
//! custom sections, see `cup-sections`). This crate moves that file through OCI registries
//! and keeps it in a local, content-addressed store:
//!
//! * `artifact` ([`Artifact`]): the artifact layout (CNCF TAG-Runtime Wasm: one `application/wasm`
//!   layer, a `application/vnd.wasm.config.v0+json` config, annotations mirroring the
//!   definitions). We serialize the manifest ourselves, so its digest is known before any
//!   upload and the same module always gives the same digest.
//! * `accept` ([`classify`]): which manifests pushed by other tools are accepted on pull, and how the
//!   wasm is found in them (including the docker-buildable tar+gzip "compat" image).
//! * `store` ([`Store`]): an OCI image-layout directory (`oci-layout`, `index.json`,
//!   `blobs/sha256/<hex>`); blobs land through hashed temp files and renames, `index.json`
//!   changes under an exclusive lock, every read re-verifies the digest.
//! * `registry` ([`Registry`]): push, pull and inspect against a registry (cup's own requests on
//!   reqwest; oci-client for chunked uploads), with Docker `config.json` credentials sent
//!   only to the registry or a token service it may name, and plain HTTP only for loopback
//!   or named hosts.
//! * `archive` ([`save_archive`], [`load_archive`]): the store as an OCI-layout tarball for air-gapped machines.
//! * `signature` ([`StoredSignature`], [`signature_tag`]): where signatures of a controller
//!   live (cosign's `sha256-<hex>.sig` tag, one simple-signing layer per signature), as
//!   data: the registry, the store, pull, save and load carry them; no cryptography here.
//!
//! The user-facing description is `docs/OCI.md`.

// Here, not in [workspace.lints]: binaries share that table and need not document every item.
#![warn(missing_docs)]

mod accept;
mod archive;
mod artifact;
mod auth;
mod digest;
mod error;
mod manifest;
mod progress;
mod reference;
mod registry;
mod retry;
mod signature;
mod store;

pub use accept::{WASM_MAGIC, WasmSource, classify, extract_wasm};
pub use archive::{ArchiveReport, load as load_archive, save as save_archive};
pub use artifact::{Artifact, ArtifactOptions, annotation_mismatches, definition_keys, rfc3339};
pub use auth::Credentials;
pub use digest::validate as validate_digest;
pub use error::{Error, Result};
pub use manifest::{Descriptor, ImageIndex, ImageManifest};
pub use progress::{NoProgress, Progress};
pub use reference::ImageRef;
pub use registry::{
    PullReport, PulledLayout, PushReport, Registry, RegistryOptions, RemoteInspect,
    SIGNATURE_ARTIFACT_TYPE,
};
pub use retry::RetryPolicy;
pub use signature::{
    MAX_SIGNATURE_PAYLOAD_BYTES, MAX_SIGNATURES, SIGNATURE_ANNOTATION, SIGNATURE_CONFIG_MEDIA_TYPE,
    SIMPLE_SIGNING_MEDIA_TYPE, StoredSignature, is_signature_ref_name, parse_signature_manifest,
    signature_manifest, signature_tag,
};
pub use store::{BlobWriter, IndexEntry, StagedBlob, Store, digest_of_reference};

/// Media types this crate writes or recognises.
pub mod media {
    /// OCI image manifest: what `push` writes.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// Docker schema 2 manifest: accepted on pull (same shape as the OCI one).
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// OCI image index: refused on pull (a controller is a single manifest).
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker manifest list: refused on pull, like the OCI index.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// CNCF TAG-Runtime wasm config: what `push` writes.
    pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
    /// The wasm layer: what `push` writes.
    pub const WASM_LAYER: &str = "application/wasm";
    /// Older single-layer wasm media types, accepted on pull.
    pub const WASM_LAYER_LEGACY: [&str; 2] = [
        "application/vnd.wasm.content.layer.v1+wasm",
        "application/vnd.module.wasm.content.layer.v1+wasm",
    ];
    /// Layers of a docker-buildable image, accepted on pull when they hold a known wasm name.
    pub const TAR_GZIP_LAYERS: [&str; 2] = [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ];
    /// What the registry is asked for when fetching a manifest.
    pub const ACCEPTED_MANIFESTS: [&str; 4] =
        [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];
}

/// Annotation keys this crate writes or reads.
pub mod annotations {
    /// The layer's file name (oras and others use it when writing the file out).
    pub const TITLE: &str = "org.opencontainers.image.title";
    /// Creation time; written only when `SOURCE_DATE_EPOCH` is set.
    pub const CREATED: &str = "org.opencontainers.image.created";
    /// The reference an `index.json` entry is known by (OCI image layout).
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
    /// Controller ABI of the embedded package.
    pub const ABI: &str = "io.flipt.cup.abi";
    /// Comma-separated, sorted `group/version/plural` keys of the embedded definitions.
    pub const DEFINITIONS: &str = "io.flipt.cup.definitions";
    /// `ControllerManifest::definitions_digest()` of the embedded package.
    pub const DEFINITIONS_DIGEST: &str = "io.flipt.cup.definitions.digest";
    /// On `index.json` entries of images whose wasm is not a layer of its own (the tar+gzip
    /// compat image): the digest of the wasm blob extracted from the layer at pull time.
    pub const WASM_DIGEST: &str = "io.flipt.cup.wasm.digest";
}

/// The default file name in the title annotation.
pub const DEFAULT_TITLE: &str = "controller.wasm";

/// Largest manifest or index accepted (the same cap as containerd's).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Largest config blob fetched.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest wasm accepted, whether as a layer or unpacked from a compat image.
pub const MAX_WASM_BYTES: u64 = 1 << 30;
