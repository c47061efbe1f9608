//! Write cup controllers in Rust.
//!
//! A controller implements [`Controller`]; this crate turns it into one of the two kinds of
//! WebAssembly controller of docs/ABI.md, from the same code:
//!
//! * a WASI preview 1 **command** (`wasm32-wasip1`): `fn main` returns [`run`], which reads
//!   the operation from argv and stdin and answers on stdout and with the exit code;
//! * a **component** (`wasm32-wasip2`, the `component` feature): `export_component!`
//!   exports the controller as `cup:controller/controller@0.1.0`, the world `cup-controller`
//!   of wit/controller.wit, whose functions take and return typed values.
//!
//! Either way the host makes a fresh instance for every operation, with the source tree at
//! `/`, and the SDK refuses a kind not in [`Controller::kinds`] or a namespace or name that is
//! not a single path segment before any method runs.
//!
//! # The preview 1 command
//!
//! | argv | stdin | stdout on success |
//! |---|---|---|
//! | `wasi get <Kind> <namespace> <name>` | – | one compact JSON [`Resource`] + `\n` |
//! | `wasi list <Kind> <namespace>` | – | one compact JSON [`Resource`] + `\n` per item |
//! | `wasi put <Kind> <namespace> <name>` | one JSON [`Resource`] | – |
//! | `wasi delete <Kind> <namespace> <name>` | – | – |
//!
//! Exit codes: [`EXIT_OK`] (0), [`EXIT_NOT_FOUND`] (2) for [`Error::NotFound`], and
//! [`EXIT_ERROR`] (1) for everything else, with a one-line message on stderr. Nothing is
//! written to stdout unless the whole operation succeeded.
//!
//! ```no_run
//! use cup_controller_sdk::{Controller, Error, Request, Resource};
//!
//! struct Notes;
//!
//! impl Controller for Notes {
//!     fn kinds(&self) -> &[&str] {
//!         &["Note"]
//!     }
//!     fn get(&self, _req: &Request, name: &str) -> Result<Resource, Error> {
//!         Err(Error::NotFound(format!("note {name:?} does not exist")))
//!     }
//!     fn list(&self, _req: &Request) -> Result<Vec<Resource>, Error> {
//!         Ok(Vec::new())
//!     }
//!     fn put(&self, req: &Request, name: &str, resource: Resource) -> Result<(), Error> {
//!         req.check_identity(name, &resource)?;
//!         Err(Error::Invalid("notes are read-only".into()))
//!     }
//!     fn delete(&self, _req: &Request, name: &str) -> Result<(), Error> {
//!         Err(Error::NotFound(format!("note {name:?} does not exist")))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     cup_controller_sdk::run(&Notes)
//! }
//! ```
//!
//! # The component
//!
//! With the `component` feature, `export_component!` at the root of a library crate
//! exports the controller; the library is then linked as a `cdylib` for `wasm32-wasip2`,
//! which makes a component (a reactor: it exports the controller interface and no
//! `wasi:cli/run`). The `Notes` above, in `src/lib.rs`:
//!
//! ```ignore
//! cup_controller_sdk::export_component!(Notes);
//! ```
//!
//! ```sh
//! cargo rustc --release --target wasm32-wasip2 --lib --crate-type cdylib
//! ```
//!
//! One crate can build both: the library holds the controller, a `src/main.rs` calling
//! [`run`] is the command, and the export and the feature are limited to wasm32-wasip2
//! (`#[cfg(all(target_os = "wasi", target_env = "p2"))]` on the macro call and a
//! `[target.'cfg(all(target_os = "wasi", target_env = "p2"))'.dependencies]` entry turning
//! on `component`). examples/flipt is laid out this way.
//!
//! The exports check the request as [`run`] does and call the same methods. A resource
//! travels as a WIT record: `spec` as JSON text (a `put` whose spec is not one JSON value is
//! refused as `invalid`), labels and annotations as `option<list<tuple<string, string>>>`
//! (`None` is JSON `null`; pairs come in the map's order). Errors become the WIT `error`
//! variant: [`Error::NotFound`] is `not-found` (404), [`Error::Invalid`] is `invalid` (400),
//! anything else, including a refused kind, namespace or name, is `failed` (500); the message
//! is the error's.

// Here, not in [workspace.lints]: binaries share that table and need not document every item.
#![warn(missing_docs)]

#[cfg(feature = "component")]
pub mod component;
mod dispatch;

use std::fmt;
use std::io;

use serde::Serialize;

pub use cup_model::{Resource, ResourceMeta, StringMap};
pub use dispatch::{dispatch, run};

/// Exit code of a successful operation.
pub const EXIT_OK: i32 = 0;
/// Exit code of any failure other than "not found".
pub const EXIT_ERROR: i32 = 1;
/// Exit code the host maps to "resource not found".
pub const EXIT_NOT_FOUND: i32 = 2;

/// The operation named by `argv[1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `get <Kind> <namespace> <name>`: print one resource.
    Get,
    /// `list <Kind> <namespace>`: print every resource of the kind in the namespace.
    List,
    /// `put <Kind> <namespace> <name>`: store the resource read from stdin.
    Put,
    /// `delete <Kind> <namespace> <name>`: remove one resource.
    Delete,
}

impl Verb {
    /// Parses the argv spelling (`get`, `list`, `put`, `delete`); case-sensitive like the host.
    pub fn parse(verb: &str) -> Option<Self> {
        match verb {
            "get" => Some(Self::Get),
            "list" => Some(Self::List),
            "put" => Some(Self::Put),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }

    /// The argv spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Put => "put",
            Self::Delete => "delete",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every operation is about: the kind (`names.kind` of the definition, e.g. `Flag`) and
/// the namespace, both from argv (that is, from the request URL).
///
/// Group and version are not part of the ABI: a controller serving several kinds knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// The definition's `names.kind` (TitleCase, e.g. `Flag`), from `argv[2]`.
    pub kind: String,
    /// The namespace, from `argv[3]`.
    pub namespace: String,
}

impl Request {
    /// A request for `kind` in `namespace`. The struct is `#[non_exhaustive]`, so this is how
    /// code outside the crate (a controller's tests) builds one.
    pub fn new(kind: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.into(),
        }
    }

    /// Builds a resource of this request's kind and namespace, with null labels and
    /// annotations, serializing `spec` as its spec.
    pub fn resource<S>(&self, api_version: &str, name: &str, spec: &S) -> Result<Resource, Error>
    where
        S: Serialize + ?Sized,
    {
        let spec = serde_json::value::to_raw_value(spec)
            .map_err(|e| Error::Other(format!("encoding the spec of {name:?}: {e}")))?;
        Ok(Resource {
            api_version: api_version.to_owned(),
            kind: self.kind.clone(),
            metadata: ResourceMeta {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                labels: None,
                annotations: None,
            },
            spec,
        })
    }

    /// Refuses a `put` body whose `kind`, `metadata.namespace` or `metadata.name` disagree with
    /// argv. Empty body fields are accepted: argv is authoritative, and the host does not
    /// guarantee the body repeats them.
    ///
    /// The host passes the URL's namespace and name in argv but the body unchanged, so without
    /// this check a body naming another resource would be stored under the URL's name.
    pub fn check_identity(&self, name: &str, resource: &Resource) -> Result<(), Error> {
        let checks = [
            ("kind", resource.kind.as_str(), self.kind.as_str()),
            (
                "metadata.namespace",
                resource.metadata.namespace.as_str(),
                self.namespace.as_str(),
            ),
            ("metadata.name", resource.metadata.name.as_str(), name),
        ];
        for (field, in_body, in_request) in checks {
            if !in_body.is_empty() && in_body != in_request {
                return Err(Error::Invalid(format!(
                    "{field} {in_body:?} in the body does not match {in_request:?} in the request"
                )));
            }
        }
        Ok(())
    }
}

/// A controller: maps resources of some kinds to and from the files under `/`.
///
/// Each method runs in a fresh module instance; nothing survives between calls.
pub trait Controller {
    /// The kinds (`names.kind`, e.g. `Flag`) this controller serves. Other kinds are refused
    /// before any method is called.
    fn kinds(&self) -> &[&str];

    /// The resource `name`, or [`Error::NotFound`].
    fn get(&self, req: &Request, name: &str) -> Result<Resource, Error>;

    /// Every resource of the kind in the namespace, possibly none.
    fn list(&self, req: &Request) -> Result<Vec<Resource>, Error>;

    /// Creates or replaces `name` with `resource` (the body, as sent; see
    /// [`Request::check_identity`]).
    fn put(&self, req: &Request, name: &str, resource: Resource) -> Result<(), Error>;

    /// Removes `name`, or fails with [`Error::NotFound`].
    fn delete(&self, req: &Request, name: &str) -> Result<(), Error>;
}

/// Why an operation failed. The message goes to stderr; the variant picks the exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The resource does not exist: exit code 2.
    #[error("{0}")]
    NotFound(String),
    /// The request or the resource sent is unacceptable: exit code 1.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing files failed: exit code 1.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, usually the path of the file.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Anything else, e.g. a stored file that does not parse: exit code 1.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An I/O error with what was being done (usually the path), since `io::Error` alone
    /// does not say which file.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit code the host expects for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::NotFound(_) => EXIT_NOT_FOUND,
            Self::Invalid(_) | Self::Io { .. } | Self::Other(_) => EXIT_ERROR,
        }
    }
}

impl From<io::Error> for Error {
    fn from(source: io::Error) -> Self {
        Self::io("I/O error", source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(kind: &str, namespace: &str, name: &str) -> Resource {
        let mut resource = Request::new(kind, namespace)
            .resource("x.io/v1", name, &serde_json::json!({}))
            .expect("an empty object serializes");
        resource.kind = kind.to_owned();
        resource
    }

    #[test]
    fn resource_has_request_identity_and_null_maps() {
        let res = Request::new("Flag", "prod")
            .resource(
                "flipt.io/v1alpha1",
                "a",
                &serde_json::json!({"enabled": true}),
            )
            .expect("serializes");
        assert_eq!(
            serde_json::to_string(&res).expect("serializes"),
            r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{"namespace":"prod","name":"a","labels":null,"annotations":null},"spec":{"enabled":true}}"#
        );
    }

    #[test]
    fn check_identity_accepts_matching_or_empty_fields() {
        let req = Request::new("Flag", "default");
        assert!(
            req.check_identity("a", &body("Flag", "default", "a"))
                .is_ok()
        );
        assert!(req.check_identity("a", &body("", "", "")).is_ok());
    }

    #[test]
    fn check_identity_names_the_disagreeing_field() {
        let req = Request::new("Flag", "default");
        let cases = [
            (body("Segment", "default", "a"), "kind \"Segment\""),
            (body("Flag", "prod", "a"), "metadata.namespace \"prod\""),
            (body("Flag", "default", "b"), "metadata.name \"b\""),
        ];
        for (resource, expected) in cases {
            let err = req
                .check_identity("a", &resource)
                .expect_err("mismatch is refused");
            assert!(matches!(err, Error::Invalid(_)));
            assert!(err.to_string().starts_with(expected), "{err}");
        }
    }

    #[test]
    fn exit_codes_follow_the_variant() {
        assert_eq!(Error::NotFound("x".into()).exit_code(), EXIT_NOT_FOUND);
        assert_eq!(Error::Invalid("x".into()).exit_code(), EXIT_ERROR);
        assert_eq!(Error::Other("x".into()).exit_code(), EXIT_ERROR);
        let io_err = Error::io("/features.yml", io::Error::other("disk on fire"));
        assert_eq!(io_err.exit_code(), EXIT_ERROR);
        assert_eq!(io_err.to_string(), "/features.yml: disk on fire");
    }

    #[test]
    fn verbs_round_trip() {
        for verb in [Verb::Get, Verb::List, Verb::Put, Verb::Delete] {
            assert_eq!(Verb::parse(verb.as_str()), Some(verb));
        }
        assert_eq!(Verb::parse("GET"), None);
    }
}
