#!/usr/bin/env bash
# Figure: what a component controller costs against a preview 1 command, and what Python
# and JavaScript controllers cost. A release cupd per controller, each serving GET of one
# resource, driven in turn by wrk at c=1 and c=16 (keep-alive), round by round:
#   flipt command     examples/flipt built for wasm32-wasip1 (the p1 command)
#   flipt component   the same source built for wasm32-wasip2 as a component
#   python-notes      examples/python-notes (componentize-py)
#   js-redirects      examples/js-redirects (componentize-js)
# Besides: each package's size, its load time with an empty code cache (compile) and with a
# warm one (cupd restarted), and the size of its compiled code in the cache.
# Writes bench/work/components.md (samples in bench/work/components/components.json) and
# prints it.   BENCH_ROUNDS (3), BENCH_DURATION seconds per wrk run (3)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ -z "${BENCH_PREPARED:-}" ]; then
  (cd "$root" && cargo build --quiet --release -p cupd -p cup-cli -p cup-embed)
  "$root/bench/install-bins.sh"
fi
b="$work/components"
rm -rf "$b" && mkdir -p "$b/packages"

# The four packages, each built by its own toolchain and embedded by the release cup-embed.
flipt="$root/examples/flipt"
cargo build --quiet --release --target wasm32-wasip1 --manifest-path "$flipt/Cargo.toml"
cargo rustc --quiet --release --target wasm32-wasip2 --lib --crate-type cdylib \
  --manifest-path "$flipt/Cargo.toml"
"$bin/cup-embed" -o "$b/packages/flipt-command.wasm" "$flipt"/defs/*.json \
  "$flipt/target/wasm32-wasip1/release/flipt.wasm" >/dev/null
"$bin/cup-embed" -o "$b/packages/flipt-component.wasm" "$flipt"/defs/*.json \
  "$flipt/target/wasm32-wasip2/release/flipt.wasm" >/dev/null
for example in python-notes:notes js-redirects:redirects; do
  dir=${example%%:*} name=${example##*:}
  CUP="$bin/cup" CUP_EMBED="$bin/cup-embed" "$root/examples/$dir/build.sh" >"$b/build-$dir.log" 2>&1 ||
    { cat "$b/build-$dir.log" >&2; exit 1; }
  cp "$root/examples/$dir/config/$name.wasm" "$b/packages/$dir.wasm"
done

python3 "$root/bench/components.py" "$b" "$bin/cupd" "$root/bench/wrk.lua" "$root"
cp "$b/components.md" "$work/components.md"
cat "$work/components.md"
