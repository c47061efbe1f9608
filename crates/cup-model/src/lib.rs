//! Cup's resource model.
//!
//! The types here have exactly the JSON shapes of the original Go cup (field names, field
//! order, `null` for absent maps), so documents written by either implementation read the
//! same in both. See `docs/API.md` for the API and `docs/FORMAT.md` for the
//! canonical form used inside `.wasm` custom sections.
//!
//! * [`ResourceDefinition`], [`Controller`], [`Binding`]: configuration objects
//!   (`apiVersion: cup.flipt.io/v1alpha1`).
//! * [`Resource`]: a user-visible object served by the API; its `spec` is kept as raw JSON so
//!   key order and numbers survive a round trip.
//! * [`canonical`]: canonical JSON (sorted keys, no whitespace), the byte form that is hashed.
//! * [`gojson`]: JSON bytes as Go's `encoding/json` writes them, the wire form of the API
//!   and of template files.
//! * [`validate`] (feature `validate`): checks a definition before it is embedded or served.

pub mod canonical;
pub mod gojson;
mod types;
#[cfg(feature = "validate")]
pub mod validate;

pub use types::*;

/// `apiVersion` of every configuration object (definitions, controllers, bindings).
pub const CONFIG_API_VERSION: &str = "cup.flipt.io/v1alpha1";
