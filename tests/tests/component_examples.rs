//! The component examples as a user meets them: `examples/python-notes` (componentize-py
//! from PyPI) and `examples/js-redirects` (componentize-js from npm), each built by its own
//! build.sh with the workspace's `cup` and `cup-embed`, embedded, verified, served by `cupd`
//! from its config directory, and driven with `cup`: apply, get, list, the schema's 400, the
//! controller's own 400 (`invalid`), delete and 404, checking the files each promises. Then
//! the Python package travels as any controller does: pushed to a real registry, signed,
//! and loaded by digest by a cupd that requires signatures.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use crate::cli_common::{Cup, Run, files};
use cup_e2e::cupd::{Cupd, CupdConfig};
use cup_e2e::registry::TestRegistry;
use cup_e2e::{bin, repo_root, shared_code_cache};

/// Runs `examples/<name>/build.sh` with the workspace's tools, once per example and process
/// (tests of this file share the builds; two runs of one build.sh at once would share its
/// target directory); returns the package.
fn build(name: &str, package: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let path = build_now(name, package);
    built.insert(name.to_owned(), path.clone());
    path
}

fn build_now(name: &str, package: &str) -> PathBuf {
    let dir = repo_root().join("examples").join(name);
    let built = Run::of(
        Command::new("bash")
            .arg("build.sh")
            .current_dir(&dir)
            .env("CUP", bin("cup"))
            .env("CUP_EMBED", bin("cup-embed"))
            .output()
            .expect("running build.sh"),
    );
    built.ok_as(&format!("examples/{name}/build.sh"));
    let path = dir.join("config").join(package);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        wasmparser::Parser::is_component(&bytes),
        "{name} builds a component"
    );
    let read = cup_sections::read_package(&bytes).expect("a package");
    assert!(read.integrity.is_ok(), "{:?}", read.integrity);
    assert_eq!(
        read.manifest.map(|m| m.abi).as_deref(),
        Some(cup_sections::ABI_COMPONENT)
    );
    path
}

struct Served {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    data: PathBuf,
    cupd: Cupd,
}

impl Served {
    /// cupd over an empty data directory with the example's config directory as it is.
    fn start(example: &str) -> Served {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&home).expect("home");
        std::fs::create_dir_all(&data).expect("data");
        let config = repo_root().join("examples").join(example).join("config");
        let store = tmp.path().join("store");
        let mut cfg = CupdConfig::new(&config, &data, &store);
        cfg.args = vec![
            "--code-cache".into(),
            shared_code_cache().display().to_string(),
        ];
        let cupd = Cupd::start(&cfg);
        Served {
            _tmp: tmp,
            home,
            data,
            cupd,
        }
    }

    fn cup(&self, args: &[&str]) -> Run {
        let address = self.cupd.base_url();
        let mut all = vec!["-a", address.as_str()];
        all.extend_from_slice(args);
        Cup::new(&self.home).run(&all)
    }

    fn cup_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let address = self.cupd.base_url();
        let mut all = vec!["-a", address.as_str()];
        all.extend_from_slice(args);
        Cup::new(&self.home).run_stdin(&all, stdin)
    }

    fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-o", "json", "get"];
        all.extend_from_slice(args);
        self.cup(&all).json()
    }

    /// `metadata.name` of every resource `cup get PLURAL -o json` lists, in its order.
    fn listed_names(&self, plural: &str) -> Vec<String> {
        let listed = self.get_json(&[plural]);
        listed
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {listed}"))
            .iter()
            .map(|n| n["metadata"]["name"].as_str().expect("name").to_owned())
            .collect()
    }
}

#[test]
fn the_python_notes_component_serves_notes_as_markdown_files() {
    build("python-notes", "notes.wasm");
    let s = Served::start("python-notes");
    let status = s.cupd.controller_status("notes");
    assert_eq!(status["state"], "loaded", "{status}");
    assert_eq!(status["abi"], cup_sections::ABI_COMPONENT);

    let sample = repo_root().join("examples/python-notes/examples/groceries.json");
    s.cup(&["apply", "-f", &sample.display().to_string()])
        .ok_as("cup apply");
    assert_eq!(files(&s.data), ["default/groceries.md"]);
    let text = std::fs::read_to_string(s.data.join("default/groceries.md")).expect("note");
    assert!(text.starts_with("---\n"), "{text}");
    assert!(text.ends_with("# Groceries\n\n- milk\n- eggs\n"), "{text}");

    let applied: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sample).expect("sample")).expect("json");
    let got = s.get_json(&["note", "groceries"]);
    assert_eq!(got["spec"], applied["spec"], "the spec round-trips");
    assert_eq!(got["metadata"]["labels"], applied["metadata"]["labels"]);
    assert_eq!(got["metadata"]["annotations"], serde_json::Value::Null);

    let second = r#"{"apiVersion":"notes.example.com/v1","kind":"Note","metadata":{"name":"todo"},"spec":{"title":"To do"}}"#;
    s.cup_stdin(&["apply"], second).ok_as("cup apply (stdin)");
    assert_eq!(s.listed_names("notes"), ["groceries", "todo"]);
    let table = s.cup(&["get", "notes"]).ok_as("cup get notes").to_owned();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("default") && l.contains("todo")),
        "{table}"
    );

    // The schema refuses before the controller runs (400); nothing is written.
    let bad = r#"{"apiVersion":"notes.example.com/v1","kind":"Note","metadata":{"name":"bad"},"spec":{"title":"x","colour":"red"}}"#;
    let refused = s.cup_stdin(&["apply"], bad);
    assert!(
        refused.one_line_error().contains("colour"),
        "{}",
        refused.stderr
    );
    // The controller's own refusal, `invalid`, is a 400 with its message.
    let put = s.cupd.put(
        "/apis/notes.example.com/v1/namespaces/default/notes/Bad_Name",
        r#"{"apiVersion":"notes.example.com/v1","kind":"Note","metadata":{"name":"Bad_Name"},"spec":{"title":"x"}}"#,
    );
    assert_eq!(put.status, 400, "{put:?}");
    assert!(put.text().contains("Bad_Name"), "{}", put.text());
    assert_eq!(files(&s.data), ["default/groceries.md", "default/todo.md"]);

    // A note file the controller cannot read is a 500 naming the file, not a crash.
    std::fs::write(s.data.join("default/broken.md"), "no front matter").expect("write");
    let broken = s
        .cupd
        .get("/apis/notes.example.com/v1/namespaces/default/notes/broken");
    assert_eq!(broken.status, 500, "{broken:?}");
    assert!(broken.text().contains("broken.md"), "{}", broken.text());
    std::fs::remove_file(s.data.join("default/broken.md")).expect("rm");

    s.cup(&["delete", "note", "groceries"]).ok_as("cup delete");
    s.cup(&["delete", "note", "todo"]).ok_as("cup delete");
    assert_eq!(files(&s.data), Vec::<String>::new());
    let missing = s
        .cupd
        .get("/apis/notes.example.com/v1/namespaces/default/notes/todo");
    assert_eq!(missing.status, 404, "{missing:?}");
    let again = s.cup(&["delete", "note", "todo"]);
    assert!(
        again.one_line_error().contains("not found"),
        "{}",
        again.stderr
    );
}

#[test]
fn the_js_redirects_component_keeps_rules_in_one_shared_file() {
    build("js-redirects", "redirects.wasm");
    let s = Served::start("js-redirects");
    let status = s.cupd.controller_status("redirects");
    assert_eq!(status["state"], "loaded", "{status}");
    assert_eq!(status["abi"], cup_sections::ABI_COMPONENT);

    // A rule file with a comment and a rule nobody named: both survive every rewrite.
    std::fs::create_dir_all(s.data.join("default")).expect("mkdir");
    let handwritten = "# kept by hand\n/legacy /new 302\n";
    std::fs::write(s.data.join("default/_redirects"), handwritten).expect("write");

    let sample = repo_root().join("examples/js-redirects/examples/old-docs.json");
    s.cup(&["apply", "-f", &sample.display().to_string()])
        .ok_as("cup apply");
    let second = r#"{"apiVersion":"web.example.com/v1","kind":"Redirect","metadata":{"name":"blog"},"spec":{"from":"/blog","to":"https://blog.example.com/","status":308}}"#;
    s.cup_stdin(&["apply"], second).ok_as("cup apply (stdin)");
    let text = std::fs::read_to_string(s.data.join("default/_redirects")).expect("rules");
    assert!(text.starts_with(handwritten), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");

    let got = s.get_json(&["redirect", "old-docs"]);
    let applied: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sample).expect("sample")).expect("json");
    assert_eq!(got["spec"], applied["spec"]);
    let names = s.listed_names("redirects");
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.iter().any(|n| n == "old-docs") && names.iter().any(|n| n == "blog"),
        "{names:?}"
    );

    // Schema: status 200 is not a redirect (400, nothing written).
    let bad = r#"{"apiVersion":"web.example.com/v1","kind":"Redirect","metadata":{"name":"bad"},"spec":{"from":"/a","to":"/b","status":200}}"#;
    let before = std::fs::read_to_string(s.data.join("default/_redirects")).expect("rules");
    let refused = s.cup_stdin(&["apply"], bad);
    assert!(
        refused.one_line_error().contains("status"),
        "{}",
        refused.stderr
    );
    // The controller's own refusal: a redirect has no place for labels (400).
    let labelled = s.cupd.put(
        "/apis/web.example.com/v1/namespaces/default/redirects/labelled",
        r#"{"apiVersion":"web.example.com/v1","kind":"Redirect","metadata":{"name":"labelled","labels":{"a":"b"}},"spec":{"from":"/x","to":"/y"}}"#,
    );
    assert_eq!(labelled.status, 400, "{labelled:?}");
    assert_eq!(
        std::fs::read_to_string(s.data.join("default/_redirects")).expect("rules"),
        before
    );

    s.cup(&["delete", "redirect", "old-docs"])
        .ok_as("cup delete");
    s.cup(&["delete", "redirect", "blog"]).ok_as("cup delete");
    assert_eq!(
        std::fs::read_to_string(s.data.join("default/_redirects")).expect("rules"),
        handwritten,
        "only the served rules went"
    );
    let missing = s
        .cupd
        .get("/apis/web.example.com/v1/namespaces/default/redirects/blog");
    assert_eq!(missing.status, 404, "{missing:?}");
}

#[test]
fn a_component_is_pushed_signed_and_loaded_by_digest() {
    let package = build("python-notes", "notes.wasm");
    let registry = TestRegistry::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let cup = Cup::new(&home).with_env("CUP_SIGNING_PASSWORD", "pw");
    let store = tmp.path().join("cup-store").display().to_string();
    let key = tmp.path().join("ci").display().to_string();
    cup.run(&["controller", "keygen", "--prefix", &key])
        .ok_as("keygen");

    let reference = registry.reference("cup/notes:v1");
    let pushed = cup.run(&[
        "--store",
        &store,
        "controller",
        "push",
        &package.display().to_string(),
        &reference,
    ]);
    let pinned = pushed
        .ok_as("cup controller push")
        .lines()
        .last()
        .expect("the pinned reference")
        .to_owned();
    cup.run(&[
        "--store",
        &store,
        "controller",
        "sign",
        &pinned,
        "--key",
        &format!("{key}.key"),
    ])
    .ok_as("cup controller sign");
    let inspected = cup
        .run(&[
            "--store",
            &store,
            "-o",
            "json",
            "controller",
            "inspect",
            &pinned,
        ])
        .json();
    // The artifact's config says what the wasm OCI layout says of a component.
    let config = &inspected["config"];
    assert_eq!(config["os"], "wasip2", "{inspected}");
    // componentize-py adds an `exports` instance of its own beside the interface.
    let exported = |v: &serde_json::Value| {
        v.as_array()
            .is_some_and(|e| e.iter().any(|e| e == cup_sections::ABI_COMPONENT))
    };
    assert!(exported(&config["component"]["exports"]), "{inspected}");
    assert!(
        config["component"]["imports"]
            .as_array()
            .is_some_and(|i| i.iter().any(|i| i
                .as_str()
                .is_some_and(|i| i.starts_with("wasi:filesystem/preopens@0.2")))),
        "{inspected}"
    );
    assert_eq!(
        inspected["manifest"]["annotations"]["io.flipt.cup.abi"],
        cup_sections::ABI_COMPONENT
    );
    // The file itself: a component exporting the interface.
    let local = cup
        .run(&[
            "-o",
            "json",
            "controller",
            "inspect",
            &package.display().to_string(),
        ])
        .json();
    assert_eq!(local["encoding"], "component", "{local}");
    assert!(exported(&local["exports"]), "{local}");

    // cupd with an empty store of its own: it pulls by digest, checks the signature, runs it.
    let config = tmp.path().join("config");
    std::fs::create_dir_all(&config).expect("config");
    std::fs::write(
        config.join("notes.json"),
        format!(
            r#"{{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{{"name":"notes"}},"spec":{{"type":"wasm","spec":{{"image":"{pinned}"}}}}}}"#
        ),
    )
    .expect("write");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let cupd_store = tmp.path().join("cupd-store");
    let mut cfg = CupdConfig::new(&config, &data, &cupd_store);
    cfg.args = vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
        "--require-signatures".into(),
        "--verify-key".into(),
        format!("{key}.pub"),
    ];
    let cupd = Cupd::start(&cfg);
    let status = cupd.controller_status("notes");
    assert_eq!(status["state"], "loaded", "{status}");
    assert_eq!(status["abi"], cup_sections::ABI_COMPONENT);
    assert!(status["signature"].is_object(), "{status}");
    let put = cupd.put(
        "/apis/notes.example.com/v1/namespaces/default/notes/signed",
        r#"{"apiVersion":"notes.example.com/v1","kind":"Note","metadata":{"name":"signed"},"spec":{"title":"Signed"}}"#,
    );
    assert_eq!(put.status, 202, "{put:?}");
    assert_eq!(files(&data), ["default/signed.md"]);
}
