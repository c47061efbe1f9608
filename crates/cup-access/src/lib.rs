//! Who is calling and what they may do.
//!
//! ```text
//! Credentials (bearer token, client certificate, proxy headers, peer address)
//!   └─ Authenticator::authenticate ─► Caller (user + groups) or Unauthenticated (401)
//!        └─ Policy::decide(Caller, Attributes) ─► Decision (allowed or the reason: 403)
//!             └─ AuditLog::record(AuditEvent)   one JSON line per write
//! ```
//!
//! The conventions are Kubernetes': a static token file in kube-apiserver's CSV format,
//! client certificates with the user in the subject's CN and groups in its O values, an
//! authenticating proxy trusted only from configured sources, the `system:authenticated`,
//! `system:anonymous` and `system:unauthenticated` names. This crate knows nothing of HTTP
//! servers or TLS: the server hands it what it read off the connection and the request.

#![warn(missing_docs)]

mod audit;
mod authenticate;
mod certificate;
mod error;
mod identity;
mod policy;
mod request_header;
mod tokens;
mod watched;

pub use audit::{AuditEvent, AuditLog, AuditTarget};
pub use authenticate::{Authenticator, AuthenticatorOptions, Credentials, Unauthenticated};
pub use certificate::{CertificateSubject, subject_of};
pub use error::AccessError;
pub use identity::{ANONYMOUS_USER, AUTHENTICATED_GROUP, Caller, Method, UNAUTHENTICATED_GROUP};
pub use ipnet::IpNet;
pub use policy::{Attributes, Decision, Policy, Rule, Verb};
pub use request_header::{RequestHeaderOptions, parse_trusted_source};
pub use tokens::{TokenSet, hash_token};
pub use watched::Watched;
