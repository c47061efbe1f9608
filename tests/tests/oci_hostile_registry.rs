//! Registries that attack the client, through the real `cup` binary:
//! * a "manifest" of 128 MiB, announced by its `Content-Length` or sent chunked with none:
//!   refused after reading at most the 4 MiB cap (the server sees the client stop reading),
//!   not after holding it all in memory;
//! * a credential challenge naming a token service on another host (127.0.0.2, another
//!   loopback address, where a listener records every request): the user's credentials
//!   never arrive there, for pull, push or inspect, unless `--allow-token-realm` names it.

use crate::oci_common::*;
use cup_e2e::fake_registry::{Behaviour, FakeServer};

const HUGE: u64 = 128 << 20;
/// What may be written before the client stops reading: the 4 MiB cap plus the loopback
/// socket buffers of both ends (a few MiB each), far below the whole body.
const AT_MOST_SERVED: u64 = 32 << 20;

#[test]
fn a_huge_manifest_is_refused_without_being_read() {
    for chunked in [false, true] {
        let registry = FakeServer::registry(Behaviour::HugeManifest {
            size: HUGE,
            chunked,
        });
        let w = Work::new();
        let reference = registry.reference("cup/huge:v1");
        for args in [
            vec!["controller", "pull", reference.as_str()],
            vec!["controller", "inspect", reference.as_str()],
        ] {
            let err = fails(w.cup(&args));
            says(&err, &["manifest", "the limit of 4194304 bytes"]);
        }
        let served = registry.served();
        eprintln!(
            "chunked={chunked}: the fake registry wrote {served} bytes of manifest for two requests"
        );
        assert!(
            served <= 2 * AT_MOST_SERVED,
            "chunked={chunked}: {served} bytes of a {HUGE}-byte manifest were read"
        );
        assert_empty_store(&w.store());
    }
}

const USER: &str = "cup";
const PASSWORD: &str = "s3cret-never-elsewhere";

#[test]
fn credentials_never_reach_a_token_service_on_another_host() {
    let recorder = FakeServer::recorder("127.0.0.2");
    let realm = format!("http://{}/token", recorder.host());
    let registry = FakeServer::registry(Behaviour::Challenge {
        realm: realm.clone(),
    });
    let w = Work::new();
    let reference = registry.reference("cup/private:v1");
    let wasm = w.wasm().to_string_lossy().into_owned();
    let login = ["--username", USER, "--password-stdin"];
    let runs: [Vec<&str>; 3] = [
        vec!["controller", "pull", &reference],
        vec!["controller", "inspect", &reference],
        vec!["controller", "push", &wasm, &reference],
    ];
    let mut errors = Vec::new();
    for run in &runs {
        let mut args = run.clone();
        args.splice(2..2, login);
        errors.push(fails(w.cup_with(&args, &[], &format!("{PASSWORD}\n"))));
    }
    assert_eq!(
        recorder.requests(),
        Vec::<String>::new(),
        "the token service on another host was contacted"
    );
    for err in &errors {
        says(
            err,
            &[&realm, "another host", "--allow-token-realm 127.0.0.2"],
        );
        assert!(!err.contains(PASSWORD), "{err}");
    }
    // The registry itself never saw the password either: its challenge is read first,
    // without credentials.
    for request in registry.requests() {
        assert!(
            !request.to_ascii_lowercase().contains("authorization"),
            "{request}"
        );
    }

    // Allowed by name, the token service is asked (with the credentials, as it must be).
    let mut args = runs[0].clone();
    args.splice(2..2, login);
    args.extend(["--allow-token-realm", "127.0.0.2"]);
    fails(w.cup_with(&args, &[], &format!("{PASSWORD}\n")));
    let seen = recorder.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("GET /token?")
            && seen[0].contains("scope=repository%3Acup%2Fprivate%3Apull"),
        "{seen:?}"
    );
    assert!(
        seen[0]
            .to_ascii_lowercase()
            .contains("authorization: basic"),
        "{seen:?}"
    );
}
