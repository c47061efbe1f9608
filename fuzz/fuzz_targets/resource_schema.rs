//! Fuzzes a PUT body's path through cupd before any controller runs, and a controller's
//! stdout on the way back: JSON parsing, JSON Schema validation against the example's real
//! schemas (examples/flipt/defs, compiled once as cupd does at startup), decoding as a
//! `Resource`, and the encoders that turn it into bytes again (Go-style compact JSON for
//! responses and the put's stdin, canonical JSON for digests).
//!
//! Invariants: nothing panics; `is_valid` agrees with `iter_errors`; every error renders;
//! a decoded resource re-encodes to JSON that decodes to the same resource; Go-compact
//! output is JSON with the same value; canonical JSON is a fixed point.
#![no_main]

use std::sync::OnceLock;

use cup_model::Resource;
use libfuzzer_sys::fuzz_target;

fn validators() -> &'static Vec<jsonschema::Validator> {
    static V: OnceLock<Vec<jsonschema::Validator>> = OnceLock::new();
    V.get_or_init(|| {
        [
            include_str!("../../examples/flipt/defs/flags.json"),
            include_str!("../../examples/flipt/defs/segments.json"),
        ]
        .iter()
        .flat_map(|text| {
            let def: cup_model::ResourceDefinition =
                serde_json::from_str(text).expect("the example's definition parses");
            cup_model::validate_definition(&def).expect("the example's definition is valid");
            def.spec
                .versions
                .values()
                .map(|schema| cup_model::compile_schema(schema).expect("compiles"))
                .collect::<Vec<_>>()
        })
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    // A controller's stdout: a stream of resources (list) or the first one (get).
    for r in serde_json::Deserializer::from_slice(data).into_iter::<Resource>() {
        if r.is_err() {
            break;
        }
    }
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for validator in validators() {
        let errors: Vec<String> = validator
            .iter_errors(&document)
            .map(|e| format!("{}: {e}", e.instance_path().as_str()))
            .collect();
        assert_eq!(
            validator.is_valid(&document),
            errors.is_empty(),
            "{errors:?}"
        );
    }
    let canonical = cup_model::value_to_canonical_json(&document);
    let reparsed: serde_json::Value =
        serde_json::from_slice(&canonical).expect("canonical JSON parses");
    assert_eq!(reparsed, document);
    assert_eq!(cup_model::value_to_canonical_json(&reparsed), canonical);
    let Ok(resource) = serde_json::from_value::<Resource>(document) else {
        return;
    };
    let encoded = serde_json::to_vec(&resource).expect("a resource encodes");
    let decoded: Resource = serde_json::from_slice(&encoded).expect("its encoding decodes");
    assert_eq!(decoded, resource);
    let go = cup_model::compact_go_json(&encoded);
    let go_value: serde_json::Value = serde_json::from_slice(&go).expect("Go-compact JSON parses");
    let plain_value: serde_json::Value = serde_json::from_slice(&encoded).expect("parses");
    assert_eq!(go_value, plain_value);
});
