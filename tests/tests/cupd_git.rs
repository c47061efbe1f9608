//! The Git source through the real cupd and real Git: a bare repository on disk
//! (and one served by `git daemon` for the push-rejection case) as the remote, inspected
//! with the `git` CLI. The original's source test, the flipt example over Git, revisions,
//! 50 concurrent writes and the faults.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cup_e2e::cupd::{
    Cupd, CupdConfig, copy_tree, write_flipt_controller, write_template_controller,
};
use cup_e2e::git;
use cup_e2e::repo_root;
use cup_e2e::shared_code_cache;

const FOO: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"foo","labels":{"foo":"bar"},"annotations":{}},"spec":{"foo":"bar"}}"#;
const BAR: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"bar","labels":{"bar":"baz"},"annotations":{}},"spec":{"foo":"baz"}}"#;
const BAZ_PAYLOAD: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"name":"baz","namespace":"default","labels":{"foo":"bar"},"annotations":{}},"spec":{}}"#;
const BAZ_FILE: &str = "{\n  \"apiVersion\": \"test.cup.flipt.io/v1alpha1\",\n  \"kind\": \"Resource\",\n  \"metadata\": {\n    \"namespace\": \"default\",\n    \"name\": \"baz\",\n    \"labels\": {\n      \"foo\": \"bar\"\n    },\n    \"annotations\": {}\n  },\n  \"spec\": {}\n}\n";
const RESOURCES: &str = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources";
const FLAGS: &str = "/apis/flipt.io/v1alpha1/namespaces/default/flags";
const CHECKOUT: &str = r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{"namespace":"default","name":"checkout-v2","labels":null,"annotations":null},"spec":{"name":"Checkout v2","type":"BOOLEAN_FLAG_TYPE","description":"new checkout","enabled":true}}"#;

/// A temp dir holding `remote.git` (bare, default branch `branch`) seeded with `files`,
/// tagged `v1`; and the seed clone.
struct Remote {
    tmp: tempfile::TempDir,
}

impl Remote {
    fn new(files: &Path, branch: &str) -> Remote {
        let tmp = tempfile::tempdir().unwrap();
        git(
            tmp.path(),
            &["init", "-q", "--bare", "-b", branch, "remote.git"],
        );
        git(tmp.path(), &["clone", "-q", "remote.git", "seed"]);
        let seed = tmp.path().join("seed");
        copy_tree(files, &seed);
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-q", "-m", "feat: initial commit"]);
        git(&seed, &["tag", "v1"]);
        git(&seed, &["push", "-q", "origin", branch, "v1"]);
        Remote { tmp }
    }

    fn bare(&self) -> PathBuf {
        self.tmp.path().join("remote.git")
    }

    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// The one bare cache under `--git-cache`.
    fn cache_repo(&self) -> PathBuf {
        std::fs::read_dir(self.cache())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "git"))
            .expect("a cache repository")
    }

    fn git(&self, args: &[&str]) -> String {
        git(&self.bare(), args)
    }

    fn proposal_branches(&self) -> Vec<String> {
        self.git(&[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/cup/proposal/",
        ])
        .lines()
        .map(str::to_owned)
        .collect()
    }
}

struct Fixture {
    config: tempfile::TempDir,
    unused_source: tempfile::TempDir,
    store: tempfile::TempDir,
}

fn template_fixture() -> (Fixture, tempfile::TempDir) {
    let config = tempfile::tempdir().unwrap();
    write_template_controller(
        config.path(),
        r#"{"type":"object","properties":{"spec":{"type":"object"}}}"#,
    );
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("default")).unwrap();
    for (name, json) in [("foo", FOO), ("bar", BAR)] {
        std::fs::write(base.path().join(resource_path(name)), json).unwrap();
    }
    (
        Fixture {
            config,
            unused_source: tempfile::tempdir().unwrap(),
            store: tempfile::tempdir().unwrap(),
        },
        base,
    )
}

fn resource_path(name: &str) -> String {
    format!("default/test.cup.flipt.io-v1alpha1-Resource-{name}.json")
}

fn git_args(remote_url: &str, cache: &Path) -> Vec<String> {
    vec![
        "-api-source".into(),
        "git".into(),
        "-api-git-repo".into(),
        remote_url.into(),
        "--git-cache".into(),
        cache.display().to_string(),
        "--git-fetch-interval".into(),
        "1s".into(),
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
    ]
}

fn config<'a>(f: &'a Fixture, url: &str, cache: &Path) -> CupdConfig<'a> {
    let mut cfg = CupdConfig::new(f.config.path(), f.unused_source.path(), f.store.path());
    cfg.args = git_args(url, cache);
    cfg
}

fn start(f: &Fixture, remote: &Remote) -> Cupd {
    Cupd::start(&config(f, remote.bare().to_str().unwrap(), &remote.cache()))
}

/// The 202 body of a git write: `(id, branch, commit)`.
fn proposal(response: &cup_e2e::cupd::Response) -> (String, String, String) {
    assert_eq!(response.status, 202, "{}", response.text());
    let body = response.json();
    assert!(
        response.text().starts_with("{\"id\":"),
        "Go field order: {}",
        response.text()
    );
    assert_eq!(body["empty"], false);
    assert_eq!(body["proposal"]["source"], "git");
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 26);
    let branch = body["proposal"]["branch"].as_str().unwrap().to_owned();
    assert_eq!(branch, format!("cup/proposal/{id}"));
    let commit = body["proposal"]["commit"].as_str().unwrap().to_owned();
    (id, branch, commit)
}

fn no_local_branches(remote: &Remote) {
    let refs = git(
        &remote.cache_repo(),
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads",
            "refs/cup",
        ],
    );
    assert_eq!(refs, "", "the cache keeps no local branches or push refs");
    let work: Vec<_> = std::fs::read_dir(remote.cache_repo().join("cup-work"))
        .unwrap()
        .collect();
    assert!(work.is_empty(), "no leftover checkouts: {work:?}");
}

#[test]
fn the_original_source_scenario_on_a_master_repository() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "master");
    let cupd = start(&f, &remote);

    // View equals the seed.
    assert_eq!(
        cupd.get(&format!("{RESOURCES}/foo")).text(),
        format!("{FOO}\n")
    );
    assert_eq!(cupd.get(RESOURCES).text(), format!("{BAR}\n{FOO}\n"));
    let status = cupd.get("/status").json();
    assert_eq!(status["source"]["type"], "git");
    assert_eq!(status["source"]["default_branch"], "master");

    // Update writes the new file on a proposal branch; the base is untouched.
    let (id, branch, commit) = proposal(&cupd.put(&format!("{RESOURCES}/baz"), BAZ_PAYLOAD));
    assert_eq!(remote.git(&["rev-parse", &branch]), commit);
    assert_eq!(
        remote.git(&["show", &format!("{branch}:{}", resource_path("baz"))]) + "\n",
        BAZ_FILE
    );
    assert_eq!(
        remote.git(&["diff", "--name-status", &format!("master..{branch}")]),
        format!("A\t{}", resource_path("baz"))
    );
    assert_eq!(
        remote.git(&["log", "-1", "--format=%an <%ae>|%s", &branch]),
        "cup <cup@localhost>|feat: update test.cup.flipt.io/v1alpha1/Resource default/baz"
    );
    assert_eq!(cupd.get(&format!("{RESOURCES}/baz")).status, 404);
    let at_branch = cupd.get(&format!("{RESOURCES}/baz?revision={branch}"));
    assert_eq!(at_branch.status, 200, "{}", at_branch.text());
    no_local_branches(&remote);

    // Proposals: listed, shown, merged.
    let list = cupd.get("/proposals").json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert_eq!(list["metadata"], serde_json::json!({}), "no more pages");
    let detail = cupd.get(&format!("/proposals/{id}")).json();
    assert_eq!(detail["files"][0]["path"], resource_path("baz"));
    assert_eq!(detail["files"][0]["status"], "added");
    assert_eq!(detail["merged"], false);
    let merged = cupd.request("POST", &format!("/proposals/{id}/merge"), &[], b"");
    assert_eq!(merged.status, 200, "{}", merged.text());
    assert_eq!(merged.json()["fast_forward"], true);
    assert_eq!(remote.git(&["rev-parse", "master"]), commit);
    assert_eq!(
        cupd.get("/proposals").json(),
        serde_json::json!({"metadata": {}, "items": []})
    );
    // Merged, its branch is deleted before the answer (retention 0): the id is unknown now.
    assert_eq!(remote.git(&["branch", "--list", &branch]), "");
    assert_eq!(
        cupd.request("POST", &format!("/proposals/{id}/merge"), &[], b"")
            .status,
        404
    );

    // After a fetch the default branch shows it.
    std::thread::sleep(Duration::from_millis(1500));
    let baz = cupd.get(&format!("{RESOURCES}/baz"));
    assert_eq!(baz.status, 200, "{}", baz.text());

    // The same put again changes nothing: 204, no new branch.
    let again = cupd.put(&format!("{RESOURCES}/baz"), BAZ_PAYLOAD);
    assert_eq!(again.status, 204, "{}", again.text());
    assert!(again.body.is_empty());
    assert!(
        remote.proposal_branches().is_empty(),
        "merged, deleted, none new"
    );

    // Delete: a proposal removing foo's file, with the original's delete message.
    let (_, del_branch, _) = proposal(&cupd.delete(&format!("{RESOURCES}/foo")));
    assert_eq!(
        remote.git(&["diff", "--name-status", &format!("master..{del_branch}")]),
        format!("D\t{}", resource_path("foo"))
    );
    assert_eq!(
        remote.git(&["log", "-1", "--format=%s", &del_branch]),
        "feat: delete test.cup.flipt.io/v1alpha1/resources default/foo"
    );
    no_local_branches(&remote);
}

/// A page's form POST needs no CORS preflight, and merge reads no body: without the Origin
/// check any web page could merge a proposal on a developer's cupd.
#[test]
fn a_cross_origin_form_post_cannot_merge_a_proposal() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "master");
    let cupd = start(&f, &remote);
    let (id, _, commit) = proposal(&cupd.put(&format!("{RESOURCES}/baz"), BAZ_PAYLOAD));
    let master = remote.git(&["rev-parse", "master"]);
    let forged = cupd.request(
        "POST",
        &format!("/proposals/{id}/merge"),
        &[
            ("Origin", "https://page.example"),
            ("Content-Type", "text/plain"),
        ],
        b"x",
    );
    assert_eq!(forged.status, 403, "{}", forged.text());
    assert_eq!(remote.git(&["rev-parse", "master"]), master, "not merged");
    assert_eq!(cupd.get("/proposals").json()["items"][0]["id"], id.as_str());
    let merged = cupd.request("POST", &format!("/proposals/{id}/merge"), &[], b"");
    assert_eq!(merged.status, 200, "{}", merged.text());
    assert_eq!(remote.git(&["rev-parse", "master"]), commit);
}

#[test]
fn revisions_branch_tag_commit_and_missing() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "main");
    let first = remote.git(&["rev-parse", "main"]);
    // A later commit on main removes bar; a side branch adds qux.
    let seed = remote.tmp.path().join("seed");
    git(&seed, &["rm", "-q", &resource_path("bar")]);
    git(&seed, &["commit", "-q", "-m", "drop bar"]);
    git(&seed, &["push", "-q", "origin", "main"]);
    git(&seed, &["checkout", "-q", "-b", "side", "v1"]);
    std::fs::write(
        seed.join(resource_path("qux")),
        FOO.replace("\"foo\",\"labels", "\"qux\",\"labels"),
    )
    .unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "qux"]);
    git(&seed, &["push", "-q", "origin", "side"]);
    let cupd = start(&f, &remote);

    let names = |query: &str| -> Vec<String> {
        let r = cupd.get(&format!("{RESOURCES}{query}"));
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        r.text()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(names(""), ["foo"]);
    assert_eq!(names("?revision=main"), ["foo"]);
    assert_eq!(names("?revision=v1"), ["bar", "foo"]);
    assert_eq!(names(&format!("?revision={first}")), ["bar", "foo"]);
    assert_eq!(
        names(&format!("?revision={}", &first[..10])),
        ["bar", "foo"]
    );
    assert_eq!(names("?revision=side"), ["bar", "foo", "qux"]);

    let missing = cupd.get(&format!("{RESOURCES}?revision=nope"));
    assert_eq!(missing.status, 404);
    assert!(
        missing.text().contains("revision \"nope\" not found"),
        "{}",
        missing.text()
    );
    let bad = cupd.get(&format!("{RESOURCES}/foo?revision=main..side"));
    assert_eq!(bad.status, 400, "{}", bad.text());

    // A write based on another branch proposes against it.
    let (_, branch, _) =
        proposal(&cupd.put(&format!("{RESOURCES}/baz?revision=side"), BAZ_PAYLOAD));
    assert_eq!(
        remote.git(&["diff", "--name-only", &format!("side..{branch}")]),
        resource_path("baz")
    );
}

#[test]
fn flipt_over_git_gives_exact_diffs() {
    let config = tempfile::tempdir().unwrap();
    write_flipt_controller(config.path(), "ctl/flipt.wasm");
    let f = Fixture {
        config,
        unused_source: tempfile::tempdir().unwrap(),
        store: tempfile::tempdir().unwrap(),
    };
    let remote = Remote::new(&repo_root().join("examples/flipt/repo"), "main");
    let cupd = start(&f, &remote);

    let list = cupd.get(FLAGS);
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(list.text().contains("dark-mode"));

    let (_, branch, _) = proposal(&cupd.put(&format!("{FLAGS}/checkout-v2"), CHECKOUT));
    assert_eq!(
        remote.git(&["diff", "--name-status", &format!("main..{branch}")]),
        "M\tfeatures.yml"
    );
    let added = remote.git(&["show", &format!("{branch}:features.yml")]);
    for key in ["checkout-v2", "new-login", "dark-mode", "beta-users"] {
        assert!(added.contains(key), "{key} in\n{added}");
    }
    // The controller rewrites the file (its YAML, not the seed's comments): one file changed.
    let base_yaml = remote.git(&["show", "main:features.yml"]);
    assert_ne!(added, base_yaml);

    let (_, del, _) = proposal(&cupd.delete(&format!("{FLAGS}/dark-mode")));
    assert_eq!(
        remote.git(&["diff", "--name-status", &format!("main..{del}")]),
        "M\tfeatures.yml"
    );
    let shown = remote.git(&["show", &format!("{del}:features.yml")]);
    assert!(
        !shown.contains("dark-mode") && shown.contains("new-login"),
        "{shown}"
    );

    // Not found on the base: 404, nothing proposed.
    assert_eq!(cupd.delete(&format!("{FLAGS}/checkout-v2")).status, 404);
    assert_eq!(remote.proposal_branches().len(), 2);
    no_local_branches(&remote);
}

#[test]
fn fifty_concurrent_puts_give_fifty_proposals() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "main");
    let cupd = start(&f, &remote);
    let cupd = &cupd;
    let results: Vec<(String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                s.spawn(move || {
                    let name = format!("r{i:02}");
                    let body = BAZ_PAYLOAD.replace("\"baz\"", &format!("\"{name}\""));
                    let (_, branch, _) = proposal(&cupd.put(&format!("{RESOURCES}/{name}"), &body));
                    (name, branch)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut branches = remote.proposal_branches();
    branches.sort();
    let mut expected: Vec<String> = results.iter().map(|(_, b)| b.clone()).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(expected.len(), 50);
    assert_eq!(branches, expected);
    for (name, branch) in &results {
        assert_eq!(
            remote.git(&["diff", "--name-status", &format!("main..{branch}")]),
            format!("A\t{}", resource_path(name)),
            "{branch} has exactly its own change"
        );
    }
    let listed = cupd.get("/proposals").json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 50);
    no_local_branches(&remote);
}

#[test]
fn unreachable_remote_fails_at_startup() {
    let (f, _) = template_fixture();
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.git");
    let err = Cupd::try_start(&config(
        &f,
        missing.to_str().unwrap(),
        &tmp.path().join("c"),
    ))
    .err()
    .expect("cupd must not start");
    assert!(err.contains("fetching from"), "{err}");
}

/// A remote that accepts connections and never answers: the fetch at startup fails once
/// `--git-timeout` has passed, instead of holding cupd (and, once serving, every write,
/// merge and proposal call) forever.
#[test]
fn a_stalled_remote_fails_after_the_git_timeout() {
    let (f, _) = template_fixture();
    let tmp = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stalled = std::thread::spawn({
        let done = done.clone();
        move || {
            // Hold every connection open without a byte of answer.
            let mut held = Vec::new();
            listener.set_nonblocking(true).unwrap();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            held.len()
        }
    });
    let url = format!("http://127.0.0.1:{port}/remote.git");
    let mut args = git_args(&url, &tmp.path().join("c"));
    args.extend(["--git-timeout".to_owned(), "2s".to_owned()]);
    let started = Instant::now();
    let mut child = Command::new(cup_e2e::bin("cupd"))
        .args(["serve", "-api-address", "127.0.0.1:0", "-api-resources"])
        .arg(f.config.path())
        .arg("--store")
        .arg(f.store.path())
        .args(&args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cupd runs");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    eprintln!("stalled remote: cupd ended after {took:?}: {status:?}");
    let status =
        status.unwrap_or_else(|| panic!("cupd still waited on the remote after 30 s:\n{stderr}"));
    assert!(!status.success());
    assert!(stderr.contains("fetching from"), "{stderr}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(stalled.join().unwrap() >= 1, "the remote was contacted");
}

#[test]
fn missing_default_branch_is_a_clear_404() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "master");
    // HEAD names a branch that does not exist.
    remote.git(&["symbolic-ref", "HEAD", "refs/heads/main"]);
    let cupd = start(&f, &remote);
    let r = cupd.get(&format!("{RESOURCES}/foo"));
    assert!(r.status == 404, "{} {}", r.status, r.text());
    assert!(r.text().contains("default branch"), "{}", r.text());
    assert_eq!(
        cupd.get(&format!("{RESOURCES}/foo?revision=master")).status,
        200
    );
    assert_eq!(cupd.get("/healthz").status, 200, "the server stays up");
}

/// `git daemon` serving a directory on 127.0.0.1 with push enabled; killed on drop.
struct Daemon(Child, u16);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(base: &Path) -> Daemon {
    // `git daemon` would run `git-daemon` as its child, which killing `git` leaves behind:
    // start the daemon itself so drop stops it.
    let exec_path = git(Path::new("."), &["--exec-path"]);
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("daemon.log");
    // The port may be taken between choosing and binding it: then start again on another.
    for _ in 0..5 {
        let port = cup_e2e::cupd::free_port();
        let mut child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--verbose",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("git daemon");
        let deadline = Instant::now() + Duration::from_secs(10);
        // It logs this once its sockets are bound: a connection then reaches it, not
        // another test's server.
        while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Ready to rumble")) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_none() {
            assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
            return Daemon(child, port);
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("Address already in use"),
            "git daemon exited: {text}"
        );
    }
    panic!("git daemon found no free port");
}

/// Installs `script` as the `pre-receive` hook of the bare repository `bare`.
fn pre_receive_hook(bare: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(&hook, script).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_rejected_push_is_a_500_naming_the_rejection_and_leaves_nothing() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "main");
    pre_receive_hook(
        &remote.bare(),
        "#!/bin/sh\necho 'proposals are frozen' >&2\nexit 1\n",
    );
    let d = daemon(remote.tmp.path());
    let url = format!("git://127.0.0.1:{}/remote.git", d.1);
    let cupd = Cupd::start(&config(&f, &url, &remote.cache()));
    assert_eq!(cupd.get(&format!("{RESOURCES}/foo")).status, 200);
    let put = cupd.put(&format!("{RESOURCES}/baz"), BAZ_PAYLOAD);
    assert_eq!(put.status, 500, "{}", put.text());
    assert!(put.text().contains("pushing changes"), "{}", put.text());
    assert!(
        put.text().contains("reject") || put.text().contains("declined"),
        "{}",
        put.text()
    );
    assert!(remote.proposal_branches().is_empty());
    no_local_branches(&remote);
    assert_eq!(cupd.get("/healthz").status, 200, "the server stays up");
}

/// An id that cannot name a proposal is a 404 before any network call: with the remote gone,
/// a fetch would fail (and with the remote there, every such request cost it a fetch).
#[test]
fn an_id_that_is_not_a_proposal_id_costs_the_remote_nothing() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "main");
    let url = remote.bare().to_str().unwrap().to_owned();
    let cupd = Cupd::start(&config(&f, &url, &remote.cache()));
    let moved = remote.tmp.path().join("moved-away.git");
    std::fs::rename(remote.bare(), &moved).unwrap();
    for (method, path) in [
        ("GET", "/proposals/not-a-ulid"),
        ("POST", "/proposals/not-a-ulid/merge"),
        ("GET", "/proposals/01M922VHGAMHW887FP0AWPYRK1x"),
    ] {
        let r = cupd.request(method, path, &[], b"");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert!(r.text().contains("not found"), "{}", r.text());
    }
    // A well-formed id still asks the remote (which is gone now).
    let r = cupd.get("/proposals/01M922VHGAMHW887FP0AWPYRK1");
    assert_ne!(r.status, 200, "{}", r.text());
    std::fs::rename(&moved, remote.bare()).unwrap();
}

/// A write whose client gives up while it waits for the remote is never pushed (it used to be
/// pushed minutes later: a "ghost write" nobody was told about).
#[test]
fn a_write_abandoned_while_it_waits_is_not_pushed() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "main");
    // Every push takes 2 s, so a second write waits behind the first.
    pre_receive_hook(&remote.bare(), "#!/bin/sh\ncat >/dev/null\nsleep 2\n");
    let d = daemon(remote.tmp.path());
    let url = format!("git://127.0.0.1:{}/remote.git", d.1);
    let cupd = std::sync::Arc::new(Cupd::start(&config(&f, &url, &remote.cache())));
    let first = {
        let cupd = cupd.clone();
        std::thread::spawn(move || cupd.put(&format!("{RESOURCES}/baz"), BAZ_PAYLOAD))
    };
    std::thread::sleep(Duration::from_millis(500));
    // The second client sends its PUT and hangs up before any answer.
    let body = BAZ_PAYLOAD.replace("\"baz\"", "\"qux\"");
    let mut conn = TcpStream::connect(("127.0.0.1", cupd.port())).unwrap();
    std::io::Write::write_all(
        &mut conn,
        format!(
            "PUT {RESOURCES}/qux HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(conn);
    let first = first.join().unwrap();
    assert_eq!(first.status, 202, "{}", first.text());
    // Long enough for the abandoned write's own push, had it been made.
    std::thread::sleep(Duration::from_secs(4));
    let branches = remote.proposal_branches();
    assert_eq!(
        branches.len(),
        1,
        "only the answered write is pushed: {branches:?}"
    );
    assert_eq!(cupd.get("/healthz").status, 200);
}

/// A hook that refuses updates of the base branch: merging a proposal is then a refusal
/// that names the hook's reason, not "the base changed, retry" (which would send a client
/// round a loop that can never succeed).
#[test]
fn a_merge_the_remote_refuses_is_worded_as_a_refusal() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "main");
    pre_receive_hook(
        &remote.bare(),
        "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = refs/heads/main ]; then\n    echo 'main is protected: merge through review' >&2; exit 1\n  fi\ndone\n",
    );
    let d = daemon(remote.tmp.path());
    let url = format!("git://127.0.0.1:{}/remote.git", d.1);
    let cupd = Cupd::start(&config(&f, &url, &remote.cache()));
    let put = cupd.put(&format!("{RESOURCES}/baz"), BAZ_PAYLOAD);
    assert_eq!(put.status, 202, "{}", put.text());
    let id = put.json()["id"].as_str().unwrap().to_owned();
    let before = git(&remote.bare(), &["rev-parse", "refs/heads/main"]);
    let merged = cupd.request("POST", &format!("/proposals/{id}/merge"), &[], b"");
    let text = merged.text();
    assert_eq!(merged.status, 409, "{text}");
    assert!(text.contains("the remote refused to update main"), "{text}");
    assert!(
        !text.contains("retry"),
        "a refusal is not worth retrying: {text}"
    );
    assert_eq!(
        git(&remote.bare(), &["rev-parse", "refs/heads/main"]),
        before
    );
}

#[test]
fn git_flags_are_checked_at_startup() {
    let (f, _) = template_fixture();
    let run = |extra: &[&str]| -> String {
        let out = Command::new(cup_e2e::bin("cupd"))
            .args(["serve", "-api-address", "127.0.0.1:0", "-api-resources"])
            .arg(f.config.path())
            .arg("--store")
            .arg(f.store.path())
            .args(extra)
            .env_remove("RUST_LOG")
            .output()
            .expect("cupd runs");
        assert!(!out.status.success(), "{extra:?} must be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["-api-source", "git"]).contains("needs -api-git-repo"));
    // A forge needs a remote that names a repository on it (a path names none).
    assert!(
        run(&[
            "-api-source",
            "git",
            "-api-git-repo",
            "/x",
            "-api-git-scm",
            "gitea"
        ])
        .contains("names no repository on a forge")
    );
    assert!(
        run(&[
            "-api-source",
            "git",
            "-api-git-repo",
            "/x",
            "--git-author",
            "nobody"
        ])
        .contains("invalid --git-author")
    );
}

/// Runs the real `cup` binary against `cupd` with a config file that does not exist (so
/// the built-in default context is used and nothing outside the temp dir is touched).
fn cup_cli(cupd: &Cupd, home: &Path, args: &[&str], stdin: &str) -> serde_json::Value {
    use std::io::Write;
    let mut child = Command::new(cup_e2e::bin("cup"))
        .arg("-c")
        .arg(home.join("config.json"))
        .args(["-a", &cupd.base_url(), "-n", "default", "-o", "json"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cup runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writing stdin");
    let out = child.wait_with_output().expect("cup finishes");
    assert!(
        out.status.success(),
        "cup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cup -o json prints one JSON document")
}

/// The original's integration scenario (the original cup's "git" integration pipeline) through the real
/// `cup` CLI against cupd over a Git source: definitions, list, get, apply on stdin and
/// delete, where each write answers a proposal (non-zero id, source git) on its own branch.
#[test]
fn the_original_cli_scenario_over_git() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "main");
    let cupd = start(&f, &remote);
    let home = tempfile::tempdir().unwrap();

    let defs = cup_cli(&cupd, home.path(), &["definitions"], "");
    assert_eq!(defs.as_array().map(Vec::len), Some(1), "{defs}");
    assert_eq!(defs[0]["metadata"]["name"], "resources.test.cup.flipt.io");

    let list = cup_cli(&cupd, home.path(), &["get", "resources"], "");
    let bar: serde_json::Value = serde_json::from_str(BAR).unwrap();
    let foo: serde_json::Value = serde_json::from_str(FOO).unwrap();
    assert_eq!(list, serde_json::Value::Array(vec![bar, foo.clone()]));
    assert_eq!(
        cup_cli(&cupd, home.path(), &["get", "resources", "foo"], ""),
        foo
    );

    let applied = cup_cli(&cupd, home.path(), &["apply"], BAZ_PAYLOAD);
    let id = applied["id"].as_str().expect("an id");
    assert_ne!(id, "00000000000000000000000000");
    assert_eq!(applied["proposal"]["source"], "git");
    let branch = format!("cup/proposal/{id}");
    assert_eq!(
        remote.git(&["show", &format!("{branch}:{}", resource_path("baz"))]),
        BAZ_FILE.trim_end()
    );

    let deleted = cup_cli(&cupd, home.path(), &["delete", "resources", "foo"], "");
    let id = deleted["id"].as_str().expect("an id");
    assert_eq!(deleted["proposal"]["source"], "git");
    let changed = remote.git(&[
        "diff",
        "--name-status",
        "main",
        &format!("cup/proposal/{id}"),
    ]);
    assert_eq!(changed, format!("D\t{}", resource_path("foo")));
    assert_eq!(remote.proposal_branches().len(), 2);
    assert!(
        !home.path().join("config.json").exists(),
        "cup wrote no config file"
    );
}

/// A commit force-pushed away on the remote (say one that leaked a secret) stays in cupd's
/// cache, but once a fetch sees it gone it is neither served nor used as a write base, so
/// no proposal pushes it back.
#[test]
fn a_commit_force_pushed_away_is_not_served_nor_proposed_on() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "main");
    let kept = remote.git(&["rev-parse", "main"]);
    let seed = remote.tmp.path().join("seed");
    std::fs::write(
        seed.join(resource_path("leak")),
        FOO.replace("\"foo\",\"labels", "\"leak\",\"labels"),
    )
    .unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "oops"]);
    git(&seed, &["push", "-q", "origin", "main"]);
    let dropped = remote.git(&["rev-parse", "main"]);
    let cupd = start(&f, &remote);
    let by_id = format!("{RESOURCES}?revision={dropped}");
    assert_eq!(
        cupd.get(&by_id).status,
        200,
        "reachable while main holds it"
    );

    git(&seed, &["reset", "-q", "--hard", &kept]);
    git(&seed, &["push", "-q", "-f", "origin", "main"]);
    // cupd fetches every second; the cache keeps the object but no ref reaches it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let gone = loop {
        let r = cupd.get(&by_id);
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert!(
        gone.text()
            .contains(&format!("revision \"{dropped}\" not found")),
        "{}",
        gone.text()
    );
    // The fetch that saw it dropped removes its snapshot as well.
    let snapshot = remote.cache_repo().join("cup-snapshots").join(&dropped);
    let deadline = Instant::now() + Duration::from_secs(10);
    while snapshot.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!snapshot.exists(), "snapshot of the dropped commit removed");
    let short = cupd.get(&format!("{RESOURCES}?revision={}", &dropped[..8]));
    assert_eq!(short.status, 404, "{}", short.text());
    assert_eq!(
        git(&remote.cache_repo(), &["cat-file", "-t", &dropped]),
        "commit",
        "the cache still holds it: only reachability refuses it"
    );

    let put = cupd.put(&format!("{RESOURCES}/baz?revision={dropped}"), BAZ_PAYLOAD);
    assert_eq!(put.status, 404, "{}", put.text());
    assert!(
        !put.text().contains(&kept),
        "names nothing but the given id: {}",
        put.text()
    );
    assert!(remote.proposal_branches().is_empty());
    assert_eq!(
        remote.git(&["branch", "--contains", &dropped]),
        "",
        "no branch of the remote holds the dropped commit"
    );
    // A reachable commit by id still takes writes.
    let (_, branch, _) = proposal(&cupd.put(
        &format!("{RESOURCES}/baz?revision={}", &kept[..7]),
        BAZ_PAYLOAD,
    ));
    assert_eq!(remote.git(&["rev-parse", &format!("{branch}^")]), kept);
    no_local_branches(&remote);
}

/// Access control on the Git source: the proposals endpoints under the policy, the caller
/// recorded in each commit (trailer, then author), and the audit line of every write with
/// the branch and commit it pushed, also for 30 concurrent writers.
#[test]
fn proposals_under_access_control_and_commits_that_name_the_caller() {
    let (f, base) = template_fixture();
    let remote = Remote::new(base.path(), "main");
    let files = tempfile::tempdir().unwrap();
    let tokens = files.path().join("tokens.csv");
    let policy = files.path().join("policy.json");
    let audit = files.path().join("audit.log");
    std::fs::write(
        &tokens,
        "tok-writer,writer,1,writers\ntok-reviewer,rita@example.com,2,reviewers\n",
    )
    .unwrap();
    std::fs::write(
        &policy,
        r#"{"rules": [
          {"groups": ["writers"], "verbs": ["get", "list", "put", "delete"], "resources": ["test.cup.flipt.io/resources"], "namespaces": ["default"]},
          {"groups": ["writers"], "verbs": ["list", "get"], "resources": ["proposals"]},
          {"groups": ["reviewers"], "verbs": ["list", "get", "merge"], "resources": ["proposals"]},
          {"groups": ["reviewers"], "verbs": ["put"], "resources": ["test.cup.flipt.io/resources"], "namespaces": ["default"]}
        ]}"#,
    )
    .unwrap();
    let start_with = |record: &str| {
        let mut config = config(&f, remote.bare().to_str().unwrap(), &remote.cache());
        for arg in [
            "--token-auth-file",
            tokens.to_str().unwrap(),
            "--authorization-policy-file",
            policy.to_str().unwrap(),
            "--audit-log-path",
            audit.to_str().unwrap(),
            "--git-record-user",
            record,
        ] {
            config.args.push(arg.to_owned());
        }
        Cupd::start(&config)
    };
    let as_user = |cupd: &Cupd, token: &str, method: &str, path: &str, body: &str| {
        let bearer = format!("Bearer {token}");
        cupd.request(
            method,
            path,
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    };
    let audit_lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&audit)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    let cupd = start_with("trailer");
    let (id, branch, commit) = proposal(&as_user(
        &cupd,
        "tok-writer",
        "PUT",
        &format!("{RESOURCES}/baz"),
        BAZ_PAYLOAD,
    ));
    assert_eq!(
        remote.git(&["log", "-1", "--format=%an <%ae>|%cn|%B", &branch]),
        "cup <cup@localhost>|cup|feat: update test.cup.flipt.io/v1alpha1/Resource default/baz\n\nRequested-by: writer"
    );
    let line = audit_lines().pop().unwrap();
    assert_eq!(line["user"], "writer");
    assert_eq!(line["status"], 202);
    assert_eq!(line["branch"], branch.as_str());
    assert_eq!(line["commit"], commit.as_str());

    // Writers may look at proposals but not merge them; reviewers may.
    assert_eq!(
        as_user(&cupd, "tok-writer", "GET", "/proposals", "").status,
        200
    );
    assert_eq!(
        as_user(&cupd, "tok-writer", "GET", &format!("/proposals/{id}"), "").status,
        200
    );
    let refused = as_user(
        &cupd,
        "tok-writer",
        "POST",
        &format!("/proposals/{id}/merge"),
        "",
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("cannot merge proposals"),
        "{}",
        refused.text()
    );
    assert_eq!(remote.git(&["rev-parse", "main"]).len(), 40);
    assert_ne!(remote.git(&["rev-parse", "main"]), commit, "nothing merged");
    assert_eq!(cupd.get("/proposals").status, 401);
    let merged = as_user(
        &cupd,
        "tok-reviewer",
        "POST",
        &format!("/proposals/{id}/merge"),
        "",
    );
    assert_eq!(merged.status, 200, "{}", merged.text());
    assert_eq!(remote.git(&["rev-parse", "main"]), commit);
    let lines = audit_lines();
    let merges: Vec<_> = lines.iter().filter(|l| l["verb"] == "merge").collect();
    assert_eq!(merges.len(), 2);
    assert_eq!(
        (merges[0]["user"].as_str(), merges[0]["status"].as_u64()),
        (Some("writer"), Some(403))
    );
    assert_eq!(merges[1]["user"], "rita@example.com");
    assert_eq!(merges[1]["name"], id.as_str());
    assert_eq!(merges[1]["branch"], "main");
    assert_eq!(merges[1]["commit"], commit.as_str());

    // Thirty concurrent writers: thirty proposals, thirty audit lines with their branches.
    let before = audit_lines().len();
    let cupd_ref = &cupd;
    let branches: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..30)
            .map(|i| {
                s.spawn(move || {
                    let name = format!("c{i:02}");
                    let body = BAZ_PAYLOAD.replace("\"baz\"", &format!("\"{name}\""));
                    let bearer = "Bearer tok-writer";
                    let r = cupd_ref.request(
                        "PUT",
                        &format!("{RESOURCES}/{name}"),
                        &[("Authorization", bearer)],
                        body.as_bytes(),
                    );
                    proposal(&r).1
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let lines = audit_lines();
    assert_eq!(lines.len(), before + 30);
    let mut audited: Vec<String> = lines[before..]
        .iter()
        .map(|l| l["branch"].as_str().unwrap().to_owned())
        .collect();
    let mut pushed = branches.clone();
    audited.sort();
    pushed.sort();
    assert_eq!(audited, pushed);
    drop(cupd);

    // As the author: the caller authors, cupd commits.
    let cupd = start_with("author");
    let (_, branch, _) = proposal(&as_user(
        &cupd,
        "tok-reviewer",
        "PUT",
        &format!("{RESOURCES}/qux"),
        &BAZ_PAYLOAD.replace("\"baz\"", "\"qux\""),
    ));
    assert_eq!(
        remote.git(&["log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", &branch]),
        "rita@example.com <rita@example.com>|cup <cup@localhost>|feat: update test.cup.flipt.io/v1alpha1/Resource default/qux"
    );
}
