//! ECDSA P-256 keys: reading and writing their PEM files, signing, fingerprints.

use p256::ecdsa::signature::Signer;
use p256::elliptic_curve::Generate;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, EncryptedPrivateKeyInfo,
    LineEnding, der::asn1::OctetString, pkcs5,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cosign_key;
use crate::error::KeyError;
use crate::pem::first_block;

const PKCS8_PEM_TYPE: &str = "PRIVATE KEY";
const ENCRYPTED_PKCS8_PEM_TYPE: &str = "ENCRYPTED PRIVATE KEY";
const SEC1_PEM_TYPE: &str = "EC PRIVATE KEY";
const PUBLIC_KEY_PEM_TYPE: &str = "PUBLIC KEY";
const PRIVATE_KEY_TYPES: &str = "PRIVATE KEY, ENCRYPTED PRIVATE KEY, EC PRIVATE KEY, \
                                 ENCRYPTED SIGSTORE PRIVATE KEY or ENCRYPTED COSIGN PRIVATE KEY";

/// The most PBKDF2 iterations an encrypted PKCS#8 file may ask for: OpenSSL writes 2048,
/// current guidance is hundreds of thousands; past this a file costs seconds of CPU to try.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// The most memory (128·r·N bytes) an scrypt-encrypted PKCS#8 file may ask for, as much as
/// cosign's own files may.
const MAX_SCRYPT_MEMORY: u64 = 128 * 1024 * 1024;

/// An ECDSA P-256 private key, the kind cosign generates.
#[derive(Clone)]
pub struct SigningKey {
    key: p256::ecdsa::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: the public half says which key it is.
        f.debug_struct("SigningKey")
            .field("public_key", &self.public_key().fingerprint())
            .finish()
    }
}

impl SigningKey {
    /// A new random key from the operating system's random number generator.
    ///
    /// # Panics
    ///
    /// When the operating system gives no randomness (`getrandom` fails), which a working
    /// Linux, macOS or Windows does not do.
    pub fn generate() -> SigningKey {
        SigningKey {
            key: p256::ecdsa::SigningKey::generate(),
        }
    }

    /// Reads a private key from PEM text, the first block that is not `EC PARAMETERS`:
    ///
    /// - `PRIVATE KEY`: PKCS#8 (`openssl genpkey`);
    /// - `ENCRYPTED PRIVATE KEY`: PKCS#8 encrypted with PBES2 (`openssl pkcs8 -topk8 -v2
    ///   aes-256-cbc`), needs the password;
    /// - `EC PRIVATE KEY`: SEC1 (`openssl ecparam -genkey`, `openssl ec`);
    /// - `ENCRYPTED SIGSTORE PRIVATE KEY`, `ENCRYPTED COSIGN PRIVATE KEY`: cosign's key file
    ///   (`cosign generate-key-pair`), needs the password, which may be empty.
    ///
    /// The password of an unencrypted key is ignored. Files larger than
    /// [`MAX_PEM_BYTES`](crate::MAX_PEM_BYTES) are refused.
    pub fn from_pem(pem: &[u8], password: Option<&[u8]>) -> Result<SigningKey, KeyError> {
        let (pem_type, der) = first_block(pem)?;
        let der = Zeroizing::new(der);
        let needs_password = || KeyError::PasswordRequired {
            pem_type: pem_type.clone(),
        };
        let invalid = |e: &dyn std::fmt::Display| KeyError::InvalidKey(e.to_string());
        let key = match pem_type.as_str() {
            PKCS8_PEM_TYPE => p256::SecretKey::from_pkcs8_der(&der).map_err(|e| invalid(&e))?,
            SEC1_PEM_TYPE => p256::SecretKey::from_sec1_der(&der).map_err(|e| invalid(&e))?,
            ENCRYPTED_PKCS8_PEM_TYPE => {
                let password = password.ok_or_else(needs_password)?;
                let pkcs8 = decrypt_pkcs8(&der, password)?;
                p256::SecretKey::from_pkcs8_der(pkcs8.as_bytes()).map_err(|e| invalid(&e))?
            }
            cosign_key::SIGSTORE_PEM_TYPE | cosign_key::COSIGN_PEM_TYPE => {
                let password = password.ok_or_else(needs_password)?;
                let pkcs8 = cosign_key::decrypt(&der, password)?;
                p256::SecretKey::from_pkcs8_der(&pkcs8).map_err(|e| invalid(&e))?
            }
            _ => {
                return Err(KeyError::UnsupportedPemType {
                    found: pem_type,
                    expected: PRIVATE_KEY_TYPES,
                });
            }
        };
        Ok(SigningKey { key: key.into() })
    }

    /// Writes the key as cosign's encrypted key file, the way `cosign generate-key-pair` does:
    /// PEM type `ENCRYPTED SIGSTORE PRIVATE KEY`; the PKCS#8 DER of the key sealed in a NaCl
    /// secretbox (random 24-byte nonce) under a key scrypt derives from `password` (random
    /// 32-byte salt, N=32768, r=8, p=1, the parameters every cosign release reads).
    pub fn to_cosign_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        let pkcs8 = p256::SecretKey::from(&self.key)
            .to_pkcs8_der()
            .map_err(|e| KeyError::InvalidKey(e.to_string()))?;
        let envelope = cosign_key::encrypt(pkcs8.as_bytes(), password)?;
        p256::pkcs8::der::pem::encode_string(
            cosign_key::SIGSTORE_PEM_TYPE,
            LineEnding::LF,
            &envelope,
        )
        .map_err(|e| KeyError::Encryption(e.to_string()))
    }

    /// The key as PKCS#8 DER, for tests that put it in a certificate.
    #[cfg(test)]
    pub(crate) fn to_pkcs8_der(&self) -> Vec<u8> {
        self.key
            .to_pkcs8_der()
            .expect("a P-256 key always encodes as PKCS#8")
            .as_bytes()
            .to_vec()
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }

    /// Signs `payload`: ECDSA P-256 over its SHA-256 digest (RFC 6979 nonces), as an ASN.1
    /// DER signature, the form cosign stores (base64) and verifies.
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let signature: p256::ecdsa::Signature = self.key.sign(payload);
        signature.to_der().as_bytes().to_vec()
    }
}

/// Decrypts an `EncryptedPrivateKeyInfo` after checking that its key derivation costs a
/// bounded amount of work: the parameters come from the file.
fn decrypt_pkcs8(der: &[u8], password: &[u8]) -> Result<p256::pkcs8::SecretDocument, KeyError> {
    let encrypted = EncryptedPrivateKeyInfo::<OctetString>::try_from(der)
        .map_err(|e| KeyError::Encryption(e.to_string()))?;
    match &encrypted.encryption_algorithm {
        pkcs5::EncryptionScheme::Pbes2(parameters) => match &parameters.kdf {
            pkcs5::pbes2::Kdf::Pbkdf2(pbkdf2) if pbkdf2.iteration_count > MAX_PBKDF2_ITERATIONS => {
                return Err(KeyError::Encryption(format!(
                    "PBKDF2 with {} iterations (at most {MAX_PBKDF2_ITERATIONS} are tried)",
                    pbkdf2.iteration_count
                )));
            }
            pkcs5::pbes2::Kdf::Scrypt(scrypt)
                if 128u64
                    .saturating_mul(u64::from(scrypt.block_size))
                    .saturating_mul(scrypt.cost_parameter)
                    > MAX_SCRYPT_MEMORY
                    || scrypt.parallelization > 1 =>
            {
                return Err(KeyError::Encryption(format!(
                    "scrypt parameters N={} r={} p={} cost more than cosign's",
                    scrypt.cost_parameter, scrypt.block_size, scrypt.parallelization
                )));
            }
            _ => {}
        },
        _ => {
            return Err(KeyError::Encryption(
                "PBES1 (DES or RC2) or unknown encryption; re-encrypt with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
                    .into(),
            ));
        }
    }
    // A wrong password shows as a padding or decoding failure of the decrypted data; the
    // parameters were already judged above, so that is what a failure here means.
    encrypted
        .decrypt(password)
        .map_err(|_| KeyError::WrongPassword)
}

/// An ECDSA P-256 public key, which verifies signatures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    key: p256::ecdsa::VerifyingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PublicKey")
            .field(&self.fingerprint())
            .finish()
    }
}

impl PublicKey {
    /// Reads a `PUBLIC KEY` PEM block (SubjectPublicKeyInfo), as `cosign generate-key-pair`
    /// writes `cosign.pub` and `openssl pkey -pubout` writes any public key. Only P-256 keys
    /// are accepted.
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, KeyError> {
        let (pem_type, der) = first_block(pem)?;
        if pem_type != PUBLIC_KEY_PEM_TYPE {
            return Err(KeyError::UnsupportedPemType {
                found: pem_type,
                expected: PUBLIC_KEY_PEM_TYPE,
            });
        }
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&der)
            .map_err(|e| KeyError::InvalidKey(e.to_string()))?;
        Ok(PublicKey { key })
    }

    /// The key as a `PUBLIC KEY` PEM block (SubjectPublicKeyInfo), the form of `cosign.pub`.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 point always encodes as SubjectPublicKeyInfo")
    }

    /// A stable id of the key for messages and for matching configured keys:
    /// `sha256:` and the hex SHA-256 of its SubjectPublicKeyInfo DER (64 hex digits; the first
    /// 16 are enough to show a person).
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.spki_der())))
    }

    pub(crate) fn spki_der(&self) -> Vec<u8> {
        self.key
            .to_public_key_der()
            .expect("a P-256 point always encodes as SubjectPublicKeyInfo")
            .into_vec()
    }

    pub(crate) fn verifying_key(&self) -> &p256::ecdsa::VerifyingKey {
        &self.key
    }

    /// A P-256 key from its SubjectPublicKeyInfo DER (a certificate's or a log's key).
    pub(crate) fn from_spki_der(der: &[u8]) -> Result<PublicKey, String> {
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(|e| e.to_string())?;
        Ok(PublicKey { key })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;

    /// Runs openssl in `dir`; `None` when it is not installed, so these tests say so and
    /// pass on a machine without it (the cosign-format tests need nothing outside).
    fn openssl(dir: &Path, args: &[&str]) -> Option<()> {
        let out = match Command::new("openssl").args(args).current_dir(dir).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("openssl is not installed: skipping");
                return None;
            }
            Err(e) => panic!("openssl: {e}"),
        };
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(())
    }

    fn read(dir: &Path, name: &str) -> Vec<u8> {
        std::fs::read(dir.join(name)).unwrap()
    }

    /// The key's public half, as openssl derives it from the file.
    fn openssl_public(dir: &Path, private: &str, password: Option<&str>) -> PublicKey {
        let mut args = vec!["pkey", "-in", private, "-pubout", "-out", "pub.pem"];
        let pass = password.map(|p| format!("pass:{p}"));
        if let Some(pass) = &pass {
            args.extend(["-passin", pass]);
        }
        openssl(dir, &args).unwrap();
        PublicKey::from_pem(&read(dir, "pub.pem")).unwrap()
    }

    #[test]
    fn reads_the_files_openssl_writes() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let generate = [
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "pkcs8.pem",
        ];
        if openssl(dir, &generate).is_none() {
            return;
        }
        let public = openssl_public(dir, "pkcs8.pem", None);

        let pkcs8 = SigningKey::from_pem(&read(dir, "pkcs8.pem"), None).unwrap();
        assert_eq!(pkcs8.public_key(), public);
        // An unencrypted key ignores a password.
        assert!(SigningKey::from_pem(&read(dir, "pkcs8.pem"), Some(b"x")).is_ok());

        openssl(
            dir,
            &[
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-in",
                "pkcs8.pem",
                "-out",
                "encrypted.pem",
                "-passout",
                "pass:open sesame",
            ],
        )
        .unwrap();
        let encrypted = read(dir, "encrypted.pem");
        let key = SigningKey::from_pem(&encrypted, Some(b"open sesame")).unwrap();
        assert_eq!(key.public_key(), public);
        assert!(matches!(
            SigningKey::from_pem(&encrypted, Some(b"open sesame!")),
            Err(KeyError::WrongPassword)
        ));
        assert!(matches!(
            SigningKey::from_pem(&encrypted, None),
            Err(KeyError::PasswordRequired { pem_type }) if pem_type == "ENCRYPTED PRIVATE KEY"
        ));

        openssl(dir, &["ec", "-in", "pkcs8.pem", "-out", "sec1.pem"]).unwrap();
        let sec1 = read(dir, "sec1.pem");
        assert!(String::from_utf8_lossy(&sec1).contains("BEGIN EC PRIVATE KEY"));
        assert_eq!(
            SigningKey::from_pem(&sec1, None).unwrap().public_key(),
            public
        );

        // `openssl ecparam -genkey` writes the curve's parameters first.
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-out",
                "ecparam.pem",
            ],
        )
        .unwrap();
        let with_parameters = read(dir, "ecparam.pem");
        assert!(String::from_utf8_lossy(&with_parameters).contains("BEGIN EC PARAMETERS"));
        assert_eq!(
            SigningKey::from_pem(&with_parameters, None)
                .unwrap()
                .public_key(),
            openssl_public(dir, "ecparam.pem", None)
        );
    }

    #[test]
    fn refuses_keys_that_are_not_p256() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let p384 = [
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            "p384.pem",
        ];
        if openssl(dir, &p384).is_none() {
            return;
        }
        openssl(
            dir,
            &["genpkey", "-algorithm", "ED25519", "-out", "ed25519.pem"],
        )
        .unwrap();
        for name in ["p384.pem", "ed25519.pem"] {
            assert!(
                matches!(
                    SigningKey::from_pem(&read(dir, name), None),
                    Err(KeyError::InvalidKey(_))
                ),
                "{name}"
            );
            openssl(dir, &["pkey", "-in", name, "-pubout", "-out", "pub.pem"]).unwrap();
            assert!(
                matches!(
                    PublicKey::from_pem(&read(dir, "pub.pem")),
                    Err(KeyError::InvalidKey(_))
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn cosign_key_files_round_trip() {
        let key = SigningKey::generate();
        let pem = key.to_cosign_pem(b"hunter2").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let read_back = SigningKey::from_pem(pem.as_bytes(), Some(b"hunter2")).unwrap();
        assert_eq!(read_back.public_key(), key.public_key());
        assert!(matches!(
            SigningKey::from_pem(pem.as_bytes(), Some(b"hunter3")),
            Err(KeyError::WrongPassword)
        ));
        assert!(matches!(
            SigningKey::from_pem(pem.as_bytes(), None),
            Err(KeyError::PasswordRequired { .. })
        ));

        // An empty password is a password (cosign's COSIGN_PASSWORD="").
        let empty = key.to_cosign_pem(b"").unwrap();
        assert!(SigningKey::from_pem(empty.as_bytes(), Some(b"")).is_ok());

        // The type older cosign releases wrote.
        let old = pem.replace("SIGSTORE", "COSIGN");
        let read_back = SigningKey::from_pem(old.as_bytes(), Some(b"hunter2")).unwrap();
        assert_eq!(read_back.public_key(), key.public_key());
    }

    #[test]
    fn public_keys_round_trip_and_have_a_fingerprint() {
        let key = SigningKey::generate().public_key();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(PublicKey::from_pem(pem.as_bytes()).unwrap(), key);

        let fingerprint = key.fingerprint();
        assert_eq!(fingerprint.len(), "sha256:".len() + 64);
        assert!(fingerprint.starts_with("sha256:"));
        assert_eq!(fingerprint, key.fingerprint());
        assert_ne!(
            fingerprint,
            SigningKey::generate().public_key().fingerprint()
        );
        assert!(format!("{:?}", SigningKey::generate()).contains("sha256:"));
    }

    #[test]
    fn refuses_other_pem_types_and_damaged_keys() {
        let key = SigningKey::generate();
        let public = key.public_key().to_pem();
        assert!(matches!(
            SigningKey::from_pem(public.as_bytes(), None),
            Err(KeyError::UnsupportedPemType { found, .. }) if found == "PUBLIC KEY"
        ));
        let cosign = key.to_cosign_pem(b"pw").unwrap();
        assert!(matches!(
            PublicKey::from_pem(cosign.as_bytes()),
            Err(KeyError::UnsupportedPemType { .. })
        ));
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAECAwQ=\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            SigningKey::from_pem(garbage.as_bytes(), None),
            Err(KeyError::InvalidKey(_))
        ));
        let garbage = garbage.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY");
        assert!(matches!(
            SigningKey::from_pem(garbage.as_bytes(), Some(b"pw")),
            Err(KeyError::Encryption(_))
        ));
        let garbage = "-----BEGIN PUBLIC KEY-----\nAAECAwQ=\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            PublicKey::from_pem(garbage.as_bytes()),
            Err(KeyError::InvalidKey(_))
        ));
    }

    #[test]
    fn signatures_are_der_and_verify() {
        use p256::ecdsa::signature::Verifier;
        let key = SigningKey::generate();
        let signature = key.sign(b"payload");
        assert_eq!(signature[0], 0x30, "an ASN.1 SEQUENCE");
        let signature = p256::ecdsa::Signature::from_der(&signature).unwrap();
        assert!(
            key.public_key()
                .verifying_key()
                .verify(b"payload", &signature)
                .is_ok()
        );
    }
}
