//! Twenty clients writing at once: through the template controller and through the wasm
//! example controller (which rewrites one shared `features.yml`), every write survives.

use std::sync::Arc;

use cup_e2e::cupd::{
    Cupd, CupdConfig, copy_tree, write_flipt_controller, write_template_controller,
};
use cup_e2e::repo_root;
use cup_e2e::shared_code_cache;

const WRITERS: usize = 20;

fn hammer(cupd: &Arc<Cupd>, path_and_body: impl Fn(usize) -> (String, String)) {
    let threads: Vec<_> = (0..WRITERS)
        .map(|i| {
            let cupd = cupd.clone();
            let (path, body) = path_and_body(i);
            std::thread::spawn(move || cupd.put(&path, &body))
        })
        .collect();
    for t in threads {
        let response = t.join().expect("writer thread");
        assert_eq!(response.status, 202, "{}", response.text());
    }
}

#[test]
fn concurrent_template_puts_all_land() {
    let config = tempfile::tempdir().unwrap();
    write_template_controller(config.path(), r#"{"type":"object"}"#);
    let (source, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cupd = Arc::new(Cupd::start(&CupdConfig::new(
        config.path(),
        source.path(),
        store.path(),
    )));
    hammer(&cupd, |i| {
        (
            format!("/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/r{i}"),
            format!(
                r#"{{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{{"namespace":"default","name":"r{i}"}},"spec":{{"i":{i}}}}}"#
            ),
        )
    });
    let list = cupd.get("/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources");
    assert_eq!(list.text().lines().count(), WRITERS, "{}", list.text());
}

#[test]
fn concurrent_wasm_puts_to_one_file_all_land() {
    let config = tempfile::tempdir().unwrap();
    write_flipt_controller(config.path(), "flipt.wasm");
    let source = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("examples/flipt/repo"), source.path());
    let store = tempfile::tempdir().unwrap();
    let mut cfg = CupdConfig::new(config.path(), source.path(), store.path());
    cfg.args = vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
    ];
    let cupd = Arc::new(Cupd::start(&cfg));
    hammer(&cupd, |i| {
        (
            format!("/apis/flipt.io/v1alpha1/namespaces/default/flags/flag-{i}"),
            format!(
                r#"{{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{{"namespace":"default","name":"flag-{i}"}},"spec":{{"type":"BOOLEAN_FLAG_TYPE","enabled":true}}}}"#
            ),
        )
    });
    let list = cupd
        .get("/apis/flipt.io/v1alpha1/namespaces/default/flags")
        .text();
    for i in 0..WRITERS {
        assert!(
            list.contains(&format!("\"name\":\"flag-{i}\"")),
            "flag-{i} lost:\n{list}"
        );
    }
    let yaml = std::fs::read_to_string(source.path().join("features.yml")).unwrap();
    assert_eq!(yaml.matches("key: flag-").count(), WRITERS, "{yaml}");
}
