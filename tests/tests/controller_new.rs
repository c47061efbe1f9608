//! `cup controller new` as a new user meets it, in each language: in a directory outside this
//! repository, the generated project builds with its own build.sh (the workspace's `cup` and
//! `cup-embed` on PATH), its tests pass, and `cupd` serves it from the generated config;
//! `cup apply`, `get` and `delete` then change the JSON files the controller promises, one
//! per resource. The Rust crate, the Python component and the JavaScript component go
//! through the same scenario.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli_common::{Cup, Run, files};
use cup_e2e::cupd::{Cupd, CupdConfig};
use cup_e2e::{bin, repo_root, shared_code_cache};

/// `cup` run in `cwd`, with HOME in `home`: no client config of the machine's.
fn cup(home: &Path, cwd: &Path, args: &[&str]) -> Run {
    Cup::new(home).in_dir(cwd).run(args)
}

fn cup_stdin(home: &Path, cwd: &Path, args: &[&str], stdin: &str) -> Run {
    Cup::new(home).in_dir(cwd).run_stdin(args, stdin)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn read_json(path: &Path) -> serde_json::Value {
    json(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// A temporary directory that is not inside this repository, where a Cargo workspace
/// above it would take the new crate in.
fn outside_the_repository() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let repo = repo_root().canonicalize().expect("repo root");
    let dir = tmp.path().canonicalize().expect("temp dir");
    assert!(
        !dir.starts_with(&repo),
        "{} is inside the repository",
        dir.display()
    );
    tmp
}

/// Runs a command of the generated crate: the workspace's binaries first on PATH, the
/// crate's own target directory, and no network (every crate it needs is one this
/// workspace has already built, so cargo's cache has them).
fn crate_command(program: &str, dir: &Path) -> Command {
    let bin_dir = bin("cup").parent().expect("target/<profile>").to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin_dir];
    paths.extend(std::env::split_paths(&path));
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env("PATH", std::env::join_paths(paths).expect("joinable PATH"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("CUP_STORE")
        .env_remove("CUP_CONFIG");
    command
}

#[test]
fn a_new_controller_builds_and_cupd_serves_it() {
    let tmp = outside_the_repository();
    let home = tmp.path();
    let cup_embed = bin("cup-embed");
    assert!(cup_embed.is_file());

    // `new`, as the README says, from the directory the user works in.
    let created = cup(home, home, &["controller", "new", "notes"]);
    let out = created.ok_as("cup controller new notes");
    assert!(out.contains("created notes in notes"), "{out}");
    let dir: PathBuf = home.join("notes");
    assert_eq!(
        files(&dir),
        [
            ".gitignore",
            "Cargo.toml",
            "README.md",
            "build.sh",
            "config/controller.json",
            "defs/notes.json",
            "examples/hello.json",
            "src/main.rs",
        ]
    );
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    let sdk = repo_root()
        .join("crates/cup-controller-sdk")
        .canonicalize()
        .expect("the SDK");
    assert!(
        manifest.contains(&format!(
            "cup-controller-sdk = {{ path = \"{}\" }}",
            sdk.display()
        )),
        "{manifest}"
    );
    assert!(manifest.contains("[workspace]"), "{manifest}");

    // build.sh: compile, embed into config/notes.wasm, verify.
    let build = Run::of(
        crate_command("bash", &dir)
            .arg("build.sh")
            .output()
            .expect("running build.sh"),
    );
    let out = build.ok_as("build.sh");
    assert!(out.contains("embedded 1 definition(s)"), "{out}");
    assert!(out.contains("config/notes.wasm"), "{out}");
    let package = std::fs::read(dir.join("config/notes.wasm")).expect("the package");
    let package = cup_sections::read_package(&package).expect("a package");
    assert!(package.integrity.is_ok(), "{:?}", package.integrity);
    // The module cargo built is left as it was: the definitions went into the copy.
    let built = std::fs::read(dir.join("target/wasm32-wasip1/release/notes.wasm")).expect("built");
    let built = cup_sections::read_package(&built).expect("a module");
    assert!(
        matches!(built.integrity, cup_sections::Integrity::NoCupSections),
        "{:?}",
        built.integrity
    );

    // The crate's own tests, on the host, with the cargo a user would run (the one on PATH,
    // which is what build.sh runs too).
    let test = Run::of(
        crate_command("cargo", &dir)
            .args(["test", "--quiet"])
            .output()
            .expect("running cargo test"),
    );
    test.ok_as("cargo test in the new crate");

    serve_notes(home, &dir, &[]);
}

/// Builds a component project `cup controller new notes --lang LANG` wrote, with its
/// build.sh and the workspace's `cup` and `cup-embed` found on PATH, and checks the package:
/// a component, its definitions embedded, the component ABI in its manifest. Returns the
/// build's output: (stdout, stderr).
fn build_component(dir: &Path) -> (String, String) {
    let bin_dir = bin("cup").parent().expect("target/<profile>").to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin_dir];
    paths.extend(std::env::split_paths(&path));
    let build = Run::of(
        Command::new("bash")
            .arg("build.sh")
            .current_dir(dir)
            .env("PATH", std::env::join_paths(paths).expect("joinable PATH"))
            .env_remove("CUP")
            .env_remove("CUP_EMBED")
            .env_remove("CUP_STORE")
            .env_remove("CUP_CONFIG")
            .output()
            .expect("running build.sh"),
    );
    let out = build.ok_as("build.sh").to_owned();
    assert!(out.contains("embedded 1 definition(s)"), "{out}");
    assert!(out.contains("config/notes.wasm"), "{out}");
    let bytes = std::fs::read(dir.join("config/notes.wasm")).expect("the package");
    assert!(wasmparser::Parser::is_component(&bytes), "a component");
    let package = cup_sections::read_package(&bytes).expect("a package");
    assert!(package.integrity.is_ok(), "{:?}", package.integrity);
    assert_eq!(
        package.manifest.map(|m| m.abi).as_deref(),
        Some(cup_sections::ABI_COMPONENT)
    );
    // The component built is left as it was: the definitions went into the copy.
    let built = std::fs::read(dir.join("target/notes.component.wasm")).expect("built");
    let built = cup_sections::read_package(&built).expect("a component");
    assert!(
        matches!(built.integrity, cup_sections::Integrity::NoCupSections),
        "{:?}",
        built.integrity
    );
    (build.stdout, build.stderr)
}

/// `cup controller new notes --lang LANG` in a directory outside the repository: the files
/// it reports, as JSON, and the project directory.
fn new_component(home: &Path, lang: &str, files_expected: &[&str]) -> PathBuf {
    let created = cup(
        home,
        home,
        &["-o", "json", "controller", "new", "notes", "--lang", lang],
    )
    .json();
    assert_eq!(created["language"], lang, "{created}");
    assert_eq!(created["dir"], "notes", "{created}");
    assert_eq!(created["kind"], "Note", "{created}");
    let dir = home.join("notes");
    let mut reported: Vec<String> = created["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("a path").to_owned())
        .collect();
    reported.sort();
    assert_eq!(reported, files_expected);
    assert_eq!(files(&dir), files_expected);
    // The contract travels with the project, as this repository has it.
    assert_eq!(
        std::fs::read_to_string(dir.join("wit/controller.wit")).expect("the contract"),
        std::fs::read_to_string(repo_root().join("wit/controller.wit")).expect("wit")
    );
    // The Rust SDK's options are refused for it, and nothing is written.
    let refused = cup(
        home,
        home,
        &[
            "controller",
            "new",
            "other",
            "--lang",
            lang,
            "--sdk-git",
            "https://git.example/cup.git",
        ],
    );
    assert!(
        refused
            .one_line_error()
            .contains("--sdk-git is for --lang rust only"),
        "{}",
        refused.stderr
    );
    assert!(!home.join("other").exists());
    dir
}

#[test]
fn a_new_python_controller_builds_and_cupd_serves_it() {
    let tmp = outside_the_repository();
    let home = tmp.path();
    let dir = new_component(
        home,
        "python",
        &[
            ".gitignore",
            "README.md",
            "build.sh",
            "config/controller.json",
            "defs/notes.json",
            "examples/hello.json",
            "requirements.txt",
            "src/app.py",
            "src/store.py",
            "tests/test_store.py",
            "wit/controller.wit",
        ],
    );
    let (_, log) = build_component(&dir);
    // build.sh ran the unit tests with plain CPython before building.
    assert!(log.contains("== unit tests (python3"), "{log}");
    assert!(log.contains("Ran 4 tests"), "{log}");
    assert!(log.contains("\nOK\n"), "{log}");
    serve_notes(home, &dir, &code_cache());
}

#[test]
fn a_new_js_controller_builds_and_cupd_serves_it() {
    let tmp = outside_the_repository();
    let home = tmp.path();
    let dir = new_component(
        home,
        "js",
        &[
            ".gitignore",
            "README.md",
            "build.sh",
            "config/controller.json",
            "defs/notes.json",
            "examples/hello.json",
            "package-lock.json",
            "package.json",
            "src/component.js",
            "src/store.js",
            "src/wasi-fs.js",
            "test/component.test.js",
            "test/node-fs.js",
            "test/store.test.js",
            "wit/controller.wit",
            "wit/world.wit",
        ],
    );
    let (out, log) = build_component(&dir);
    // build.sh ran the unit tests with plain node, then the built component's tests, none
    // of them skipped.
    assert!(log.contains("== unit tests (node"), "{log}");
    assert!(log.contains("== component tests"), "{log}");
    assert!(out.contains("# pass 4\n"), "{out}");
    assert!(out.contains("# pass 2\n"), "{out}");
    assert!(
        !out.contains("# skipped 1") && !out.contains("# skipped 2"),
        "{out}"
    );
    assert!(
        out.contains("# fail 0\n") && !out.contains("# fail 1"),
        "{out}"
    );
    serve_notes(home, &dir, &code_cache());
}

/// cupd's compiled-code cache shared by the tests: compiling a component is the slow part of
/// starting cupd.
fn code_cache() -> Vec<String> {
    vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
    ]
}

/// The scenario every language's `notes` passes: cupd over an empty data directory with the
/// generated config directory as it is, then `cup` from the project directory (the
/// sample's relative path), checking the one JSON file per resource after every change.
fn serve_notes(home: &Path, dir: &Path, cupd_args: &[String]) {
    let data = home.join("data");
    std::fs::create_dir(&data).expect("data dir");
    let store = home.join("store");
    let config_dir = dir.join("config");
    let mut config = CupdConfig::new(&config_dir, &data, &store);
    config.args = cupd_args.to_vec();
    let cupd = Cupd::start(&config);
    let address = cupd.base_url();
    let at = |args: &[&str]| -> Run {
        let mut all = vec!["-a", address.as_str()];
        all.extend_from_slice(args);
        cup(home, dir, &all)
    };

    let out = at(&["definitions"]).ok_as("cup definitions").to_owned();
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("notes "))
        .unwrap_or_else(|| panic!("{out}"))
        .split_whitespace()
        .collect();
    assert_eq!(row, ["notes", "notes.example.com/v1", "Note", "v1"]);
    assert_eq!(files(&data), Vec::<String>::new());

    // apply the sample: one file, the resource as sent.
    at(&["apply", "-f", "examples/hello.json"]).ok_as("cup apply");
    assert_eq!(files(&data), ["default/hello.json"]);
    let stored = read_json(&data.join("default/hello.json"));
    assert_eq!(stored["apiVersion"], "notes.example.com/v1");
    assert_eq!(stored["kind"], "Note");
    assert_eq!(stored["metadata"]["namespace"], "default");
    assert_eq!(stored["metadata"]["name"], "hello");
    assert_eq!(
        stored["spec"],
        serde_json::json!({"text": "Hello from notes", "tags": ["example"]})
    );

    // Another, in another namespace, with labels, from stdin.
    let second = r#"{"apiVersion":"notes.example.com/v1","kind":"Note","metadata":{"namespace":"team","name":"second","labels":{"owner":"ops"}},"spec":{"text":"Second"}}"#;
    cup_stdin(home, dir, &["-a", &address, "apply"], second).ok_as("cup apply (stdin)");
    assert_eq!(files(&data), ["default/hello.json", "team/second.json"]);
    assert_eq!(
        read_json(&data.join("team/second.json"))["metadata"]["labels"],
        serde_json::json!({"owner": "ops"})
    );

    // get: a table, one resource as JSON, a namespace as a JSON array.
    let table = at(&["get", "notes"]).ok_as("cup get notes").to_owned();
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["NAMESPACE", "NAME", "LABELS"],
            vec!["default", "hello", "<none>"]
        ],
        "{table}"
    );
    let one = json(at(&["-o", "json", "get", "note", "hello"]).ok_as("cup get note hello"));
    assert_eq!(
        one,
        serde_json::json!({
            "apiVersion": "notes.example.com/v1",
            "kind": "Note",
            "metadata": {"namespace": "default", "name": "hello", "labels": null, "annotations": null},
            "spec": {"text": "Hello from notes", "tags": ["example"]}
        })
    );
    let team = json(at(&["-n", "team", "-o", "json", "get", "notes"]).ok_as("cup get -n team"));
    let team = team.as_array().expect("an array");
    assert_eq!(team.len(), 1, "{team:?}");
    assert_eq!(team[0]["metadata"]["name"], "second");
    assert_eq!(team[0]["metadata"]["labels"]["owner"], "ops");

    // An update rewrites the one file.
    let changed = std::fs::read_to_string(dir.join("examples/hello.json"))
        .expect("sample")
        .replace("Hello from notes", "Changed");
    cup_stdin(home, dir, &["-a", &address, "apply"], &changed).ok_as("cup apply (update)");
    assert_eq!(
        read_json(&data.join("default/hello.json"))["spec"]["text"],
        "Changed"
    );

    // The schema is enforced before the controller runs: nothing is written.
    let bad = r#"{"apiVersion":"notes.example.com/v1","kind":"Note","metadata":{"name":"bad"},"spec":{"text":"x","colour":"red"}}"#;
    let refused = cup_stdin(home, dir, &["-a", &address, "apply"], bad);
    let line = refused.one_line_error();
    assert!(line.contains("colour"), "{line}");
    assert_eq!(files(&data), ["default/hello.json", "team/second.json"]);

    // delete: the file goes, the other namespace's stays; then the resource is not found.
    at(&["delete", "note", "hello"]).ok_as("cup delete");
    assert_eq!(files(&data), ["team/second.json"]);
    let missing = at(&["get", "note", "hello"]);
    let line = missing.one_line_error();
    assert!(line.contains("not found"), "{line}");
    let again = at(&["delete", "note", "hello"]);
    let line = again.one_line_error();
    assert!(line.contains("not found"), "{line}");
    assert_eq!(files(&data), ["team/second.json"]);
    drop(cupd);
}

#[test]
fn new_refuses_a_non_empty_directory_and_bad_names() {
    let tmp = outside_the_repository();
    let home = tmp.path();

    let taken = home.join("taken");
    std::fs::create_dir(&taken).expect("dir");
    std::fs::write(taken.join("mine.txt"), "keep me").expect("file");
    let run = cup(
        home,
        home,
        &["controller", "new", "notes", "--dir", "taken"],
    );
    let line = run.one_line_error();
    assert!(line.contains("already exists and is not empty"), "{line}");
    assert_eq!(files(&taken), ["mine.txt"]);
    assert_eq!(
        std::fs::read_to_string(taken.join("mine.txt")).expect("file"),
        "keep me"
    );

    // The default directory is the name: taken too.
    let run = cup(home, home, &["controller", "new", "taken"]);
    let line = run.one_line_error();
    assert!(line.contains("already exists and is not empty"), "{line}");

    for (name, reason) in [
        ("Notes", "must start with a lowercase ASCII letter"),
        ("my notes", "contains ' '"),
        ("../escape", "must start with a lowercase ASCII letter"),
        ("a.b", "contains '.'"),
        ("fn", "reserved"),
    ] {
        let run = cup(home, home, &["controller", "new", name]);
        let line = run.one_line_error();
        assert!(line.contains(reason), "{name:?}: {line}");
    }
    let run = cup(
        home,
        home,
        &["controller", "new", "notes", "--kind", "note"],
    );
    assert!(run.one_line_error().contains("--kind \"note\""));
    let run = cup(
        home,
        home,
        &["controller", "new", "notes", "--group", "Bad/Group"],
    );
    assert!(run.one_line_error().contains("--group"));
    let run = cup(
        home,
        home,
        &[
            "controller",
            "new",
            "notes",
            "--sdk-path",
            home.to_str().expect("UTF-8"),
        ],
    );
    assert!(
        run.one_line_error()
            .contains("not the cup-controller-sdk crate")
    );
    // Nothing was created by any refused attempt.
    assert_eq!(files(home), ["taken/mine.txt"]);

    // build.sh names a missing tool before building anything: here cargo and rustup are on
    // PATH, with the system's directories, but not cup or cup-embed.
    cup(home, home, &["controller", "new", "lacking"]).ok_as("cup controller new lacking");
    let tools = home.join("tools");
    std::fs::create_dir(&tools).expect("tools dir");
    for program in ["cargo", "rustup"] {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if let Some(found) = std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
        {
            std::os::unix::fs::symlink(found, tools.join(program)).expect("symlink");
        }
    }
    let path = std::env::join_paths([tools.as_path(), Path::new("/usr/bin"), Path::new("/bin")])
        .expect("joinable PATH");
    let lacking = home.join("lacking");
    let build = Run::of(
        Command::new("bash")
            .arg("build.sh")
            .current_dir(&lacking)
            .env("PATH", path)
            .output()
            .expect("running build.sh"),
    );
    assert_eq!(build.code, 1, "{}\n{}", build.stdout, build.stderr);
    assert_eq!(
        build.stderr,
        "build.sh: cup is not on PATH (from a cup checkout: scripts/install.sh)\n"
    );
    assert!(!lacking.join("target").exists());
}

/// A component project's build.sh names what is missing before it builds or installs
/// anything: here python3, node and npm are on PATH, with the system's directories, but not
/// cup or cup-embed; then cup is given by CUP, and cup-embed is named.
#[test]
fn component_build_scripts_name_a_missing_cup() {
    let tmp = outside_the_repository();
    let home = tmp.path();
    // The directories of the real interpreters (python3 may be a version manager's shim).
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (program, args) in [
        ("python3", &["-c", "import sys; print(sys.executable)"][..]),
        ("node", &["-p", "process.execPath"][..]),
    ] {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let exe = PathBuf::from(String::from_utf8(out.stdout).expect("UTF-8").trim());
        dirs.push(exe.parent().expect("a directory").to_path_buf());
    }
    dirs.extend([PathBuf::from("/usr/bin"), PathBuf::from("/bin")]);
    for dir in &dirs {
        assert!(
            !dir.join("cup").exists() && !dir.join("cup-embed").exists(),
            "{} holds cup",
            dir.display()
        );
    }
    let path = std::env::join_paths(&dirs).expect("joinable PATH");
    for lang in ["python", "js"] {
        let name = format!("lacking-{lang}");
        cup(home, home, &["controller", "new", &name, "--lang", lang]).ok_as("cup controller new");
        let dir = home.join(&name);
        let run = |cup: Option<&Path>| {
            let mut command = Command::new("bash");
            command
                .arg("build.sh")
                .current_dir(&dir)
                .env("PATH", &path)
                .env_remove("CUP")
                .env_remove("CUP_EMBED");
            if let Some(cup) = cup {
                command.env("CUP", cup);
            }
            Run::of(command.output().expect("running build.sh"))
        };
        let build = run(None);
        assert_eq!(build.code, 1, "{lang}: {}\n{}", build.stdout, build.stderr);
        assert_eq!(
            build.stderr,
            "build.sh: cup not found: set CUP or put it on PATH (from a cup checkout: scripts/install.sh)\n",
            "{lang}"
        );
        let build = run(Some(&bin("cup")));
        assert_eq!(build.code, 1, "{lang}: {}\n{}", build.stdout, build.stderr);
        assert_eq!(
            build.stderr,
            "build.sh: cup-embed not found: set CUP_EMBED or put it on PATH (from a cup checkout: scripts/install.sh)\n",
            "{lang}"
        );
        assert!(!dir.join("target").exists(), "{lang}");
        assert!(!dir.join("node_modules").exists(), "{lang}");
    }
}
