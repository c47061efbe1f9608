//! Round trips, determinism and every integrity verdict, on WAT-built modules and components.

use cup_model::ResourceDefinition;
use cup_sections::{
    CONTROLLER_SECTION, DEFINITION_SECTION, Error, Integrity, Layout, embed, read_package,
};
use proptest::prelude::*;
use wasm_encoder::{CustomSection, Section};

fn definition(name: &str, plural: &str, group: &str, versions: &[&str]) -> ResourceDefinition {
    let versions: serde_json::Map<String, serde_json::Value> = versions
        .iter()
        .map(|v| {
            (
                v.to_string(),
                serde_json::json!({"type": "object", "properties": {"spec": {"type": "object"}}}),
            )
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "cup.flipt.io/v1alpha1",
        "kind": "ResourceDefinition",
        "metadata": {"name": name},
        "names": {"kind": "Thing", "singular": "thing", "plural": plural},
        "spec": {"group": group, "versions": versions},
    }))
    .unwrap()
}

fn defs() -> Vec<ResourceDefinition> {
    vec![
        definition("segments.flipt.io", "segments", "flipt.io", &["v1alpha1"]),
        definition("flags.flipt.io", "flags", "flipt.io", &["v1alpha1", "v1"]),
    ]
}

fn core_module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
            (memory (export "memory") 1)
            (func (export "_start"))
            (data (i32.const 0) "hello")
            (@custom "producers" "rustc")
        )"#,
    )
    .unwrap()
}

fn component() -> Vec<u8> {
    wat::parse_str(r#"(component (core module (func (export "f"))) (@custom "note" "x"))"#).unwrap()
}

fn append_custom(bytes: &mut Vec<u8>, name: &str, data: &[u8]) {
    CustomSection {
        name: name.into(),
        data: data.into(),
    }
    .append_to(bytes);
}

/// Rebuilds a binary from its layout, keeping only sections for which `keep` is true.
fn filter_sections(
    bytes: &[u8],
    keep: impl Fn(usize, &cup_sections::SectionHeader) -> bool,
) -> Vec<u8> {
    let layout = Layout::from_bytes(bytes).unwrap();
    let mut out = bytes[..8].to_vec();
    for (i, s) in layout.sections.iter().enumerate() {
        if keep(i, s) {
            out.extend_from_slice(&bytes[s.offset as usize..s.end() as usize]);
        }
    }
    out
}

#[test]
fn round_trip_core_module_and_component() {
    for module in [core_module(), component()] {
        let (out, report) = embed(&module, &defs()).unwrap();
        assert!(
            out.starts_with(&module),
            "the original bytes are a prefix of the output"
        );
        let package = read_package(&out).unwrap();
        assert_eq!(package.integrity, Integrity::Ok);
        let mut names: Vec<_> = package
            .definitions
            .iter()
            .map(|d| d.definition.metadata.name.clone())
            .collect();
        assert_eq!(
            names,
            ["flags.flipt.io", "segments.flipt.io"],
            "sorted by name"
        );
        names.sort();
        let got = package.verified_definitions().unwrap();
        let mut want = defs();
        want.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        assert_eq!(got, want);
        assert_eq!(
            package.verified_definition_refs().unwrap(),
            got.iter().collect::<Vec<_>>()
        );
        assert_eq!(package.manifest.unwrap(), report.manifest);
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&out)
            .unwrap();
    }
}

#[test]
fn embedding_is_deterministic_and_idempotent() {
    let (once, _) = embed(&core_module(), &defs()).unwrap();
    let mut reversed = defs();
    reversed.reverse();
    let (again, _) = embed(&core_module(), &reversed).unwrap();
    assert_eq!(once, again, "input order does not matter");
    let (twice, report) = embed(&once, &defs()).unwrap();
    assert_eq!(once, twice, "re-embedding gives identical bytes");
    assert_eq!(report.replaced_sections, 3);
}

#[test]
fn re_embedding_replaces_old_sections_wherever_they_are() {
    let (embedded, _) = embed(&core_module(), &defs()[..1]).unwrap();
    // A tool appended a section after ours: re-embedding must drop ours and keep it.
    let mut later = embedded.clone();
    append_custom(&mut later, "name", b"\0");
    let (out, _) = embed(&later, &defs()).unwrap();
    let without_cup = filter_sections(&out, |_, s| !s.is_cup());
    let mut expected = core_module();
    append_custom(&mut expected, "name", b"\0");
    assert_eq!(without_cup, expected);
    assert_eq!(read_package(&out).unwrap().integrity, Integrity::Ok);
}

#[test]
fn plain_module_has_no_cup_sections() {
    assert_eq!(
        read_package(&core_module()).unwrap().integrity,
        Integrity::NoCupSections
    );
}

#[test]
fn flipped_byte_in_a_definition_is_tampering() {
    let (mut out, _) = embed(&core_module(), &defs()).unwrap();
    let layout = Layout::from_bytes(&out).unwrap();
    let def = layout
        .sections
        .iter()
        .rfind(|s| s.custom_name() == Some(DEFINITION_SECTION))
        .unwrap();
    // Change a letter inside the JSON (keeps it valid JSON, so only the hash can tell).
    let data = def.data_range();
    let slice = &mut out[data.start as usize..data.end as usize];
    let pos = slice.windows(6).position(|w| w == b"object").unwrap();
    slice[pos] = b'O';
    match read_package(&out).unwrap().integrity {
        Integrity::Tampered(p) => assert!(p.iter().any(|m| m.contains("was modified")), "{p:?}"),
        other => panic!("expected tampered, got {other:?}"),
    }
}

#[test]
fn removed_definition_section_is_stripping() {
    let (out, _) = embed(&core_module(), &defs()).unwrap();
    let stripped = filter_sections(&out, |_, s| {
        s.custom_name() != Some(DEFINITION_SECTION)
            || s.offset != {
                let l = Layout::from_bytes(&out).unwrap();
                l.sections
                    .iter()
                    .rfind(|s| s.custom_name() == Some(DEFINITION_SECTION))
                    .unwrap()
                    .offset
            }
    });
    match read_package(&stripped).unwrap().integrity {
        Integrity::Stripped(p) => assert_eq!(
            p,
            ["definition \"segments.flipt.io\" listed in the manifest is missing"]
        ),
        other => panic!("expected stripped, got {other:?}"),
    }
    let no_manifest = filter_sections(&out, |_, s| s.custom_name() != Some(CONTROLLER_SECTION));
    assert!(matches!(
        read_package(&no_manifest).unwrap().integrity,
        Integrity::Stripped(_)
    ));
}

#[test]
fn two_manifests_are_refused() {
    let (mut out, _) = embed(&core_module(), &defs()).unwrap();
    let layout = Layout::from_bytes(&out).unwrap();
    let m = layout
        .sections
        .iter()
        .find(|s| s.custom_name() == Some(CONTROLLER_SECTION))
        .unwrap();
    let copy = out[m.offset as usize..m.end() as usize].to_vec();
    out.extend_from_slice(&copy);
    let package = read_package(&out).unwrap();
    assert!(
        package
            .verified_definitions()
            .unwrap_err()
            .to_string()
            .contains("2 cup.controller sections")
    );
    assert_eq!(
        package.verified_definition_refs().unwrap_err().to_string(),
        package.verified_definitions().unwrap_err().to_string()
    );
}

#[test]
fn changed_code_is_tampering() {
    let (out, _) = embed(&core_module(), &defs()).unwrap();
    let mut spliced =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start") nop))"#)
            .unwrap();
    let layout = Layout::from_bytes(&out).unwrap();
    for s in layout.cup_sections() {
        spliced.extend_from_slice(&out[s.offset as usize..s.end() as usize]);
    }
    match read_package(&spliced).unwrap().integrity {
        Integrity::Tampered(p) => assert!(p[0].starts_with("module code changed"), "{p:?}"),
        other => panic!("expected tampered, got {other:?}"),
    }
}

#[test]
fn extra_definition_is_tampering() {
    let (mut out, _) = embed(&core_module(), &defs()[..1]).unwrap();
    let extra = definition("things.example.com", "things", "example.com", &["v1"]);
    append_custom(
        &mut out,
        DEFINITION_SECTION,
        &cup_model::to_canonical_json(&extra).unwrap(),
    );
    match read_package(&out).unwrap().integrity {
        Integrity::Tampered(p) => assert!(p[0].contains("not listed in the manifest"), "{p:?}"),
        other => panic!("expected tampered, got {other:?}"),
    }
}

#[test]
fn bad_definitions_are_refused_before_writing() {
    let module = core_module();
    let dup = vec![defs()[0].clone(), defs()[0].clone()];
    assert!(matches!(embed(&module, &dup), Err(Error::DuplicateName(_))));
    let same_route = vec![
        definition("a.flipt.io", "flags", "flipt.io", &["v1"]),
        definition("b.flipt.io", "flags", "flipt.io", &["v1"]),
    ];
    let err = embed(&module, &same_route).unwrap_err().to_string();
    assert_eq!(
        err,
        "definitions \"a.flipt.io\" and \"b.flipt.io\" both serve flipt.io/v1/flags"
    );
    let mut bad_schema = defs()[0].clone();
    bad_schema
        .spec
        .versions
        .insert("v1".into(), serde_json::json!({"type": "nope"}));
    assert!(matches!(
        embed(&module, &[bad_schema]),
        Err(Error::InvalidDefinition { .. })
    ));
    assert!(matches!(embed(&module, &[]), Err(Error::NoDefinitions)));
    assert!(matches!(
        embed(b"not wasm at all", &defs()),
        Err(Error::NotWasm)
    ));
    assert!(matches!(
        embed(&module[..module.len() - 3], &defs()),
        Err(Error::Truncated(_))
    ));
}

#[test]
fn seek_reader_sees_what_memory_reader_sees() {
    let (out, _) = embed(&core_module(), &defs()).unwrap();
    let from_file = cup_sections::read_definitions_reader(&mut std::io::Cursor::new(&out)).unwrap();
    let in_memory = read_package(&out).unwrap();
    assert_eq!(from_file.definitions, in_memory.definitions);
    assert_eq!(from_file.integrity, Integrity::Ok);
    assert!(from_file.module_sha256.is_none());
}

#[test]
fn oversized_definition_is_refused_at_read() {
    let mut module = core_module();
    append_custom(&mut module, CONTROLLER_SECTION, b"{}");
    append_custom(
        &mut module,
        DEFINITION_SECTION,
        &vec![b' '; cup_sections::limits::MAX_DEFINITION_BYTES + 1],
    );
    assert!(matches!(read_package(&module), Err(Error::TooLarge { .. })));
}

fn arb_definitions() -> impl Strategy<Value = Vec<ResourceDefinition>> {
    proptest::collection::btree_set("[a-z]{1,8}", 1..6).prop_flat_map(|plurals| {
        let plurals: Vec<String> = plurals.into_iter().collect();
        let n = plurals.len();
        (
            Just(plurals),
            proptest::collection::vec(proptest::collection::btree_set("v[0-9]{1,2}", 1..3), n),
            proptest::collection::vec(
                proptest::collection::btree_map("[a-z]{1,5}", "[a-zA-Z0-9 ]{0,6}", 0..3),
                n,
            ),
        )
            .prop_map(|(plurals, versions, props)| {
                plurals
                    .iter()
                    .zip(versions)
                    .zip(props)
                    .map(|((plural, versions), props)| {
                        let versions: Vec<&str> = versions.iter().map(String::as_str).collect();
                        let mut d = definition(
                            &format!("{plural}.example.com"),
                            plural,
                            "example.com",
                            &versions,
                        );
                        d.metadata.labels = Some(props);
                        d
                    })
                    .collect()
            })
    })
}

fn arb_customs() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    proptest::collection::vec(
        (
            prop_oneof![
                "[a-z.]{0,12}",
                Just("cup.definition".to_string()),
                Just("cup.other".to_string())
            ],
            proptest::collection::vec(any::<u8>(), 0..40),
        ),
        0..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_definitions_and_section_layouts_round_trip(defs in arb_definitions(), customs in arb_customs()) {
        let mut module = core_module();
        for (name, data) in &customs {
            append_custom(&mut module, name, data);
        }
        let (out, _) = embed(&module, &defs).unwrap();
        // Our own sections are replaced: what remains of the input is every non-cup section.
        let expected_prefix = filter_sections(&module, |_, s| !s.is_cup());
        prop_assert!(out.starts_with(&expected_prefix));
        let package = read_package(&out).unwrap();
        prop_assert_eq!(&package.integrity, &Integrity::Ok);
        let mut want = defs.clone();
        want.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        prop_assert_eq!(package.verified_definitions().unwrap(), want);
        let (again, _) = embed(&out, &defs).unwrap();
        prop_assert_eq!(again, out);
    }

    #[test]
    fn scanner_never_panics_on_garbage(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.extend_from_slice(&tail);
        let _ = read_package(&bytes);
    }
}

/// One pass (cup sections last, as embedded) or two (a section after ours, or tampered
/// code): the same verdict and digests as `read_package` plus hashing the whole file.
#[test]
fn package_and_file_digest_in_one_pass_or_two() {
    let (last, _) = embed(&core_module(), &defs()).unwrap();
    let mut middle = last.clone();
    append_custom(&mut middle, "name", b"\0");
    let mut tampered = last.clone();
    // The data segment's "hello" is code: flip a byte of it.
    let at = tampered
        .windows(5)
        .position(|w| w == b"hello")
        .expect("data segment");
    tampered[at] ^= 1;
    for (name, bytes) in [
        ("last", &last),
        ("middle", &middle),
        ("tampered", &tampered),
    ] {
        let (package, file) = cup_sections::read_package_and_digest(bytes).unwrap();
        let expected = read_package(bytes).unwrap();
        assert_eq!(package.integrity, expected.integrity, "{name}");
        assert_eq!(package.module_sha256, expected.module_sha256, "{name}");
        assert_eq!(file, cup_sections::sha256_digest(bytes), "{name}");
    }
    assert!(matches!(
        cup_sections::read_package_and_digest(&tampered)
            .unwrap()
            .0
            .integrity,
        Integrity::Tampered(_)
    ));
    assert!(cup_sections::read_package_and_digest(b"not wasm").is_err());
}

/// Reading from a reader while hashing gives what reading into memory first gives: for
/// cup sections last or not, a module end on either side of a 1 MiB chunk boundary, a
/// reader that ends early; a reader that has more than announced is refused.
#[test]
fn reading_while_hashing_matches_reading_first() {
    let mut big = core_module();
    // Padding so that the code spans several 1 MiB chunks, its end at an offset that is
    // not a chunk boundary, then (by trimming the padding) exactly on one.
    append_custom(&mut big, "padding", &vec![7u8; (3 << 20) / 2]);
    let (embedded, _) = embed(&big, &defs()).unwrap();
    let code_end = Layout::from_bytes(&embedded).unwrap().kept_ranges()[0].end as usize;
    let mut on_boundary = core_module();
    let short = (2 << 20) - (code_end - (3 << 20) / 2);
    append_custom(&mut on_boundary, "padding", &vec![7u8; short]);
    let (on_boundary, _) = embed(&on_boundary, &defs()).unwrap();
    let kept = Layout::from_bytes(&on_boundary).unwrap().kept_ranges();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0], 0..2 << 20, "the code ends on a chunk boundary");
    assert_ne!(code_end % (1 << 20), 0, "the code ends inside a chunk");
    let mut middle = embedded.clone();
    append_custom(&mut middle, "name", b"\0");
    let small = embed(&core_module(), &defs()).unwrap().0;
    for (name, bytes) in [
        ("big", &embedded),
        ("boundary", &on_boundary),
        ("middle", &middle),
        ("small", &small),
        ("plain", &core_module()),
    ] {
        let read =
            cup_sections::read_package_from(&mut bytes.as_slice(), bytes.len() as u64).unwrap();
        let (package, digest) = cup_sections::read_package_and_digest(bytes).unwrap();
        assert_eq!(&read.bytes, bytes, "{name}");
        assert_eq!(read.digest, digest, "{name}");
        assert_eq!(read.package.module_sha256, package.module_sha256, "{name}");
        assert_eq!(read.package.integrity, package.integrity, "{name}");
    }
    // A reader that ends early (a file that shrank): judged as what it gave, never with
    // the zeros of the unfilled buffer.
    let cut = &small[..small.len() - 3];
    let err = cup_sections::read_package_from(&mut &cut[..], small.len() as u64).unwrap_err();
    assert!(matches!(err, Error::Truncated(_)), "{err}");
    let plain = core_module();
    let read =
        cup_sections::read_package_from(&mut plain.as_slice(), plain.len() as u64 + 10).unwrap();
    assert_eq!(read.bytes, plain);
    assert_eq!(read.digest, cup_sections::sha256_digest(&plain));
    assert_eq!(read.package.integrity, Integrity::NoCupSections);
    // More than announced: the file grew while it was read.
    let err =
        cup_sections::read_package_from(&mut small.as_slice(), small.len() as u64 - 1).unwrap_err();
    assert!(err.to_string().contains("grew"), "{err}");
}

#[test]
fn the_manifest_names_the_abi_of_what_the_binary_is() {
    let (module, report) = embed(&core_module(), &defs()).unwrap();
    assert_eq!(report.manifest.abi, cup_sections::ABI_WASI_P1);
    let (component, report) = embed(&component(), &defs()).unwrap();
    assert_eq!(report.manifest.abi, cup_sections::ABI_COMPONENT);
    assert_eq!(
        cup_sections::component_exports(&component).unwrap(),
        Vec::<String>::new(),
        "this component exports nothing"
    );

    // A manifest claiming the other kind, spliced into each (the same length, so nothing
    // else moves): the package is judged tampered, naming both ABIs.
    for (bytes, claimed, actual) in [
        (
            &module,
            cup_sections::ABI_COMPONENT,
            cup_sections::ABI_WASI_P1,
        ),
        (
            &component,
            cup_sections::ABI_WASI_P1,
            cup_sections::ABI_COMPONENT,
        ),
    ] {
        let layout = Layout::from_bytes(bytes).unwrap();
        let forged = filter_sections(bytes, |_, s| {
            s.custom_name().unwrap_or_default() != CONTROLLER_SECTION
        });
        let manifest = read_package(bytes).unwrap().manifest.unwrap();
        let mut json: serde_json::Value = serde_json::to_value(&manifest).unwrap();
        json["abi"] = claimed.into();
        let mut forged = forged;
        append_custom(
            &mut forged,
            CONTROLLER_SECTION,
            &serde_json::to_vec(&json).unwrap(),
        );
        assert!(layout.sections.len() > 1);
        match read_package(&forged).unwrap().integrity {
            Integrity::Tampered(why) => assert!(
                why.iter()
                    .any(|w| w.contains(claimed) && w.contains(actual)),
                "{why:?}"
            ),
            other => panic!("expected tampered, got {other:?}"),
        }
    }
}

#[test]
fn component_exports_are_read_at_the_top_level_only() {
    let wasm = wat::parse_str(
        r#"(component
            (component $inner
                (core module $m (func (export "f")))
                (core instance $i (instantiate $m))
                (func $f (canon lift (core func $i "f")))
                (export "inner:pkg/hidden" (func $f)))
            (instance $c (instantiate $inner))
            (export "cup:controller/controller@0.1.0" (instance $c)))"#,
    )
    .unwrap();
    assert_eq!(
        cup_sections::component_exports(&wasm).unwrap(),
        ["cup:controller/controller@0.1.0"]
    );
    assert!(
        cup_sections::component_exports(&core_module())
            .unwrap()
            .is_empty()
    );
}
