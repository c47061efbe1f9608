//! Error types. wasmtime's own error type does not implement `std::error::Error`, so its
//! messages are carried as strings (formatted with their cause chain).

use std::path::PathBuf;
use std::time::Duration;

/// Setting up a [`Runtime`](crate::Runtime) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A limit is unusable (for example a zero epoch tick, which would spin a core).
    #[error("invalid runtime limits: {0}")]
    InvalidLimits(String),
    /// wasmtime refused the engine configuration.
    #[error("creating the wasmtime engine: {0}")]
    Engine(String),
    /// Defining the WASI preview 1 imports failed.
    #[error("defining the WASI imports: {0}")]
    Linker(String),
    /// The thread that advances the epoch (and so enforces deadlines) could not be started.
    #[error("starting the epoch thread: {0}")]
    EpochThread(#[source] std::io::Error),
}

/// Opening a [`CodeCache`](crate::CodeCache) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The cache directory could not be created or resolved to its canonical path.
    #[error("creating the compiled-code cache directory {dir}: {source}")]
    CreateDir {
        /// The directory as given.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Someone other than the server's user could put machine code in the cache (see
    /// [`CodeCache`](crate::CodeCache) for the rule).
    #[error("compiled-code cache directory {dir} is not private: {reason}")]
    NotPrivate {
        /// The cache directory, canonicalized.
        dir: PathBuf,
        /// Which ownership or permission rule it breaks, and on which path.
        reason: String,
    },
    /// The key that authenticates cache files is unusable.
    #[error("compiled-code cache key {path}: {reason}")]
    Key {
        /// The key file, `<dir>.key`.
        path: PathBuf,
        /// Why it cannot be read or created.
        reason: String,
    },
}

/// A module could not be loaded as a controller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The module is valid wasm but not a WASI preview 1 command that cup can run.
    #[error("not a WASI preview 1 command module: {reason}")]
    NotACommand {
        /// What is wrong: a component, no usable `_start`, or imports that are not WASI preview 1.
        reason: String,
    },
    /// The component is valid but not a cup controller: it does not export the controller
    /// interface this runtime speaks, or imports what the runtime does not provide.
    #[error("not a cup controller component: {reason}")]
    NotAController {
        /// What is wrong, naming the exports or the import.
        reason: String,
    },
    /// wasmtime could not compile the module (invalid wasm, unsupported feature).
    #[error("compiling the module: {0}")]
    Compile(String),
}

/// One invocation failed. The runtime and the loaded controller stay usable.
///
/// Variants for failures that happen while the guest runs carry what the guest wrote to stderr
/// until then (capped like [`Outcome::stderr`](crate::Outcome::stderr)): a Rust guest prints its
/// panic message there just before it traps, for example. [`InvokeError::stderr`] gets it for
/// any variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The guest ran past [`Limits::deadline`](crate::Limits::deadline) (`after` is that limit).
    #[error("controller ran past its deadline of {after:?}")]
    Timeout {
        /// The deadline that was exceeded.
        after: Duration,
        /// What the guest wrote to stderr before it was stopped.
        stderr: Vec<u8>,
    },
    /// The guest tried to grow its memory past [`Limits::memory_bytes`](crate::Limits::memory_bytes)
    /// (or to start with more than that).
    #[error("controller exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The memory limit in bytes.
        limit: usize,
        /// What the guest wrote to stderr before it was stopped.
        stderr: Vec<u8>,
    },
    /// The guest wrote more than [`Limits::stdout_bytes`](crate::Limits::stdout_bytes) to stdout;
    /// it was stopped at that point.
    #[error("controller wrote more than {limit} bytes to stdout")]
    OutputTooLarge {
        /// The stdout limit in bytes.
        limit: usize,
        /// What the guest wrote to stderr before it was stopped.
        stderr: Vec<u8>,
    },
    /// The guest trapped: `unreachable` (Rust's abort, after a panic), stack overflow,
    /// out-of-bounds access, ... `message` is wasmtime's description with the wasm backtrace.
    #[error("controller trapped: {message}")]
    Trap {
        /// wasmtime's description of the trap, with the wasm backtrace.
        message: String,
        /// What the guest wrote to stderr before it trapped, e.g. a Rust panic message.
        stderr: Vec<u8>,
    },
    /// The module could not be instantiated for this request.
    #[error("instantiating the controller: {0}")]
    Instantiate(String),
    /// The directory to mount at `/` could not be opened.
    #[error("mounting {root} at /: {reason}")]
    Mount {
        /// The host directory of [`Invocation::root`](crate::Invocation::root).
        root: PathBuf,
        /// Why it could not be opened.
        reason: String,
    },
    /// The request cannot be expressed as a call of the component controller interface (an
    /// unknown verb, missing arguments, a put whose resource is not JSON).
    #[error("bad request for a component controller: {0}")]
    BadRequest(String),
    /// An argument contains a NUL byte, which cannot cross the WASI argv ABI (C strings).
    #[error("argument {index} contains a NUL byte")]
    BadArgument {
        /// Position of the argument in [`Invocation::args`](crate::Invocation::args).
        index: usize,
    },
}

impl InvokeError {
    /// What the guest wrote to stderr before it failed (empty if it never ran).
    pub fn stderr(&self) -> &[u8] {
        match self {
            InvokeError::Timeout { stderr, .. }
            | InvokeError::MemoryLimit { stderr, .. }
            | InvokeError::OutputTooLarge { stderr, .. }
            | InvokeError::Trap { stderr, .. } => stderr,
            InvokeError::Instantiate(_)
            | InvokeError::Mount { .. }
            | InvokeError::BadRequest(_)
            | InvokeError::BadArgument { .. } => &[],
        }
    }
}
