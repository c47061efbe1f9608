//! Runs cup controllers on wasmtime: WASI preview 1 *commands*, and components exporting
//! [`CONTROLLER_INTERFACE`] (`wit/controller.wit`), side by side.
//!
//! A [`Runtime`] owns the wasmtime engines. [`Runtime::load`] compiles a module or component
//! once (or takes it from a [`CodeCache`]), checks it and links it; [`LoadedController::invoke`] then runs one
//! request in a **fresh instance** with its own WASI context, store and memory, mounts a host
//! directory at the guest's `/`, and enforces the [`Limits`]. Instances are allocated in
//! reused slots of a wasmtime pooling allocator when one is free (see [`Limits::pooled_instances`]),
//! on freshly mapped memory otherwise. [`LoadedController::invoke_async`] runs the guest on
//! the task that polls it (an async server needs no thread hand-off; busy guests yield at
//! every epoch tick); [`LoadedController::invoke`] is its blocking form.
//!
//! ```no_run
//! use cup_runtime::{Access, CodeCache, Invocation, Limits, Runtime};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(Limits::default())?;
//! let cache = CodeCache::new("/var/cache/cup/code")?;
//! let wasm = std::fs::read("flipt.wasm")?;
//! let controller = runtime.load(&wasm, Some(&cache))?;
//! let outcome = controller.invoke(Invocation {
//!     args: ["wasi", "get", "Flag", "default", "my-flag"].map(String::from).to_vec(),
//!     stdin: Vec::new(),
//!     root: "/srv/config".into(),
//!     access: Access::ReadOnly,
//! })?;
//! assert_eq!(outcome.exit_code, 0);
//! println!("{}", String::from_utf8_lossy(&outcome.stdout));
//! # Ok(())
//! # }
//! ```
//!
//! See the crate's README.md for the sandbox in detail: what a guest can reach, the limits
//! and their defaults, and why every request gets a new instance.

// Here, not in [workspace.lints]: binaries share that table and need not document every item.
#![warn(missing_docs)]

mod cache;
mod command;
mod component;
mod error;
mod invoke;
mod limits;
mod output;
mod poll;
mod pool;
mod runtime;

pub use cache::CodeCache;
pub use command::{WASI_P1_MODULE, ensure_wasi_command};
pub use component::{CONTROLLER_INTERFACE, ControllerError};
pub use error::{CacheError, InvokeError, LoadError, RuntimeError};
pub use invoke::{Access, Invocation, Outcome};
pub use limits::Limits;
pub use pool::PoolStats;
pub use runtime::{Allocation, CacheStatus, ControllerKind, LoadInfo, LoadedController, Runtime};
