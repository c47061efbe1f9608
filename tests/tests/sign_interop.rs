//! cup-sign against independent implementations: Python `cryptography` (OpenSSL) for ECDSA
//! P-256 and key formats, PyNaCl (libsodium) and `hashlib.scrypt` for cosign's encrypted key
//! file, written the way cosign's Go code writes it (go-securesystemslib's `encrypted`:
//! scrypt N=32768 r=8 p=1 over a 32-byte salt, a NaCl secretbox with a 24-byte nonce, the
//! JSON envelope `{"kdf":{"name","params":{"N","r","p"},"salt"},"cipher":{"name","nonce"},
//! "ciphertext"}` with base64 bytes, in a PEM block of type ENCRYPTED SIGSTORE PRIVATE KEY).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cup_e2e::python::{run_script, venv_python};
use cup_sign::{Expected, PublicKey, Refusal, SigningKey, simple_signing_payload, verify};

const CRYPTOGRAPHY: &str = "cryptography==51.0.1";
const PYNACL: &str = "pynacl==1.6.2";

fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| venv_python("sign-venv", &[CRYPTOGRAPHY, PYNACL]))
}

/// The Python side. Subcommands:
/// - `cosign-key PASSWORD`: a new P-256 key, written as cosign writes it to `cosign.key`,
///   its public half to `cosign.pub`;
/// - `open-cosign-key FILE PASSWORD`: decrypts a cosign key file and prints the PEM of its
///   public half;
/// - `verify PUB PAYLOAD SIG`: checks a DER signature over a payload (exit 1 if it fails);
/// - `sign KEYFILE PASSWORD PAYLOAD low|high`: signs a payload with the key of a cosign key
///   file and prints the base64 DER signature, one whose S is in the lower or the upper half
///   of the group order (OpenSSL, like Go, does not normalise S; both must verify).
const SCRIPT: &str = r#"
import base64, hashlib, json, os, sys
import nacl.secret
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.exceptions import InvalidSignature

def b64(data):
    return base64.b64encode(data).decode()

def scrypt_key(password, salt, params):
    return hashlib.scrypt(password, salt=salt, n=params["N"], r=params["r"], p=params["p"],
                          maxmem=256 * 1024 * 1024, dklen=32)

def pem(pem_type, data):
    text = base64.b64encode(data).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (pem_type, "\n".join(lines), pem_type)

def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

def open_cosign_key(path, password):
    text = open(path).read().strip().splitlines()
    assert text[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----", text[0]
    assert text[-1] == "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----", text[-1]
    assert all(len(line) <= 64 for line in text[1:-1])
    envelope = json.loads(base64.b64decode("".join(text[1:-1])))
    assert list(envelope) == ["kdf", "cipher", "ciphertext"], envelope
    assert list(envelope["kdf"]) == ["name", "params", "salt"], envelope
    assert envelope["kdf"]["name"] == "scrypt"
    assert envelope["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert list(envelope["kdf"]["params"]) == ["N", "r", "p"]
    assert envelope["cipher"]["name"] == "nacl/secretbox"
    salt = base64.b64decode(envelope["kdf"]["salt"])
    nonce = base64.b64decode(envelope["cipher"]["nonce"])
    assert (len(salt), len(nonce)) == (32, 24)
    key = scrypt_key(password, salt, envelope["kdf"]["params"])
    der = nacl.secret.SecretBox(key).decrypt(base64.b64decode(envelope["ciphertext"]), nonce)
    return serialization.load_der_private_key(der, password=None)

command, args = sys.argv[1], sys.argv[2:]
if command == "cosign-key":
    password = args[0].encode()
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    params = {"N": 32768, "r": 8, "p": 1}
    salt, nonce = os.urandom(32), os.urandom(24)
    sealed = nacl.secret.SecretBox(scrypt_key(password, salt, params)).encrypt(der, nonce)
    envelope = {"kdf": {"name": "scrypt", "params": params, "salt": b64(salt)},
                "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
                "ciphertext": b64(sealed.ciphertext)}
    data = json.dumps(envelope, separators=(",", ":")).encode()
    open("cosign.key", "w").write(pem("ENCRYPTED SIGSTORE PRIVATE KEY", data))
    open("cosign.pub", "w").write(public_pem(key))
elif command == "open-cosign-key":
    print(public_pem(open_cosign_key(args[0], args[1].encode())), end="")
elif command == "verify":
    key = serialization.load_pem_public_key(open(args[0], "rb").read())
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    try:
        key.verify(open(args[2], "rb").read(), open(args[1], "rb").read(),
                   ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        sys.exit(1)
    print("verified")
elif command == "sign":
    key = open_cosign_key(args[0], args[1].encode())
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    while True:
        signature = key.sign(open(args[2], "rb").read(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(signature)
        if (s > order // 2) == (args[3] == "high"):
            break
    print(b64(signature))
else:
    sys.exit("unknown command " + command)
"#;

fn py(dir: &Path, args: &[&str]) -> String {
    run_script(python(), SCRIPT, args, dir)
}

const DIGEST: &str = "sha256:3f1e0c7b9a2d4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";

#[test]
fn a_key_file_written_as_cosign_writes_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    for password in ["correct horse", ""] {
        py(dir.path(), &["cosign-key", password]);
        let key_file = std::fs::read(dir.path().join("cosign.key")).unwrap();
        let public =
            PublicKey::from_pem(&std::fs::read(dir.path().join("cosign.pub")).unwrap()).unwrap();
        let key = SigningKey::from_pem(&key_file, Some(password.as_bytes())).unwrap();
        assert_eq!(key.public_key(), public, "password {password:?}");
        assert!(
            SigningKey::from_pem(&key_file, Some(b"wrong")).is_err(),
            "password {password:?}"
        );
    }
}

#[test]
fn a_key_file_written_here_opens_as_cosign_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    std::fs::write(
        dir.path().join("ours.key"),
        key.to_cosign_pem(b"s3cret").unwrap(),
    )
    .unwrap();
    let public = py(dir.path(), &["open-cosign-key", "ours.key", "s3cret"]);
    assert_eq!(
        PublicKey::from_pem(public.as_bytes()).unwrap(),
        key.public_key()
    );
    // Python reads the public PEM written here the same.
    assert_eq!(public, key.public_key().to_pem());
}

#[test]
fn signatures_verify_across_implementations() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let annotations = BTreeMap::from([("org.example/commit".to_owned(), "a1b2c3".to_owned())]);
    let payload = simple_signing_payload("registry.example/team/flags", DIGEST, &annotations);
    std::fs::write(path("payload.json"), &payload).unwrap();

    // Signed here, verified by OpenSSL through Python.
    let key = SigningKey::generate();
    std::fs::write(path("ours.pub"), key.public_key().to_pem()).unwrap();
    std::fs::write(path("ours.sig"), key.sign(&payload)).unwrap();
    let out = py(
        dir.path(),
        &["verify", "ours.pub", "payload.json", "ours.sig"],
    );
    assert_eq!(out.trim(), "verified");

    // Signed by OpenSSL with a cosign-format key, verified here: with a low and a high S.
    py(dir.path(), &["cosign-key", "pw"]);
    let theirs = PublicKey::from_pem(&std::fs::read(path("cosign.pub")).unwrap()).unwrap();
    let expected = Expected {
        manifest_digest: DIGEST,
        docker_reference: Some("registry.example/team/flags:v2"),
    };
    for half in ["low", "high"] {
        let signature = py(
            dir.path(),
            &["sign", "cosign.key", "pw", "payload.json", half],
        );
        let verified = verify(&payload, &signature, &theirs, &expected).unwrap();
        assert_eq!(verified.annotations, annotations);
        assert_eq!(verified.key_fingerprint, theirs.fingerprint());
        assert_eq!(
            verify(&payload, &signature, &key.public_key(), &expected),
            Err(Refusal::BadSignature)
        );
    }

    // And a signature made here from the Python-made key verifies in Python.
    let theirs_here =
        SigningKey::from_pem(&std::fs::read(path("cosign.key")).unwrap(), Some(b"pw")).unwrap();
    std::fs::write(path("here.sig"), theirs_here.sign(&payload)).unwrap();
    let out = py(
        dir.path(),
        &["verify", "cosign.pub", "payload.json", "here.sig"],
    );
    assert_eq!(out.trim(), "verified");
    assert!(
        verify(
            &payload,
            &STANDARD.encode(theirs_here.sign(&payload)),
            &theirs,
            &expected
        )
        .is_ok()
    );
}
