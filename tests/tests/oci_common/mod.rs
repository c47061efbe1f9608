//! Shared by the `oci_*` tests: `cup` invocations with a private store, and store snapshots to prove a failure changed nothing.

use std::path::{Path, PathBuf};
use std::process::Output;

use cup_e2e::registry::TestRegistry;
use cup_e2e::{bin, flipt_package};

/// The definitions' `group/version/plural` keys, as the annotations list them.
pub const FLIPT_KEYS: &str = "flipt.io/v1alpha1/flags,flipt.io/v1alpha1/segments";

/// A temp dir with the package written as `ctl.wasm` and a store dir path.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ctl.wasm"), flipt_package()).expect("write ctl.wasm");
        Work { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn wasm(&self) -> PathBuf {
        self.path("ctl.wasm")
    }

    /// `cup controller push` of this work's package to `reference`; must succeed. Its stdout.
    pub fn push(&self, reference: &str) -> String {
        ok(self.cup(&[
            "controller",
            "push",
            &self.wasm().to_string_lossy(),
            reference,
        ]))
    }

    pub fn store(&self) -> PathBuf {
        self.path("store")
    }

    /// `cup --store <store> <args>` (with HOME pointing into the temp dir, so no Docker
    /// config of the machine is read).
    pub fn cup(&self, args: &[&str]) -> Output {
        self.cup_in(&self.store(), args)
    }

    pub fn cup_in(&self, store: &Path, args: &[&str]) -> Output {
        self.command(store, args).output().expect("running cup")
    }

    /// `cup` as [`Work::cup`], with extra environment variables and text on stdin.
    pub fn cup_with(&self, args: &[&str], env: &[(&str, &std::ffi::OsStr)], stdin: &str) -> Output {
        use std::io::Write;
        let mut cmd = self.command(&self.store(), args);
        cmd.envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("running cup");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).expect("stdin");
        }
        child.wait_with_output().expect("waiting for cup")
    }

    fn command(&self, store: &Path, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(bin("cup"));
        cmd.arg("--store")
            .arg(store)
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("DOCKER_CONFIG")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("CUP_PLAIN_HTTP");
        cmd
    }
}

/// Asserts success and returns stdout.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "cup failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts failure and returns stderr.
pub fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "cup should have failed:\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a message contains every part.
pub fn says(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} should contain {part:?}"
        );
    }
}

/// Blob names and index.json of a store (empty when the store does not exist yet).
pub fn snapshot(store: &Path) -> (Vec<String>, String) {
    let blobs = store.join("blobs/sha256");
    let names = if blobs.exists() {
        cup_e2e::dir_listing(&blobs)
    } else {
        Vec::new()
    };
    let index = std::fs::read_to_string(store.join("index.json")).unwrap_or_default();
    let tags = index.matches("org.opencontainers.image.ref.name").count();
    (names, format!("{tags} tags: {index}"))
}

/// Asserts the store holds no blob and no entry.
pub fn assert_empty_store(store: &Path) {
    let (blobs, _) = snapshot(store);
    assert!(blobs.is_empty(), "the store gained blobs: {blobs:?}");
    if let Ok(index) = std::fs::read_to_string(store.join("index.json")) {
        let parsed: serde_json::Value = serde_json::from_str(&index).expect("index json");
        assert_eq!(
            parsed["manifests"],
            serde_json::json!([]),
            "the store gained an entry"
        );
    }
}

/// The manifest digest printed by `push` (its last stdout line is `repo@sha256:…`).
pub fn pushed_digest(stdout: &str) -> String {
    let last = stdout.lines().last().expect("push printed a line");
    last.rsplit_once('@').expect("repo@digest").1.to_owned()
}

/// A hand-made image manifest (`mediaType` given) with the given config and layers,
/// each `(mediaType, digest, size)`.
pub fn raw_manifest(
    media_type: &str,
    config: (&str, &str, u64),
    layers: &[(&str, &str, u64)],
) -> Vec<u8> {
    let descriptor = |(mt, d, size): (&str, &str, u64)| serde_json::json!({"mediaType": mt, "digest": d, "size": size});
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config),
        "layers": layers.iter().copied().map(descriptor).collect::<Vec<_>>(),
    }))
    .expect("json")
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// Uploads `{}` as an OCI empty config; returns `(mediaType, digest, size)`.
pub fn empty_config(
    registry: &cup_e2e::registry::TestRegistry,
    repo: &str,
) -> (&'static str, String, u64) {
    (EMPTY_CONFIG, registry.put_blob(repo, b"{}"), 2)
}

/// Pulls `name` straight from `registry` into a fresh store, checks every byte against the
/// example package and that the store verifies.
pub fn assert_registry_serves_the_package(registry: &TestRegistry, name: &str) {
    let w = Work::new();
    let out = w.path("pulled.wasm");
    ok(w.cup(&[
        "controller",
        "pull",
        &registry.reference(name),
        "-O",
        &out.to_string_lossy(),
    ]));
    assert_eq!(std::fs::read(&out).expect("pulled"), flipt_package());
    ok(w.cup(&["controller", "list", "--verify"]));
}

/// A tar+gzip filesystem layer with the given files (what `FROM scratch` + `COPY` builds),
/// and its diff_id (the digest of the uncompressed tar).
pub fn tar_gz(files: &[(&str, &[u8])]) -> (Vec<u8>, String) {
    use std::io::Write;
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, *data).expect("append");
    }
    let tar = tar.into_inner().expect("tar");
    let diff_id = cup_sections::sha256_digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    (gz.finish().expect("gzip"), diff_id)
}
