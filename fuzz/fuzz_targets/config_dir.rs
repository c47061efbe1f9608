//! Fuzzes cupd's config-directory loader (`cup_server::config_dir::load`), which reads
//! operator-supplied files at startup: the input is split at NUL bytes (never valid inside
//! JSON) into up to four files of one directory tree, so cross-file checks (duplicate
//! routes, controllers and bindings; bindings naming unknown controllers) are reached too.
//!
//! Invariants: nothing panics; an accepted directory is self-consistent: every binding names
//! a controller, every definition is found under each of its keys, keys are unique.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const FILES: [&str; 4] = ["a.json", "b.json", "sub/c.json", "sub/deeper/d.json"];

/// One directory per fuzzing process, rewritten for every input.
fn root() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::temp_dir().join(format!("cup-fuzz-config-dir-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root.join("sub/deeper")).expect("creating the fuzz directory");
    for (name, content) in FILES.iter().zip(data.split(|b| *b == 0)) {
        std::fs::write(root.join(name), content).expect("writing a fuzz file");
    }
    let Ok(config) = cup_server::config_dir::load(root) else {
        return;
    };
    let mut keys = std::collections::BTreeSet::new();
    for d in &config.definitions {
        for key in d.definition.keys() {
            assert!(keys.insert(key.clone()), "{key} defined twice");
            let found = config.definition_for(&key).expect("a loaded key is found");
            assert_eq!(found.file, d.file);
        }
        serde_json::from_str::<serde_json::Value>(&d.discovery).expect("discovery JSON parses");
    }
    for b in config.bindings.values() {
        assert!(config.controllers.contains_key(&b.binding.spec.controller));
    }
});
