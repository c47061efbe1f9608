# Task runner for cup. `just --list` shows the recipes.

# Build the example Flipt controller for wasm32-wasip1 and embed its definitions.
example:
    cargo build --release --target wasm32-wasip1 --manifest-path examples/flipt/Cargo.toml --target-dir examples/flipt/target
    cargo run --quiet --release -p cup-embed -- -o target/flipt.wasm examples/flipt/defs/*.json examples/flipt/target/wasm32-wasip1/release/flipt.wasm
    cargo run --quiet --release -p cup-cli -- controller inspect target/flipt.wasm

# Run every test (the same command CI runs after installing prerequisites).
test:
    scripts/test.sh

# Install cup, cup-embed and cupd (release builds) into ~/.cargo/bin.
install:
    scripts/install.sh

# fmt + clippy, as CI expects them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# All benchmarks against their peers; rewrites docs/BENCHMARKS.md (~4 min; first run installs peers, ~10 min more).
bench:
    bench/run.sh

# Criterion micro-benchmarks of the hot functions: section scan, digest streaming, embedding,
# canonical JSON (about a minute; `just bench` runs them too).
microbench:
    cargo bench -p cup-sections --bench sections -p cup-model --bench canonical

# Fuzz one target (sections, oci_manifest, oci_compat_layer, resource_schema, config_dir);
# needs cargo-fuzz; stable toolchain via RUSTC_BOOTSTRAP. See fuzz/README.md.
fuzz target="sections" seconds="300":
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {{ if target == "config_dir" { "" } else { "--no-default-features" } }} {{target}} corpus/{{target}} seeds/{{target}} -- -max_total_time={{seconds}}

# (examples/quickstart.sh: wasm32-wasip1 build → cup-embed → local OCI store → cupd over a copy
# of examples/flipt/repo → cup definitions/get/apply/delete → the diff; KEEP=1 keeps the files.)
# The quick start: from the example controller's source to an applied change, in one command.
demo:
    examples/quickstart.sh

# The load run: 64 clients of mixed get/list/put/delete against a release cupd,
# local source for LOAD_DURATION (10m) then Git for LOAD_GIT_DURATION (3m), every write
# checked afterwards; writes bench/work/load.md. Example: LOAD_DURATION=60s just load
load:
    bench/load.sh
