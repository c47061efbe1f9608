//! Canonical JSON, the form cup hashes and embeds: `cargo bench -p cup-model --bench canonical`.
//!
//! Inputs: the example's two ResourceDefinitions (what `cup-embed` canonicalises, once per
//! definition) and a list of 1,000 Flag-shaped objects (a large JSON document with keys in
//! no particular order). Speed is measured here, never asserted.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cup_model::ResourceDefinition;
use cup_model::{to_canonical_json, value_to_canonical_json};
use serde_json::{Value, json};

fn example_definitions() -> Vec<ResourceDefinition> {
    let defs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/flipt/defs");
    ["flags.json", "segments.json"]
        .iter()
        .map(|name| {
            let text =
                std::fs::read_to_string(format!("{defs}/{name}")).expect("example definition");
            serde_json::from_str(&text).expect("a ResourceDefinition")
        })
        .collect()
}

fn flag_list(n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "spec": {"variants": [{"key": "on", "name": "On"}, {"key": "off"}],
                         "enabled": i % 2 == 0, "description": format!("flag number {i}"),
                         "rules": [{"segment": "beta", "rank": 1}]},
                "metadata": {"namespace": "default", "name": format!("flag-{i}"),
                             "labels": {"team": "core", "tier": "gold"}},
                "kind": "Flag",
                "apiVersion": "flipt.io/v1alpha1",
            })
        })
        .collect();
    Value::Array(items)
}

fn bench(c: &mut Criterion) {
    let definitions = example_definitions();
    let mut group = c.benchmark_group("canonical");
    let bytes: usize = definitions
        .iter()
        .map(|d| to_canonical_json(d).expect("serialises").len())
        .sum();
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("example definitions (typed)", |b| {
        b.iter(|| {
            for d in &definitions {
                black_box(to_canonical_json(black_box(d)).expect("serialises"));
            }
        })
    });
    let list = flag_list(1_000);
    group.throughput(Throughput::Bytes(
        value_to_canonical_json(&list).len() as u64
    ));
    group.bench_function("1000 flags (Value)", |b| {
        b.iter(|| black_box(value_to_canonical_json(black_box(&list))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs: these figures are for spotting regressions, not for the peer comparison.
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
