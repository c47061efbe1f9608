use thiserror::Error;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading, embedding or checking a controller package.
/// Messages are meant for users: they say which input and what is wrong with it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The input does not start with the wasm magic bytes.
    #[error("not a WebAssembly file (the first bytes are not \"\\0asm\")")]
    NotWasm,
    /// The version/layer word is neither a core module's nor a component's; holds the word.
    #[error(
        "unsupported WebAssembly version/layer {0:#010x} (expected a core module or a component)"
    )]
    UnsupportedVersion(u32),
    /// The input ends inside a header or a section; the message says where.
    #[error("truncated WebAssembly file: {0}")]
    Truncated(String),
    /// A section header or name cannot be decoded.
    #[error("malformed WebAssembly at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset in the file where decoding failed.
        offset: u64,
        /// What was wrong there.
        reason: String,
    },
    /// The file has more top-level sections than [`crate::limits::MAX_SECTIONS`].
    #[error("too many sections (more than {limit})")]
    TooManySections {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A `cup.*` payload, or all of them together, is over its byte limit.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was measured: one section or definition, or the total.
        what: String,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// More definitions than [`crate::limits::MAX_DEFINITIONS`].
    #[error("too many definitions: {count} (the limit is {limit})")]
    TooManyDefinitions {
        /// How many definitions there are.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A definition fails validation.
    #[error("definition {name:?} is invalid: {source}")]
    InvalidDefinition {
        /// The definition's `metadata.name`.
        name: String,
        /// Which rule it breaks.
        #[source]
        source: cup_model::DefinitionError,
    },
    /// Two definitions share a `metadata.name`; holds the name.
    #[error("two definitions are named {0:?}")]
    DuplicateName(String),
    /// Two definitions claim the same `group/version/plural` route.
    #[error("definitions {first:?} and {second:?} both serve {key}")]
    DuplicateRoute {
        /// The contested `group/version/plural` key.
        key: String,
        /// Name of the definition that claimed it first.
        first: String,
        /// Name of the definition that claimed it again.
        second: String,
    },
    /// Embedding was asked for with an empty list of definitions.
    #[error("no definitions to embed")]
    NoDefinitions,
    /// A definition file that cannot be read, parsed or validated (the message names it).
    #[error(transparent)]
    DefinitionFile(#[from] crate::definition_file::DefinitionFileError),
    /// The package's sections do not match its manifest; holds [`crate::Integrity::summary`].
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// Reading or writing a file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
