#!/usr/bin/env bash
# Installs cup, cup-embed and cupd (release builds) into cargo's bin directory
# (~/.cargo/bin), or under DIR/bin with `--root DIR`. Other arguments go to `cargo install`.
# The three share one target directory, so the wasm runtime is compiled once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/prerequisites.sh build
for crate in cup-cli cup-embed cupd; do
  cargo install --locked --path "crates/$crate" --target-dir target/install "$@"
done
