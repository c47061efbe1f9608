use thiserror::Error;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading, embedding or checking a controller package.
/// Messages are meant for users: they say which input and what is wrong with it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("not a WebAssembly file (the first bytes are not \"\\0asm\")")]
    NotWasm,
    #[error(
        "unsupported WebAssembly version/layer {0:#010x} (expected a core module or a component)"
    )]
    UnsupportedVersion(u32),
    #[error("truncated WebAssembly file: {0}")]
    Truncated(String),
    #[error("malformed WebAssembly at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    #[error("too many sections (more than {limit})")]
    TooManySections { limit: usize },
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
    #[error("too many definitions: {count} (the limit is {limit})")]
    TooManyDefinitions { count: usize, limit: usize },
    #[error("definition {name:?} is invalid: {source}")]
    InvalidDefinition {
        name: String,
        #[source]
        source: cup_model::DefinitionError,
    },
    #[error("two definitions are named {0:?}")]
    DuplicateName(String),
    #[error("definitions {first:?} and {second:?} both serve {key}")]
    DuplicateRoute {
        key: String,
        first: String,
        second: String,
    },
    #[error("no definitions to embed")]
    NoDefinitions,
    /// A definition file that cannot be read, parsed or validated (the message names it).
    #[error(transparent)]
    DefinitionFile(#[from] crate::definition_file::DefinitionFileError),
    #[error("integrity check failed: {0}")]
    Integrity(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
