//! With the `component` feature, writes the WIT contract the bindings are generated from into
//! `OUT_DIR`, with the function name `list` written `%list`.
//!
//! `list` is a WIT keyword (the `list<T>` type), so wit-parser refuses it as a bare function
//! name; `%list` is the same name escaped, and the component still exports `list`. The copy
//! keeps wit/controller.wit the single source: once it spells the name `%list`, the
//! replacement below changes nothing.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let source = "../../wit/controller.wit";
    println!("cargo::rerun-if-changed={source}");
    if env::var_os("CARGO_FEATURE_COMPONENT").is_none() {
        return;
    }
    let wit = fs::read_to_string(source)
        .unwrap_or_else(|e| panic!("reading {source} (the component contract): {e}"));
    let escaped = wit.replace("\n    list: func(", "\n    %list: func(");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = out.join("controller.wit");
    fs::write(&target, escaped).unwrap_or_else(|e| panic!("writing {}: {e}", target.display()));
}
