//! Why a key could not be read or written.

/// A key file that cannot be used, or a key that cannot be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM text is larger than this crate reads.
    #[error("the key file is larger than {max} bytes")]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// No PEM block, or one that is not well-formed.
    #[error("not a PEM key file: {0}")]
    NotPem(String),
    /// A PEM block of a type this crate does not read.
    #[error("a PEM block of type {found:?}; expected {expected}")]
    UnsupportedPemType {
        /// The block's type (the word after `BEGIN`).
        found: String,
        /// The types that would have been read.
        expected: &'static str,
    },
    /// The key is encrypted and no password was given.
    #[error("the key ({pem_type}) is encrypted: a password is needed")]
    PasswordRequired {
        /// The block's type.
        pem_type: String,
    },
    /// The key did not decrypt with the password given.
    #[error("the key did not decrypt: wrong password (or a damaged file)")]
    WrongPassword,
    /// An encrypted key whose envelope (cosign's JSON, or PKCS#8's encryption parameters)
    /// is malformed or asks for something this crate refuses.
    #[error("encrypted key: {0}")]
    Encryption(String),
    /// The key itself is malformed or not an ECDSA P-256 key.
    #[error("not an ECDSA P-256 key: {0}")]
    InvalidKey(String),
    /// The operating system's random number generator failed.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}
