//! Fuzzes the section reader and the embedder with arbitrary bytes as the module.
//!
//! Invariants checked: reading never panics; both readers (memory and seek) agree; any
//! module the scanner accepts can be embedded into, and the result reads back `ok` with the
//! same definitions and re-embeds to identical bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let in_memory = cup_sections::read_package(data);
    let seeking = cup_sections::read_definitions_reader(&mut std::io::Cursor::new(data));
    match (&in_memory, &seeking) {
        (Ok(a), Ok(b)) => assert_eq!(a.definitions, b.definitions),
        (Err(_), Err(_)) => {}
        _ => panic!("memory and seek readers disagree: {in_memory:?} vs {seeking:?}"),
    }
    if in_memory.is_err() {
        return;
    }
    let definition: cup_model::ResourceDefinition = serde_json::from_str(
        r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"xs.fuzz"},"names":{"kind":"X","singular":"x","plural":"xs"},"spec":{"group":"fuzz","versions":{"v1":{"type":"object"}}}}"#,
    )
    .expect("fixed definition parses");
    let (out, _) = cup_sections::embed(data, std::slice::from_ref(&definition))
        .expect("embedding into a scannable module");
    let package = cup_sections::read_package(&out).expect("reading what was embedded");
    assert!(package.integrity.is_ok(), "{:?}", package.integrity);
    assert_eq!(
        package.verified_definitions().expect("ok package"),
        vec![definition.clone()]
    );
    let (again, _) = cup_sections::embed(&out, &[definition]).expect("re-embedding");
    assert_eq!(again, out);
});
