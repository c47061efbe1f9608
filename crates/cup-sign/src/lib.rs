//! Cosign-compatible signatures: bytes in, bytes out.
//!
//! ```text
//! SigningKey::from_pem / generate ─► sign(simple_signing_payload(ref, digest, annotations))
//!                                        └─► ASN.1 DER ECDSA P-256 / SHA-256 signature
//! PublicKey::from_pem ─► verify(payload, base64 signature, key, Expected) ─► Verified or Refusal
//! TrustedRoot::from_json ─► verify_keyless(payload, annotations, root, identities, Expected)
//!                              ─► VerifiedKeyless or Refusal
//! ```
//!
//! Keys are ECDSA P-256, read from the PEM files OpenSSL writes (PKCS#8, encrypted PKCS#8,
//! SEC1) and from cosign's own password-protected key file, which this crate also writes
//! (`to_cosign_pem`). The signed payload is cosign's simple-signing JSON, byte for byte as
//! cosign writes it, so a signature made here verifies with `cosign verify --key` and one
//! made by cosign verifies here.
//!
//! Keyless (Sigstore) signatures are verified offline by [`verify_keyless`]: a Fulcio
//! certificate chaining to a [`TrustedRoot`] at the time a Rekor log recorded the signature,
//! the log's signed entry timestamp, the log entry, and the signer's [`Identity`].
//!
//! This crate knows nothing of OCI registries, HTTP or servers: where a signature is stored
//! and how it is fetched is the caller's business. [`verify`] checks the signature before it
//! reads a single field of the payload: nothing in an unauthenticated payload is trusted.

#![warn(missing_docs)]

mod cosign_key;
mod error;
mod keyless;
mod keys;
mod payload;
mod pem;
mod secretbox;
mod trusted_root;
mod verify;

pub use error::KeyError;
pub use keyless::{
    BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, Identity, MAX_ANNOTATION_BYTES,
    SIGNATURE_ANNOTATION, VerifiedKeyless, verify_keyless,
};
pub use keys::{PublicKey, SigningKey};
pub use payload::{SIMPLE_SIGNING_TYPE, simple_signing_payload};
pub use trusted_root::{
    MAX_CHAIN_CERTIFICATES, MAX_TRUSTED_ROOT_BYTES, TRUSTED_ROOT_MEDIA_TYPE, TrustedRoot,
    TrustedRootError,
};
pub use verify::{Expected, Refusal, Verified, verify};

/// The largest payload [`verify`] reads (64 KiB); a simple-signing payload is a few hundred
/// bytes plus its annotations.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The largest signature [`verify`] reads, decoded (1 KiB); a DER P-256 signature is at most
/// 72 bytes.
pub const MAX_SIGNATURE_BYTES: usize = 1024;
/// The largest PEM file the key readers read (64 KiB).
pub const MAX_PEM_BYTES: usize = 64 * 1024;
