//! Signed controllers end to end: keys made and manifests signed by `cup` (cosign's format),
//! kept in a real registry (Debian's docker-registry on loopback) and in the local store,
//! and cupd with `--require-signatures` running only what verifies: a signed controller
//! loads (also offline, from the store, and air-gapped, signed in the store alone); an
//! unsigned one, one signed by another key, and one whose signature was copied to another
//! repository answer 503 with the reason and are never compiled; the others keep serving.

use std::path::{Path, PathBuf};

use crate::cli_common::{Cup, Run};
use cup_e2e::cupd::{Cupd, CupdConfig, copy_tree, write_template_controller};
use cup_e2e::registry::TestRegistry;
use cup_e2e::{flipt_package, repo_root, shared_code_cache};

const FLAG: &str = "/apis/flipt.io/v1alpha1/namespaces/default/flags/new-login";
const TEMPLATE_LIST: &str = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources";
const PASSWORD: &str = "correct horse";

/// Pushes the example package to `repo:tag` (the `title` makes its manifest distinct);
/// returns the manifest digest.
fn push(registry: &TestRegistry, repo: &str, tag: &str, title: &str) -> String {
    let options = cup_oci::ArtifactOptions {
        title: title.to_owned(),
        ..cup_oci::ArtifactOptions::default()
    };
    let artifact = cup_oci::Artifact::build(flipt_package(), &options).unwrap();
    registry.put_blob(repo, flipt_package());
    registry.put_blob(repo, &artifact.config);
    let pushed = registry.put_manifest(repo, tag, &artifact.manifest, cup_oci::media::OCI_MANIFEST);
    assert_eq!(pushed.status, 201, "{pushed:?}");
    artifact.manifest_digest
}

struct Setup {
    dir: tempfile::TempDir,
    cup: Cup,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let cup = Cup::new(&dir.path().join("home")).with_env("CUP_SIGNING_PASSWORD", PASSWORD);
        let setup = Setup { dir, cup };
        for prefix in ["ci", "other"] {
            let made = setup.cup(&["controller", "keygen", "--prefix", &setup.path(prefix)]);
            made.ok();
        }
        setup
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `cup --store <dir>/store args…`.
    fn cup(&self, args: &[&str]) -> Run {
        let store = self.path("store");
        let mut all = vec!["--store", store.as_str()];
        all.extend_from_slice(args);
        self.cup.run(&all)
    }

    /// A config directory with the template controller and `controllers` (name, JSON spec).
    fn config(&self, name: &str, controllers: &[(&str, String)]) -> PathBuf {
        let config = self.dir.path().join(name);
        std::fs::create_dir_all(&config).unwrap();
        write_template_controller(&config, r#"{"type":"object"}"#);
        for (controller, spec) in controllers {
            std::fs::write(
                config.join(format!("{controller}.json")),
                format!(
                    r#"{{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{{"name":"{controller}"}},"spec":{{"type":"wasm","spec":{spec}}}}}"#
                ),
            )
            .unwrap();
        }
        config
    }

    fn start(&self, config: &Path, store: &str, extra: &[&str]) -> Cupd {
        let source = self.dir.path().join("source");
        if !source.exists() {
            copy_tree(&repo_root().join("examples/flipt/repo"), &source);
            std::fs::create_dir_all(source.join("default")).unwrap();
        }
        let store = self.dir.path().join(store);
        let mut cfg = CupdConfig::new(config, &source, &store);
        cfg.args = vec![
            "--code-cache".into(),
            shared_code_cache().display().to_string(),
            "--require-signatures".into(),
            "--verify-key".into(),
            self.path("ci.pub"),
        ];
        cfg.args.extend(extra.iter().map(|s| (*s).to_owned()));
        Cupd::start(&cfg)
    }
}

/// Fetches `REPO:sha256-<hex>.sig` from the registry, checks its one layer as cosign does,
/// prints `verified <docker-reference> <digest>`.
const INDEPENDENT_CHECK: &str = r#"
import base64, json, sys, urllib.request
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
host, repo, digest, pub = sys.argv[1:5]
def get(path, accept=None):
    req = urllib.request.Request("http://%s/v2/%s/%s" % (host, repo, path))
    if accept:
        req.add_header("Accept", accept)
    return urllib.request.urlopen(req).read()
tag = digest.replace("sha256:", "sha256-") + ".sig"
manifest = json.loads(get("manifests/" + tag, "application/vnd.oci.image.manifest.v1+json"))
[layer] = manifest["layers"]
assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json", layer
payload = get("blobs/" + layer["digest"])
signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
key = serialization.load_pem_public_key(open(pub, "rb").read())
key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
critical = json.loads(payload)["critical"]
assert critical["type"] == "cosign container image signature", critical
assert critical["image"]["docker-manifest-digest"] == digest, critical
print("verified", critical["identity"]["docker-reference"], critical["image"]["docker-manifest-digest"])
"#;

#[test]
fn only_controllers_whose_signature_verifies_are_run() {
    let mut registry = TestRegistry::start();
    let s = Setup::new();
    let digest = push(&registry, "cup/flipt", "v1", "flipt.wasm");
    let tagged = registry.reference("cup/flipt:v1");

    // Unsigned: verify-signature says so and exits 1.
    let none = s.cup(&[
        "controller",
        "verify-signature",
        &tagged,
        "--key",
        &s.path("ci.pub"),
    ]);
    assert_eq!(none.code, 1, "{}", none.stderr);
    assert!(none.stdout.contains("no signatures"), "{}", none.stdout);

    let signed = s.cup(&["controller", "sign", &tagged, "--key", &s.path("ci.key")]);
    assert!(signed.ok().contains(&digest), "{}", signed.stdout);
    let inspected = s
        .cup(&["-o", "json", "controller", "inspect", &tagged])
        .json();
    assert_eq!(inspected["signatures"][0]["signed_digest"], digest.as_str());
    assert_eq!(
        inspected["signatures"][0]["docker_reference"],
        registry.reference("cup/flipt")
    );
    let good = s.cup(&[
        "-o",
        "json",
        "controller",
        "verify-signature",
        &tagged,
        "--key",
        &s.path("ci.pub"),
    ]);
    assert_eq!(good.code, 0, "{}", good.stderr);
    let report = good.json();
    assert_eq!(report["manifest_digest"], digest.as_str());
    assert_eq!(report["signatures"][0]["verified"], true);
    assert_eq!(
        report["signatures"][0]["docker_reference"],
        registry.reference("cup/flipt")
    );
    // Independently of cup's code: Python reads the `.sig` manifest from the registry's HTTP
    // API, checks the ECDSA signature over the stored payload with `cryptography`, and the
    // payload's fields, as cosign's verifier would.
    let python =
        cup_e2e::python::venv_python("sign-venv", &["cryptography==51.0.1", "pynacl==1.6.2"]);
    let checked = cup_e2e::python::run_script(
        &python,
        INDEPENDENT_CHECK,
        &[&registry.host(), "cup/flipt", &digest, &s.path("ci.pub")],
        s.dir.path(),
    );
    assert_eq!(
        checked.trim(),
        format!("verified {} {}", registry.reference("cup/flipt"), digest)
    );
    let wrong = s.cup(&[
        "controller",
        "verify-signature",
        &tagged,
        "--key",
        &s.path("other.pub"),
    ]);
    assert_eq!(wrong.code, 1);
    assert!(wrong.stdout.contains("refused"), "{}", wrong.stdout);

    // The same signature copied to another repository holding the same image.
    let moved_digest = push(&registry, "cup/moved", "v1", "flipt.wasm");
    assert_eq!(moved_digest, digest);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = cup_oci::Registry::new(cup_oci::RegistryOptions::default());
    let copied = runtime
        .block_on(client.signatures(&tagged, &digest))
        .unwrap();
    assert_eq!(copied.len(), 1);
    runtime
        .block_on(client.attach_signature(
            &registry.reference("cup/moved:v1"),
            &digest,
            copied[0].clone(),
        ))
        .unwrap();
    let unsigned_digest = push(&registry, "cup/unsigned", "v1", "unsigned.wasm");

    // A signed controller loads and serves; its signature is in /status.
    let image = |repo: &str, d: &str| {
        format!(
            r#"{{"image":"{}"}}"#,
            registry.reference(&format!("{repo}@{d}"))
        )
    };
    let config = s.config("signed", &[("flipt", image("cup/flipt", &digest))]);
    let cupd = s.start(&config, "cupd-store", &[]);
    let flipt = cupd.controller_status("flipt");
    assert_eq!(flipt["state"], "loaded", "{flipt}");
    assert_eq!(flipt["signature"]["key"], s.path("ci.pub"));
    assert_eq!(
        flipt["signature"]["docker_reference"],
        registry.reference("cup/flipt")
    );
    assert_eq!(cupd.get(FLAG).status, 200);
    assert_eq!(cupd.get(TEMPLATE_LIST).status, 200);
    drop(cupd);

    // Unsigned, copied to another repository, signed by another key: refused, never
    // compiled (no code digest, no invocation), while the template controller serves.
    let refused_config = s.config(
        "refused",
        &[
            ("unsigned", image("cup/unsigned", &unsigned_digest)),
            ("moved", image("cup/moved", &digest)),
            (
                "wrongkey",
                format!(
                    r#"{{"image":"{}","verify":{{"keys":["{}"]}}}}"#,
                    registry.reference(&format!("cup/flipt@{digest}")),
                    s.path("other.pub")
                ),
            ),
        ],
    );
    // The unsigned controller's routes come from the config directory (it is never read for
    // embedded ones), so they exist and answer 503.
    std::fs::copy(
        repo_root().join("examples/flipt/defs/flags.json"),
        refused_config.join("flags-def.json"),
    )
    .unwrap();
    std::fs::write(
        refused_config.join("unsigned-binding.json"),
        r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Binding","metadata":{"name":"unsigned"},"spec":{"controller":"unsigned","resources":["flipt.io/v1alpha1/flags"]}}"#,
    )
    .unwrap();
    let cupd = s.start(&refused_config, "cupd-store", &[]);
    for (name, reason) in [
        ("unsigned", "has no signature"),
        ("moved", "cup/flipt"),
        ("wrongkey", "signature 1 with key"),
    ] {
        let status = cupd.controller_status(name);
        assert_eq!(status["state"], "failed", "{name}: {status}");
        let error = status["error"].as_str().unwrap();
        assert!(error.starts_with("signature required"), "{name}: {error}");
        assert!(error.contains(reason), "{name}: {error}");
        assert!(
            status.get("digest").is_none(),
            "{name} was compiled: {status}"
        );
        assert!(status.get("signature").is_none());
    }
    assert_eq!(
        cupd.get(TEMPLATE_LIST).status,
        200,
        "the others keep serving"
    );
    let metrics = cupd.get("/metrics").text();
    assert!(
        !metrics.contains("cupd_controller_invocations_total{controller=\"unsigned\""),
        "{metrics}"
    );
    let answer = cupd.get(FLAG);
    assert_eq!(answer.status, 503, "its routes: {}", answer.text());
    assert!(
        answer.text().contains("signature required"),
        "{}",
        answer.text()
    );
    drop(cupd);

    // Offline: the store kept the signature, and verifies it again without the registry.
    registry.stop();
    let cupd = s.start(&config, "cupd-store", &[]);
    let flipt = cupd.controller_status("flipt");
    assert_eq!(flipt["state"], "loaded", "offline restart: {flipt}");
    assert_eq!(cupd.get(FLAG).status, 200);
}

#[test]
fn an_air_gapped_store_signs_and_verifies_without_a_registry() {
    let s = Setup::new();
    let wasm = s.dir.path().join("flipt.wasm");
    std::fs::write(&wasm, flipt_package()).unwrap();
    let added = s.cup(&[
        "controller",
        "add",
        wasm.to_str().unwrap(),
        "--tag",
        "flipt:dev",
    ]);
    let digest = added.ok().trim().to_owned();
    let image = format!("localhost/cup/flipt@{digest}");
    s.cup(&[
        "controller",
        "sign",
        &image,
        "--key",
        &s.path("ci.key"),
        "--local",
    ])
    .ok();
    let verified = s.cup(&[
        "controller",
        "verify-signature",
        &image,
        "--key",
        &s.path("ci.pub"),
        "--local",
    ]);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);

    // The file itself: the digest it has once added, and the store's signatures of it.
    let by_file = s.cup(&[
        "-o",
        "json",
        "controller",
        "verify-signature",
        wasm.to_str().unwrap(),
        "--key",
        &s.path("ci.pub"),
    ]);
    assert_eq!(by_file.code, 0, "{}{}", by_file.stdout, by_file.stderr);
    assert_eq!(by_file.json()["manifest_digest"], digest.as_str());
    let other_key = s.cup(&[
        "controller",
        "verify-signature",
        wasm.to_str().unwrap(),
        "--key",
        &s.path("other.pub"),
    ]);
    assert_eq!(other_key.code, 1, "{}", other_key.stdout);

    // save/load carries the signature to another machine's store.
    let archive = s.path("controllers.tar");
    s.cup(&["controller", "save", "-O", &archive, &image]).ok();
    let other_store = s.path("other-store");
    s.cup
        .run(&["--store", &other_store, "controller", "load", &archive])
        .ok();

    let config = s.config("local", &[("flipt", format!(r#"{{"image":"{image}"}}"#))]);
    let cupd = s.start(&config, "other-store", &[]);
    let flipt = cupd.controller_status("flipt");
    assert_eq!(flipt["state"], "loaded", "{flipt}");
    assert_eq!(cupd.get(FLAG).status, 200);
    drop(cupd);

    // A wrong password is a clear error, and nothing is signed.
    let bad = Cup::new(&s.dir.path().join("home")).with_env("CUP_SIGNING_PASSWORD", "wrong");
    let store = s.path("store");
    let refused = bad.run(&[
        "--store",
        &store,
        "controller",
        "sign",
        &image,
        "--key",
        &s.path("ci.key"),
        "--local",
    ]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("password"), "{}", refused.stderr);
    // A path controller cannot be verified and is refused when signatures are required.
    let by_path = s.config(
        "by-path",
        &[("flipt", format!(r#"{{"path":"{}"}}"#, wasm.display()))],
    );
    let cupd = s.start(&by_path, "store", &[]);
    let flipt = cupd.controller_status("flipt");
    assert_eq!(flipt["state"], "failed");
    assert!(
        flipt["error"].as_str().unwrap().contains("spec.path"),
        "{flipt}"
    );
}

#[test]
fn a_bad_verify_key_stops_cupd_and_keygen_writes_a_private_key_only_its_owner_reads() {
    let s = Setup::new();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.path("ci.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(s.path("ci.key"))
            .unwrap()
            .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    );
    let again = s.cup(&["controller", "keygen", "--prefix", &s.path("ci")]);
    assert_eq!(
        again.code, 1,
        "an existing key is not replaced without --force"
    );
    let nopass = Cup::new(&s.dir.path().join("home"));
    let refused = nopass.run(&["controller", "keygen", "--prefix", &s.path("x")]);
    assert!(
        refused.stderr.contains("CUP_SIGNING_PASSWORD"),
        "{}",
        refused.stderr
    );

    std::fs::write(s.path("junk.pub"), "not a key").unwrap();
    let config = s.config("junk", &[]);
    let store = s.dir.path().join("store");
    let source = tempfile::tempdir().unwrap();
    let mut cfg = CupdConfig::new(&config, source.path(), &store);
    cfg.args = vec!["--verify-key".into(), s.path("junk.pub")];
    let log = match Cupd::try_start(&cfg) {
        Ok(_) => panic!("cupd started with a junk key"),
        Err(log) => log,
    };
    assert!(
        log.contains("--verify-key") && log.contains("junk.pub"),
        "{log}"
    );
}
