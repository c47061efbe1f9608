use std::path::PathBuf;

use thiserror::Error;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong. Registry errors name the registry and the reference;
/// content errors name the blob (`what`) and both digests or sizes.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid digest {0:?} (expected sha256:<64 lowercase hex digits>)")]
    InvalidDigest(String),
    #[error("registry {registry}: {reference}: not found ({detail})")]
    NotFound {
        registry: String,
        reference: String,
        detail: String,
    },
    #[error(
        "registry {registry}: {reference}: unauthorised ({detail}); log in with `docker login` \
         or pass --username and --password-stdin"
    )]
    Unauthorized {
        registry: String,
        reference: String,
        detail: String,
    },
    #[error("registry {registry} is unreachable while fetching {reference}: {detail}")]
    Unreachable {
        registry: String,
        reference: String,
        detail: String,
    },
    #[error("registry {registry}: {reference}: {detail}")]
    Registry {
        registry: String,
        reference: String,
        detail: String,
    },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: size mismatch: the descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        /// What arrived; for a stream cut short past the limit, "more than N".
        actual: String,
    },
    #[error("{what}: not a cup controller artifact: {reason} (media types seen: {})", seen.join(", "))]
    MediaType {
        what: String,
        reason: String,
        seen: Vec<String>,
    },
    #[error("{what}: {reason}")]
    TooLarge { what: String, reason: String },
    #[error(
        "the module is not an intact cup controller package: {0} (use --force to push it anyway)"
    )]
    NotAPackage(String),
    #[error("reading the cup sections: {0}")]
    Sections(#[from] cup_sections::Error),
    #[error("credentials for registry {registry}: {detail}")]
    Credentials { registry: String, detail: String },
    #[error("store {}: {detail}", path.display())]
    Store { path: PathBuf, detail: String },
    #[error("{reference}: not in the store {}", store.display())]
    NotInStore { reference: String, store: PathBuf },
    #[error("archive {}: {detail}", path.display())]
    Archive { path: PathBuf, detail: String },
    #[error("invalid SOURCE_DATE_EPOCH {0:?} (expected whole seconds since 1970)")]
    SourceDateEpoch(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
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
