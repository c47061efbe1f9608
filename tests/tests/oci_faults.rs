//! Push and pull through a fault-injecting proxy in front of the real registry: transient
//! faults are retried (the proxy's request counts prove the retries) and the artifact
//! arrives intact; permanent faults fail with a clear message after a bounded number of
//! attempts and change nothing: no blob, no tag, no temp file in the store, and no
//! registry tag naming an incomplete manifest.

use crate::oci_common::*;
use cup_e2e::flipt_package;
use cup_e2e::registry::{Action, RegistryProxy, Rule, TestRegistry};

/// Attempts per request step (the default policy).
const ATTEMPTS: usize = 4;
/// A short per-request timeout so stalls end quickly in tests.
const TIMEOUT: &str = "1";

/// The wasm layer's digest (the layer is the package itself).
fn layer_digest() -> String {
    cup_sections::sha256_digest(flipt_package())
}

/// `/blobs/<layer digest>`: matches the layer's HEAD and GET only.
fn layer_path() -> String {
    format!("/blobs/{}", layer_digest())
}

/// Matches the upload PUT of the layer only (its query names the digest, URL-encoded);
/// the config uploads concurrently and is left alone.
fn layer_upload() -> String {
    format!("digest={}", layer_digest().replace(':', "%3A"))
}

/// `cup controller push` of the package to `reference`.
fn push(w: &Work, reference: &str) -> std::process::Output {
    w.cup(&[
        "controller",
        "push",
        &w.wasm().to_string_lossy(),
        reference,
        "--registry-timeout",
        TIMEOUT,
    ])
}

/// `cup controller pull` of `reference` into the work store.
fn pull(w: &Work, reference: &str) -> std::process::Output {
    w.cup(&[
        "controller",
        "pull",
        reference,
        "--registry-timeout",
        TIMEOUT,
    ])
}

/// The store holds the package under the tag, every blob verifies, no temp file is left.
/// Read from the store only (the proxy may be refusing everything by now).
fn assert_store_has_the_package(w: &Work, reference: &str) {
    let store = cup_oci::Store::open(w.store()).expect("store");
    let digest = store
        .resolve(reference)
        .expect("resolve")
        .unwrap_or_else(|| panic!("{reference} is not tagged in the store"));
    assert_eq!(store.wasm_for(&digest).expect("wasm"), flipt_package());
    assert_eq!(store.verify().expect("verify"), Vec::<String>::new());
    ok(w.cup(&["controller", "list", "--verify"]));
    assert_no_temp_files(w);
}

fn assert_no_temp_files(w: &Work) {
    let tmp = w.store().join(".tmp");
    let left = std::fs::read_dir(&tmp).map_or(0, |d| d.count());
    assert_eq!(left, 0, "temp files left in {}", tmp.display());
}

/// The registry has no manifest under `repo:tag`.
fn assert_no_registry_tag(registry: &TestRegistry, repo: &str, tag: &str) {
    // The Accept header matters: without it, distribution answers 404 for any OCI manifest.
    let got = registry.request(
        "GET",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Accept", OCI_MANIFEST)],
        &[],
    );
    assert_eq!(got.status, 404, "the tag exists: {}", got.text());
}

// ---- push ----

/// One transient push fault: the rule, and the requests that must have been seen.
struct PushCase {
    name: &'static str,
    rule: Rule,
    /// (method, path part, at least this many requests)
    expect: (&'static str, &'static str, usize),
}

fn transient_push_cases() -> Vec<PushCase> {
    let uploads = "/blobs/uploads/";
    let layer = Box::leak(layer_path().into_boxed_str());
    vec![
        PushCase {
            name: "dropped upload",
            rule: Rule::new("PUT", uploads, Action::Drop, 2),
            expect: ("PUT", uploads, 2 + 2),
        },
        PushCase {
            name: "stalled HEAD",
            rule: Rule::new("HEAD", layer, Action::Stall, 1),
            expect: ("HEAD", layer, 2),
        },
        PushCase {
            name: "503 on the upload session",
            rule: Rule::new("POST", uploads, Action::Status(503), 2),
            expect: ("POST", uploads, 2 + 2),
        },
        PushCase {
            name: "502 on the upload PUT",
            rule: Rule::new("PUT", uploads, Action::Status(502), 3),
            expect: ("PUT", uploads, 3 + 2),
        },
        PushCase {
            name: "429 on the manifest",
            rule: Rule::new("PUT", "/manifests/", Action::TooManyRequests, 1),
            expect: ("PUT", "/manifests/", 2),
        },
        PushCase {
            name: "stalled manifest PUT",
            rule: Rule::new("PUT", "/manifests/", Action::Stall, 1),
            expect: ("PUT", "/manifests/", 2),
        },
        PushCase {
            name: "redirected manifest PUT",
            rule: Rule::new("PUT", "/manifests/", Action::Redirect, 1),
            expect: ("PUT", "/manifests/", 1),
        },
        PushCase {
            name: "redirected HEAD",
            rule: Rule::new("HEAD", layer, Action::Redirect, 1),
            expect: ("HEAD", layer, 1),
        },
    ]
}

#[test]
fn transient_push_faults_are_retried_and_the_artifact_arrives_intact() {
    let registry = TestRegistry::start();
    for (n, case) in transient_push_cases().into_iter().enumerate() {
        let proxy = RegistryProxy::start(&registry, vec![case.rule.clone()]);
        let w = Work::new();
        let name = format!("cup/push{n}:v1");
        let out = push(&w, &proxy.reference(&name));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ok(out);
        let (method, path, at_least) = case.expect;
        let seen = proxy.count(method, path);
        assert!(
            seen >= at_least,
            "{}: {seen} {method} {path} requests, expected at least {at_least}: {:?}",
            case.name,
            proxy.seen()
        );
        assert_eq!(
            proxy.faults_injected(),
            case.rule.times,
            "{}: every planned fault was hit",
            case.name
        );
        if !matches!(case.rule.action, Action::Redirect) {
            says(&stderr, &["retrying in"]);
        }
        assert_registry_serves_the_package(&registry, &name);
    }
}

#[test]
fn an_upload_failing_forever_gives_up_and_tags_nothing() {
    let registry = TestRegistry::start();
    let proxy = RegistryProxy::start(
        &registry,
        vec![Rule::always("PUT", &layer_upload(), Action::Status(500))],
    );
    let w = Work::new();
    let err = fails(push(&w, &proxy.reference("cup/down:v1")));
    says(
        &err,
        &[
            "uploading wasm layer",
            "500",
            &format!("gave up after {ATTEMPTS} attempts"),
        ],
    );
    assert_eq!(proxy.count("PUT", &layer_upload()), ATTEMPTS);
    assert_eq!(proxy.count("PUT", "/manifests/"), 0, "no manifest was sent");
    assert_no_registry_tag(&registry, "cup/down", "v1");
    assert_empty_store(&w.store());
}

#[test]
fn an_upload_corrupted_on_the_way_is_refused_without_retrying() {
    let registry = TestRegistry::start();
    let proxy = RegistryProxy::start(
        &registry,
        vec![Rule::always("PUT", &layer_upload(), Action::CorruptUpload)],
    );
    let w = Work::new();
    let err = fails(push(&w, &proxy.reference("cup/bent:v1")));
    says(&err, &["uploading wasm layer", "DIGEST_INVALID"]);
    assert_eq!(
        proxy.count("PUT", &layer_upload()),
        1,
        "a digest the registry refuses is not retried"
    );
    assert_eq!(
        proxy.count("PATCH", "/blobs/uploads/"),
        0,
        "nor sent again in chunks"
    );
    assert_no_registry_tag(&registry, "cup/bent", "v1");
}

#[test]
fn a_registry_that_lies_about_the_manifest_digest_fails_the_push() {
    let registry = TestRegistry::start();
    let proxy = RegistryProxy::start(
        &registry,
        vec![Rule::always("PUT", "/manifests/", Action::LieDigest)],
    );
    let w = Work::new();
    let err = fails(push(&w, &proxy.reference("cup/liar:v1")));
    says(
        &err,
        &["manifest as stored by the registry", "digest mismatch"],
    );
    assert_eq!(proxy.count("PUT", "/manifests/"), 1, "not retried");
    // The manifest went last, after its blobs: the tag names a complete artifact.
    assert_registry_serves_the_package(&registry, "cup/liar:v1");
}

#[test]
fn a_registry_refusing_single_request_uploads_gets_chunks() {
    let registry = TestRegistry::start();
    let uploads = "/blobs/uploads/";
    let proxy = RegistryProxy::start(
        &registry,
        vec![Rule::always("PUT", uploads, Action::Status(405)).with_body()],
    );
    let w = Work::new();
    ok(push(&w, &proxy.reference("cup/chunks:v1")));
    assert_eq!(
        proxy.faults_injected(),
        2,
        "both blobs tried in one PUT first"
    );
    assert!(proxy.count("PATCH", uploads) >= 2, "{:?}", proxy.seen());
    assert_registry_serves_the_package(&registry, "cup/chunks:v1");
}

// ---- pull ----

/// Pushes the package straight to the registry as `name`.
fn seed(registry: &TestRegistry, name: &str) {
    let w = Work::new();
    w.push(&registry.reference(name));
}

fn transient_pull_rules() -> Vec<(&'static str, Rule, &'static str, usize)> {
    let layer = Box::leak(layer_path().into_boxed_str());
    let manifests = "/manifests/";
    vec![
        (
            "dropped GET",
            Rule::new("GET", layer, Action::Drop, 2),
            layer,
            3,
        ),
        (
            "stalled GET",
            Rule::new("GET", layer, Action::Stall, 1),
            layer,
            2,
        ),
        (
            "truncated body",
            Rule::new("GET", layer, Action::Truncate { keep: 5000 }, 2),
            layer,
            3,
        ),
        (
            "Content-Length too long",
            Rule::new("GET", layer, Action::LieLength { extra: 100 }, 1),
            layer,
            2,
        ),
        (
            "Content-Length too short",
            Rule::new("GET", layer, Action::LieLength { extra: -100 }, 1),
            layer,
            2,
        ),
        (
            "503 on the manifest",
            Rule::new("GET", manifests, Action::Status(503), 3),
            manifests,
            4,
        ),
        (
            "429 on the manifest",
            Rule::new("GET", manifests, Action::TooManyRequests, 1),
            manifests,
            2,
        ),
        (
            "stalled manifest",
            Rule::new("GET", manifests, Action::Stall, 1),
            manifests,
            2,
        ),
        (
            "redirected blob",
            Rule::new("GET", layer, Action::Redirect, 1),
            layer,
            1,
        ),
        (
            "redirected manifest",
            Rule::new("GET", manifests, Action::Redirect, 1),
            manifests,
            1,
        ),
        (
            "lying digest header on the blob (the body is right; the header is not trusted)",
            Rule::new("GET", layer, Action::LieDigest, 1),
            layer,
            1,
        ),
    ]
}

#[test]
fn transient_pull_faults_are_retried_and_the_store_gets_verified_blobs_only() {
    let registry = TestRegistry::start();
    seed(&registry, "cup/flipt:v1");
    for (name, rule, path, at_least) in transient_pull_rules() {
        let proxy = RegistryProxy::start(&registry, vec![rule.clone()]);
        let w = Work::new();
        let reference = proxy.reference("cup/flipt:v1");
        let out = pull(&w, &reference);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ok(out);
        let seen = proxy.count(rule.method, path);
        assert!(
            seen >= at_least,
            "{name}: {seen} requests to {path}, expected at least {at_least}: {:?}",
            proxy.seen()
        );
        assert_eq!(proxy.faults_injected(), rule.times, "{name}: faults hit");
        if !matches!(rule.action, Action::Redirect | Action::LieDigest) {
            says(&stderr, &["retrying in"]);
        }
        // Offline from here: the tag resolves in the store and every byte verifies.
        proxy.set_rules(vec![Rule::always("*", "/", Action::Status(500))]);
        assert_store_has_the_package(&w, &reference);
    }
}

/// Pulls through a proxy with `rule`, expects failure, and checks nothing changed.
fn pull_fails_cleanly(registry: &TestRegistry, rule: Rule) -> (String, RegistryProxy) {
    let proxy = RegistryProxy::start(registry, vec![rule]);
    let w = Work::new();
    let err = fails(pull(&w, &proxy.reference("cup/flipt:v1")));
    assert_empty_store(&w.store());
    assert_no_temp_files(&w);
    (err, proxy)
}

#[test]
fn permanent_pull_faults_fail_clearly_and_leave_the_store_unchanged() {
    let registry = TestRegistry::start();
    seed(&registry, "cup/flipt:v1");
    let layer = layer_path();

    let (err, proxy) =
        pull_fails_cleanly(&registry, Rule::always("GET", &layer, Action::Status(503)));
    says(
        &err,
        &["503", &format!("gave up after {ATTEMPTS} attempts")],
    );
    assert_eq!(proxy.count("GET", &layer), ATTEMPTS);

    let (err, proxy) =
        pull_fails_cleanly(&registry, Rule::always("GET", &layer, Action::WrongBytes));
    says(
        &err,
        &["digest mismatch", &format!("expected {}", layer_digest())],
    );
    assert_eq!(
        proxy.count("GET", &layer),
        1,
        "complete but wrong: not retried"
    );

    let (err, proxy) = pull_fails_cleanly(
        &registry,
        Rule::always("GET", "/manifests/", Action::LieDigest),
    );
    says(&err, &["fetching the manifest", "digest"]);
    assert_eq!(proxy.count("GET", "/manifests/"), 1, "not retried");

    let (err, proxy) = pull_fails_cleanly(&registry, Rule::always("GET", &layer, Action::Drop));
    says(&err, &[&format!("gave up after {ATTEMPTS} attempts")]);
    assert_eq!(proxy.count("GET", &layer), ATTEMPTS);

    let (err, proxy) = pull_fails_cleanly(
        &registry,
        Rule::always("GET", "/manifests/", Action::Status(404)),
    );
    says(&err, &["not found"]);
    assert_eq!(proxy.count("GET", "/manifests/"), 1, "404 is not retried");
}

#[test]
fn a_pull_with_one_attempt_does_not_retry() {
    let registry = TestRegistry::start();
    seed(&registry, "cup/flipt:v1");
    let proxy = RegistryProxy::start(
        &registry,
        vec![Rule::new("GET", "/manifests/", Action::Status(503), 1)],
    );
    let w = Work::new();
    let err = fails(w.cup(&[
        "controller",
        "pull",
        &proxy.reference("cup/flipt:v1"),
        "--attempts",
        "1",
    ]));
    says(&err, &["503"]);
    assert_eq!(proxy.count("GET", "/manifests/"), 1);
    assert_empty_store(&w.store());
}
