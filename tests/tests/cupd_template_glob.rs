//! Glob characters in a URL's namespace reach the template controller's list glob as
//! literals: `GET …/namespaces/%2A/resources` lists the namespace named `*` (none here), not
//! every namespace; `%5B` (`[`) is an empty list, not a malformed pattern and a 500; `%3F`
//! (`?`) does not match one-letter namespaces. A resource written into the namespace `*` is
//! listed there and only there.

use std::path::Path;

use cup_e2e::cupd::{Cupd, CupdConfig, write_template_controller};

const GROUP: &str = "/apis/test.cup.flipt.io/v1alpha1/namespaces";

fn resource(namespace: &str, name: &str) -> String {
    format!(
        r#"{{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{{"namespace":{namespace:?},"name":{name:?}}},"spec":{{}}}}"#
    )
}

fn seed(source: &Path, namespace: &str, name: &str) {
    let dir = source.join(namespace);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("test.cup.flipt.io-v1alpha1-Resource-{name}.json")),
        resource(namespace, name),
    )
    .unwrap();
}

fn names(cupd: &Cupd, namespace_in_url: &str) -> (u16, String) {
    let response = cupd.get(&format!("{GROUP}/{namespace_in_url}/resources"));
    (response.status, response.text())
}

#[test]
fn glob_characters_in_a_namespace_are_literal() {
    let (config, source, store) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    write_template_controller(config.path(), r#"{"type":"object"}"#);
    seed(source.path(), "default", "foo");
    seed(source.path(), "other", "bar");
    seed(source.path(), "x", "one-letter");
    let cupd = Cupd::start(&CupdConfig::new(config.path(), source.path(), store.path()));

    let (status, body) = names(&cupd, "default");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"foo\""), "{body}");

    for (url, what) in [
        ("%2A", "*"),
        ("%5B", "["),
        ("%3F", "?"),
        ("de%2A", "de*"),
        ("%5Bdo%5D%2A", "[do]*"),
        ("%5C", "\\"),
    ] {
        let (status, body) = names(&cupd, url);
        println!("GET {GROUP}/{url}/resources ({what:?}): {status} {body:?}");
        assert_eq!(
            (status, body.as_str()),
            (200, ""),
            "the namespace {what:?} holds nothing"
        );
    }

    // A resource really stored under `*` is found there, and nowhere else.
    let put = cupd.put(
        &format!("{GROUP}/%2A/resources/star"),
        &resource("*", "star"),
    );
    assert_eq!(put.status, 202, "{}", put.text());
    assert!(source.path().join("*").is_dir());
    let (status, body) = names(&cupd, "%2A");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");
    assert!(body.contains("\"star\""), "{body}");
    let (_, other) = names(&cupd, "other");
    assert!(!other.contains("\"star\""), "{other}");
    let got = cupd.get(&format!("{GROUP}/%2A/resources/star"));
    assert_eq!(got.status, 200, "{}", got.text());
}
