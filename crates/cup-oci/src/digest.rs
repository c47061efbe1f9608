//! `sha256:<hex>` digests: parsing (they become file names, so they are checked strictly)
//! and incremental hashing.

use sha2::{Digest as _, Sha256};

use crate::{Error, Result};

/// The only algorithm this crate writes or accepts.
pub const SHA256_PREFIX: &str = "sha256:";

/// The hex part of a `sha256:<64 lowercase hex>` digest. Anything else is refused, which
/// also keeps a hostile digest from naming a path outside `blobs/sha256/`.
pub fn hex_part(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix(SHA256_PREFIX)
        .ok_or_else(|| Error::InvalidDigest(digest.to_owned()))?;
    let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if valid {
        Ok(hex)
    } else {
        Err(Error::InvalidDigest(digest.to_owned()))
    }
}

/// Checks a digest's syntax.
pub fn validate(digest: &str) -> Result<()> {
    hex_part(digest).map(|_| ())
}

/// `sha256:<hex>` of some bytes.
pub fn of(bytes: &[u8]) -> String {
    cup_sections::sha256_digest(bytes)
}

/// An incremental sha256 that also counts bytes.
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// `(sha256:<hex>, size)`.
    pub fn finish(self) -> (String, u64) {
        (
            format!("{SHA256_PREFIX}{}", hex::encode(self.inner.finalize())),
            self.len,
        )
    }
}

/// Verifies bytes against a digest and size; `what` names them in the error.
pub fn verify(what: &str, bytes: &[u8], digest: &str, size: Option<u64>) -> Result<()> {
    if let Some(size) = size
        && size != bytes.len() as u64
    {
        return Err(Error::SizeMismatch {
            what: what.to_owned(),
            expected: size,
            actual: bytes.len().to_string(),
        });
    }
    let actual = of(bytes);
    if actual != digest {
        return Err(Error::DigestMismatch {
            what: what.to_owned(),
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_lowercase_sha256() {
        let good = of(b"x");
        assert!(validate(&good).is_ok());
        assert!(validate(&good.to_uppercase()).is_err());
        assert!(validate("sha512:abcd").is_err());
        assert!(validate("sha256:../../etc/passwd").is_err());
        assert!(validate(&good[..good.len() - 1]).is_err());
    }

    #[test]
    fn hasher_matches_one_shot() {
        let mut h = Hasher::default();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), (of(b"hello world"), 11));
    }
}
