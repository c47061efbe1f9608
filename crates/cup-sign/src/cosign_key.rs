//! cosign's password-protected key file: the PKCS#8 DER of the key in a NaCl secretbox whose
//! key scrypt derives from the password, as JSON (the envelope of
//! `github.com/secure-systems-lab/go-securesystemslib/encrypted`), in a PEM block typed
//! `ENCRYPTED SIGSTORE PRIVATE KEY` (or `ENCRYPTED COSIGN PRIVATE KEY` before cosign 2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::secretbox;

/// The PEM type cosign writes.
pub(crate) const SIGSTORE_PEM_TYPE: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM type older cosign releases wrote; still read.
pub(crate) const COSIGN_PEM_TYPE: &str = "ENCRYPTED COSIGN PRIVATE KEY";

const KDF_NAME: &str = "scrypt";
const CIPHER_NAME: &str = "nacl/secretbox";
const SALT_LEN: usize = 32;

/// The scrypt parameters written: (N, r, p). go-securesystemslib calls them "legacy"; they
/// are the only ones its releases before 0.5 accept, so every cosign reads them.
const WRITTEN_PARAMS: ScryptParams = ScryptParams {
    n: 1 << 15,
    r: 8,
    p: 1,
};
/// The parameter sets read: go-securesystemslib's legacy, standard and OWASP sets, which
/// are exactly the ones it accepts. Anything else is refused before deriving a key, so a
/// file cannot make the reader spend more than scrypt's 128 MiB and a fraction of a second.
const ACCEPTED_PARAMS: [ScryptParams; 3] = [
    WRITTEN_PARAMS,
    ScryptParams {
        n: 1 << 16,
        r: 8,
        p: 1,
    },
    ScryptParams {
        n: 1 << 17,
        r: 8,
        p: 1,
    },
];

/// The JSON envelope; field order and names as Go's `encoding/json` writes them.
#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn derive_key(
    password: &[u8],
    salt: &[u8],
    params: ScryptParams,
) -> Result<Zeroizing<[u8; secretbox::KEY_LEN]>, KeyError> {
    let invalid = |e: &dyn std::fmt::Display| KeyError::Encryption(format!("scrypt: {e}"));
    let log_n = u8::try_from(params.n.trailing_zeros()).map_err(|e| invalid(&e))?;
    let params = scrypt::Params::new(log_n, params.r, params.p).map_err(|e| invalid(&e))?;
    let mut key = Zeroizing::new([0u8; secretbox::KEY_LEN]);
    scrypt::scrypt(password, salt, &params, &mut key[..]).map_err(|e| invalid(&e))?;
    Ok(key)
}

/// Encrypts `plaintext` under `password`: the JSON envelope.
pub(crate) fn encrypt(plaintext: &[u8], password: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; secretbox::NONCE_LEN];
    getrandom::fill(&mut salt).map_err(|e| KeyError::Random(e.to_string()))?;
    getrandom::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = derive_key(password, &salt, WRITTEN_PARAMS)?;
    let envelope = Envelope {
        kdf: Kdf {
            name: KDF_NAME.into(),
            params: WRITTEN_PARAMS,
            salt: STANDARD.encode(salt),
        },
        cipher: Cipher {
            name: CIPHER_NAME.into(),
            nonce: STANDARD.encode(nonce),
        },
        ciphertext: STANDARD.encode(secretbox::seal(&key, &nonce, plaintext)),
    };
    serde_json::to_vec(&envelope).map_err(|e| KeyError::Encryption(e.to_string()))
}

/// Decrypts a JSON envelope with `password`.
pub(crate) fn decrypt(envelope: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let envelope: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| KeyError::Encryption(format!("not cosign's key envelope: {e}")))?;
    if envelope.kdf.name != KDF_NAME {
        return Err(KeyError::Encryption(format!(
            "key derivation {:?}, expected {KDF_NAME:?}",
            envelope.kdf.name
        )));
    }
    if envelope.cipher.name != CIPHER_NAME {
        return Err(KeyError::Encryption(format!(
            "cipher {:?}, expected {CIPHER_NAME:?}",
            envelope.cipher.name
        )));
    }
    let params = envelope.kdf.params;
    if !ACCEPTED_PARAMS.contains(&params) {
        return Err(KeyError::Encryption(format!(
            "unsupported scrypt parameters N={} r={} p={} (accepted: N=32768, 65536 or 131072 with r=8, p=1)",
            params.n, params.r, params.p
        )));
    }
    let base64 = |what: &str, text: &str| {
        STANDARD
            .decode(text)
            .map_err(|e| KeyError::Encryption(format!("{what}: not base64: {e}")))
    };
    let salt = base64("salt", &envelope.kdf.salt)?;
    let nonce: [u8; secretbox::NONCE_LEN] = base64("nonce", &envelope.cipher.nonce)?
        .try_into()
        .map_err(|nonce: Vec<u8>| {
            KeyError::Encryption(format!(
                "a nonce of {} bytes, expected {}",
                nonce.len(),
                secretbox::NONCE_LEN
            ))
        })?;
    let ciphertext = base64("ciphertext", &envelope.ciphertext)?;
    let key = derive_key(password, &salt, params)?;
    secretbox::open(&key, &nonce, &ciphertext).ok_or(KeyError::WrongPassword)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envelopes made by go-securesystemslib's `encrypted` package (the code cosign encrypts
    /// its keys with), from its own tests (`encrypted/encrypted_test.go`), all under
    /// "supersecret": the first `Encrypt`s "reallyimportant"; the others, one per accepted
    /// parameter set, `Marshal` it (Go's JSON of a byte slice: a quoted base64 string).
    const GO_VECTORS: [&str; 4] = [
        r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}"#,
        r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"WO3mVvyTwJ9vwT5/Tk5OW5WPIBUofMjcpEfrLnfY4uA="},"cipher":{"name":"nacl/secretbox","nonce":"tCy7HcTFr4uxv4Nrg/DWmncuZ148U1MX"},"ciphertext":"08n43p5G5yviPEZpO7tPPF4aZQkWiWjkv4taFdhDBA0tamKH4nw="}"#,
        r#"{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6ecG6GzaOuOy/ynG5+yRiFlNs="},"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2gR9O2+IGQ8xJEuE"},"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}"#,
        r#"{"kdf":{"name":"scrypt","params":{"N":131072,"r":8,"p":1},"salt":"m38E3kouJTtiheLQN22NQ8DTito5hrjpUIskqcd375k="},"cipher":{"name":"nacl/secretbox","nonce":"Y6PM13yA+o44pE/W1ZBwczeGnTV/m9Zc"},"ciphertext":"6H8sqj1K6B6yDjtH5AQ6lbFigg/C2yDDJc4rYJ79w9aVPImFIPI="}"#,
    ];

    #[test]
    fn reads_what_go_securesystemslib_wrote() {
        let first = decrypt(GO_VECTORS[0].as_bytes(), b"supersecret").unwrap();
        assert_eq!(first.as_slice(), b"reallyimportant");
        assert!(matches!(
            decrypt(GO_VECTORS[0].as_bytes(), b"supersecreT"),
            Err(KeyError::WrongPassword)
        ));
    }

    #[test]
    fn reads_every_parameter_set_go_securesystemslib_writes() {
        for vector in &GO_VECTORS[1..] {
            let plaintext = decrypt(vector.as_bytes(), b"supersecret").unwrap();
            assert_eq!(
                plaintext.as_slice(),
                b"\"cmVhbGx5aW1wb3J0YW50\"",
                "{vector}"
            );
        }
    }

    #[test]
    fn writes_the_envelope_go_reads() {
        let envelope = encrypt(b"key bytes", b"pw").unwrap();
        let json: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
        let text = String::from_utf8(envelope.clone()).unwrap();
        // Go's field order, compact.
        assert!(
            text.starts_with(
                r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":""#
            ),
            "{text}"
        );
        assert!(text.contains(r#""cipher":{"name":"nacl/secretbox","nonce":""#));
        let salt = STANDARD
            .decode(json["kdf"]["salt"].as_str().unwrap())
            .unwrap();
        let nonce = STANDARD
            .decode(json["cipher"]["nonce"].as_str().unwrap())
            .unwrap();
        assert_eq!((salt.len(), nonce.len()), (32, 24));
        assert_eq!(decrypt(&envelope, b"pw").unwrap().as_slice(), b"key bytes");
        assert!(matches!(
            decrypt(&envelope, b""),
            Err(KeyError::WrongPassword)
        ));
    }

    #[test]
    fn refuses_unexpected_envelopes_before_deriving_a_key() {
        let costly = GO_VECTORS[0].replace("\"N\":32768", "\"N\":1048576");
        let unknown_kdf = GO_VECTORS[0].replace("\"scrypt\"", "\"pbkdf2\"");
        let unknown_cipher = GO_VECTORS[0].replace("nacl/secretbox", "aes-gcm");
        let short_nonce = GO_VECTORS[0].replace("2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik", "AAAA");
        let bad_base64 = GO_VECTORS[0].replace("SEW6sUh0", "!EW6sUh0");
        for envelope in [
            costly.as_str(),
            &unknown_kdf,
            &unknown_cipher,
            &short_nonce,
            &bad_base64,
            "{}",
            "not json",
        ] {
            assert!(
                matches!(
                    decrypt(envelope.as_bytes(), b"supersecret"),
                    Err(KeyError::Encryption(_))
                ),
                "{envelope}"
            );
        }
    }
}
