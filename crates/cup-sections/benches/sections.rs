//! The package format's hot functions: `cargo bench -p cup-sections --bench sections`.
//!
//! - section scan: [`Layout::from_bytes`] and [`read_definitions_file`] on packages of 1 MiB
//!   and 16 MiB, which should take the same time whatever the size (they read section
//!   headers and the `cup.*` sections, never the code);
//! - digest streaming: [`read_package_from`] (read a whole package while hashing it on a
//!   second thread, as push does) against a bare SHA-256 of the same bytes;
//! - embedding: [`embed`] in memory and [`embed_file`] between two files.
//!
//! The modules are synthetic (one function and a passive data segment for the bulk), the
//! definitions are the example's. Speed is measured here, never asserted.

use std::hint::black_box;
use std::path::Path;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use cup_model::ResourceDefinition;
use cup_sections::read_definition_file;
use cup_sections::{Layout, embed, embed_file, read_definitions_file, read_package_from};
use wasm_encoder::{
    CodeSection, DataSection, ExportKind, ExportSection, Function, FunctionSection, Module,
    TypeSection,
};

const MIB: usize = 1 << 20;

/// A valid module of about `size` bytes: `_start` and one passive data segment.
fn module(size: usize) -> Vec<u8> {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    m.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    m.section(&functions);
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 0);
    m.section(&exports);
    let mut code = CodeSection::new();
    let mut start = Function::new([]);
    start.instructions().end();
    code.function(&start);
    m.section(&code);
    let mut data = DataSection::new();
    data.passive((0..size).map(|i| (i * 131 % 251) as u8));
    m.section(&data);
    m.finish()
}

/// The example's definitions, read as `cup-embed` reads them.
fn example_definitions() -> Vec<ResourceDefinition> {
    let defs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/flipt/defs");
    ["flags.json", "segments.json"]
        .iter()
        .map(|name| read_definition_file(&defs.join(name)).expect("example definition"))
        .collect()
}

struct Input {
    module: Vec<u8>,
    package: Vec<u8>,
    package_file: std::path::PathBuf,
    module_file: std::path::PathBuf,
}

fn input(dir: &Path, size: usize, definitions: &[ResourceDefinition]) -> Input {
    let module = module(size);
    let (package, _) = embed(&module, definitions).expect("embeds");
    let package_file = dir.join(format!("package-{size}.wasm"));
    let module_file = dir.join(format!("module-{size}.wasm"));
    std::fs::write(&package_file, &package).expect("writes the package");
    std::fs::write(&module_file, &module).expect("writes the module");
    Input {
        module,
        package,
        package_file,
        module_file,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let definitions = example_definitions();
    let inputs: Vec<(usize, Input)> = [MIB, 16 * MIB]
        .into_iter()
        .map(|size| (size, input(dir.path(), size, &definitions)))
        .collect();
    let label = |size: usize| format!("{} MiB", size / MIB);

    let mut scan = c.benchmark_group("section scan");
    for (size, input) in &inputs {
        scan.bench_with_input(
            BenchmarkId::new("Layout::from_bytes", label(*size)),
            input,
            |b, i| b.iter(|| black_box(Layout::from_bytes(black_box(&i.package)).expect("scans"))),
        );
        scan.bench_with_input(
            BenchmarkId::new("read_definitions_file", label(*size)),
            input,
            |b, i| {
                b.iter(|| {
                    let package = read_definitions_file(&i.package_file).expect("reads");
                    black_box(package.verified_definition_refs().expect("intact").len())
                })
            },
        );
    }
    scan.finish();

    let (size, big) = inputs.last().expect("two sizes");
    let mut digest = c.benchmark_group("digest streaming");
    // Milliseconds per iteration: the same number of iterations in every sample.
    digest.sampling_mode(SamplingMode::Flat);
    digest.throughput(Throughput::Bytes(big.package.len() as u64));
    digest.bench_function(
        BenchmarkId::new("read_package_from (read + hash)", label(*size)),
        |b| {
            b.iter(|| {
                let mut file = std::fs::File::open(&big.package_file).expect("opens");
                let read = read_package_from(&mut file, big.package.len() as u64).expect("reads");
                black_box(read.digest)
            })
        },
    );
    digest.bench_function(
        BenchmarkId::new("sha256 alone (in memory)", label(*size)),
        |b| b.iter(|| black_box(cup_sections::sha256_digest(black_box(&big.package)))),
    );
    digest.finish();

    let mut embedding = c.benchmark_group("embed");
    embedding.sampling_mode(SamplingMode::Flat);
    embedding.throughput(Throughput::Bytes(big.module.len() as u64));
    embedding.bench_function(BenchmarkId::new("embed (in memory)", label(*size)), |b| {
        b.iter(|| black_box(embed(black_box(&big.module), &definitions).expect("embeds")))
    });
    let out = dir.path().join("out.wasm");
    embedding.bench_function(
        BenchmarkId::new("embed_file (file to file)", label(*size)),
        |b| b.iter(|| black_box(embed_file(&big.module_file, &out, &definitions).expect("embeds"))),
    );
    embedding.finish();
}

criterion_group! {
    name = benches;
    // Short runs: these figures are for spotting regressions, not for the peer comparison.
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
