//! A controller that tries to escape its mount, served by the real cupd: reading `..` above
//! the root, following symlinks that point outside, writing during a read-only list, writing
//! outside during put/delete. Every attempt fails inside the guest, nothing leaks into a
//! response, nothing appears outside the source, and the other routes keep serving.

use cup_e2e::cupd::{Cupd, CupdConfig, write_probe_controller, write_template_controller};

const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-MOUNT";

fn write_config(dir: &std::path::Path) {
    write_probe_controller(dir, &["Escape"]);
    write_template_controller(dir, r#"{"type":"object"}"#);
}

#[test]
fn a_controller_cannot_leave_its_mount() {
    // outer/secret.txt sits next to the source; the source holds links pointing at it.
    let outer = tempfile::tempdir().unwrap();
    let source = outer.path().join("src");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(outer.path().join("secret.txt"), SECRET).unwrap();
    std::os::unix::fs::symlink("../secret.txt", source.join("secret-link")).unwrap();
    std::os::unix::fs::symlink(outer.path(), source.join("outside-link")).unwrap();
    let (config, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_config(config.path());
    let cupd = Cupd::start(&CupdConfig::new(config.path(), &source, store.path()));

    let base = "/apis/example.com/v1/namespaces/default/escapes";
    for (what, response) in [
        ("get", cupd.get(&format!("{base}/x"))),
        ("list", cupd.get(base)),
        ("put", cupd.put(&format!("{base}/x"), r#"{"apiVersion":"example.com/v1","kind":"Escape","metadata":{"namespace":"default","name":"x"},"spec":{}}"#)),
        ("delete", cupd.delete(&format!("{base}/x"))),
    ] {
        let body = response.text();
        assert!(!body.contains(SECRET), "{what} leaked the secret: {body}");
        assert!(!body.contains("\"leak\""), "{what} escaped: {body}");
        assert_eq!(response.status, 500, "{what}: {body}");
        assert!(body.contains("contained:"), "{what}: the guest's own report is in the error: {body}");
    }
    assert!(
        !outer.path().join("escaped.txt").exists(),
        "nothing written outside the source"
    );
    assert!(
        !source.join("written-during-list.txt").exists(),
        "nothing written during a list"
    );
    assert_eq!(
        std::fs::read_to_string(outer.path().join("secret.txt")).unwrap(),
        SECRET
    );

    // The server and its other routes are unaffected.
    let ok = cupd.put(
        "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/ok",
        r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"ok"},"spec":{}}"#,
    );
    assert_eq!(ok.status, 202, "{}", ok.text());
    assert_eq!(cupd.get("/healthz").status, 200);
}
