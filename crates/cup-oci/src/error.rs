use std::path::PathBuf;

use thiserror::Error;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong. Registry errors name the registry and the reference;
/// content errors name the blob (`what`) and both digests or sizes.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An image reference does not parse.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A digest is not `sha256:` followed by 64 lowercase hex digits; holds the digest.
    #[error("invalid digest {0:?} (expected sha256:<64 lowercase hex digits>)")]
    InvalidDigest(String),
    /// The registry answered that the manifest or blob does not exist (HTTP 404).
    #[error("registry {registry}: {reference}: not found ({detail})")]
    NotFound {
        /// Registry host (`host[:port]`) the request went to.
        registry: String,
        /// The image reference being pushed, pulled or inspected.
        reference: String,
        /// The registry's answer.
        detail: String,
    },
    /// The registry refused the credentials, or asked for some and none were given (HTTP
    /// 401 or 403).
    #[error(
        "registry {registry}: {reference}: unauthorised ({detail}); log in with `docker login` \
         or pass --username and --password-stdin"
    )]
    Unauthorized {
        /// Registry host (`host[:port]`) the request went to.
        registry: String,
        /// The image reference being pushed, pulled or inspected.
        reference: String,
        /// The registry's answer.
        detail: String,
    },
    /// No answer: the connection could not be made or timed out.
    #[error("registry {registry} is unreachable while fetching {reference}: {detail}")]
    Unreachable {
        /// Registry host (`host[:port]`) the request went to.
        registry: String,
        /// The image reference being pushed, pulled or inspected.
        reference: String,
        /// The transport error; it says so when retries ran out.
        detail: String,
    },
    /// Any other failure the registry reported, or a request it cut short.
    #[error("registry {registry}: {reference}: {detail}")]
    Registry {
        /// Registry host (`host[:port]`) the request went to.
        registry: String,
        /// The image reference being pushed, pulled or inspected.
        reference: String,
        /// The registry's answer or the transport error.
        detail: String,
    },
    /// Content does not hash to the digest that names it: a corrupt download or store file.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Which manifest or blob, and where it came from.
        what: String,
        /// The digest it is named by.
        expected: String,
        /// The digest of what was read.
        actual: String,
    },
    /// Content does not have the size its descriptor records.
    #[error("{what}: size mismatch: the descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        /// Which blob, and where it came from.
        what: String,
        /// The size in the descriptor.
        expected: u64,
        /// What arrived; for a stream cut short past the limit, "more than N".
        actual: String,
    },
    /// A pulled manifest is not one cup accepts, or its wasm cannot be found in it.
    #[error("{what}: not a cup controller artifact: {reason} (media types seen: {})", seen.join(", "))]
    MediaType {
        /// Which manifest or layer was refused.
        what: String,
        /// Why it is not accepted as a cup controller.
        reason: String,
        /// The media types found, for the message.
        seen: Vec<String>,
    },
    /// A manifest, blob or unpacked wasm is over the size cup accepts, refused before it is
    /// read whole.
    #[error("{what}: {reason}")]
    TooLarge {
        /// Which manifest, blob or layer.
        what: String,
        /// Its size against the limit.
        reason: String,
    },
    /// A signature manifest (the `sha256-<hex>.sig` tag) has a layer that is not a
    /// signature: another media type, or no signature annotation. Reported rather than
    /// skipped, so a manifest with extra layers is never mistaken for a clean one.
    #[error(
        "{what}: layer {digest} ({media_type}) is not a signature: {reason} (a signature \
         manifest with a foreign layer)"
    )]
    ForeignSignatureLayer {
        /// Which signature manifest, and where it came from.
        what: String,
        /// The layer's digest.
        digest: String,
        /// The layer's media type.
        media_type: String,
        /// Why it is not a signature layer.
        reason: String,
    },
    /// A signature manifest cannot be built, or one read is not a usable image manifest.
    #[error("{what}: not a signature manifest: {reason}")]
    InvalidSignatureManifest {
        /// Which signature manifest, and where it came from.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A push of a module whose `cup.*` sections fail their integrity check, without
    /// `--force`; holds the integrity summary.
    #[error(
        "the module is not an intact cup controller package: {0} (use --force to push it anyway)"
    )]
    NotAPackage(String),
    /// The module's `cup.*` sections cannot be read.
    #[error("reading the cup sections: {0}")]
    Sections(#[from] cup_sections::Error),
    /// Credentials cannot be found or used: an unreadable Docker config, a failing credential
    /// helper, or a token service they may not be sent to.
    #[error("credentials for registry {registry}: {detail}")]
    Credentials {
        /// Registry host the credentials are for.
        registry: String,
        /// What went wrong.
        detail: String,
    },
    /// The local store is not a usable OCI image layout, or an entry in it is malformed.
    #[error("store {}: {detail}", path.display())]
    Store {
        /// Root directory of the store.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A reference or digest names nothing in the local store.
    #[error("{reference}: not in the store {}", store.display())]
    NotInStore {
        /// The reference or digest asked for.
        reference: String,
        /// Root directory of the store.
        store: PathBuf,
    },
    /// An OCI-layout archive cannot be written or read, or its content is refused.
    #[error("archive {}: {detail}", path.display())]
    Archive {
        /// The archive file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// `SOURCE_DATE_EPOCH` is set but is not whole seconds; holds its value.
    #[error("invalid SOURCE_DATE_EPOCH {0:?} (expected whole seconds since 1970)")]
    SourceDateEpoch(String),
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
