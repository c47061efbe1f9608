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
//! * [`to_canonical_json`], [`value_to_canonical_json`]: canonical JSON (sorted keys, no
//!   whitespace), the byte form that is hashed.
//! * [`compact_go_json`], [`indent_go_json`]: JSON bytes as Go's `encoding/json` writes them,
//!   the wire form of the API and of template files.
//! * `validate_definition`, `compile_schema` (feature `validate`): check a definition before
//!   it is embedded or served.

// Here, not in [workspace.lints]: binaries share that table and need not document every item.
#![warn(missing_docs)]

mod canonical;
mod gojson;
mod types;
#[cfg(feature = "validate")]
mod validate;

pub use canonical::{to_vec as to_canonical_json, value_to_vec as value_to_canonical_json};
pub use gojson::{compact as compact_go_json, indent as indent_go_json};
pub use types::*;
#[cfg(feature = "validate")]
pub use validate::{DefinitionError, compile_schema, definition as validate_definition};

/// `apiVersion` of every configuration object (definitions, controllers, bindings).
pub const CONFIG_API_VERSION: &str = "cup.flipt.io/v1alpha1";
