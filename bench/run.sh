#!/usr/bin/env bash
# The whole benchmark harness, one command (`just bench`): installs the peers and inputs
# (bench/prepare.sh), runs every figure once, ours and the peer alternating, and writes
# docs/BENCHMARKS.md (medians, spreads, ratios, targets, load averages, the machine).
#   bench/embed.sh   embed + read definitions  vs wasm-tools, cp       (esbuild.wasm, 13.9 MB)
#   bench/oci.sh     push + pull of a 20 MB artifact vs oras, skopeo  (local docker-registry)
#   bench/serve.sh   GET/list/put through the example controller, c=1 and c=16, vs `wasmtime run` per request
#   bench/access.sh  what access control costs per request (open, token + 1 or 100 rules, TLS)
#   bench/signatures.sh  cupd start with --require-signatures vs without (cost per controller)
#   bench/components.sh  a component vs the same logic as a p1 command; Python and JS controllers
#   bench/start.sh   cupd start → /readyz with 5 controllers, code cache cold vs warm; RSS with 20
#   cargo bench -p cup-runtime --bench invoke   per-invocation cost inside the runtime
#   cargo bench -p cup-sections -p cup-model      criterion: section scan, digest streaming,
#                                                 embedding, canonical JSON (figure "micro")
#   bench/build.sh   incremental debug build of the workspace
# Every server is started on 127.0.0.1 by the script that uses it and stopped on exit.
# BENCH_SKIP="build invoke" skips figures by name; BENCH_DOC=path writes the report elsewhere.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/bench/work"
mkdir -p "$work"
cd "$root"

t=$(date +%s)
echo "==> prepare (peers, inputs, release builds)" >&2
bench/prepare.sh
export BENCH_PREPARED=1
export BENCH_ROUNDS="${BENCH_ROUNDS:-5}"
echo "    $(( $(date +%s) - t )) s" >&2

skip=" ${BENCH_SKIP:-} "
: >"$work/timings.txt"
figure() {
  local name=$1; shift
  if [[ $skip == *" $name "* ]]; then echo "==> $name: skipped" >&2; return; fi
  echo "==> $name (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  local t0; t0=$(date +%s)
  rm -f "$work/$name.md"
  if ! "$@"; then
    echo "    $name FAILED" >&2
    echo "$name failed: see the output of bench/run.sh" >"$work/$name.md"
  fi
  echo "$name $(( $(date +%s) - t0 ))" >>"$work/timings.txt"
}

t0=$(date +%s)
figure embed bench/embed.sh
figure oci bench/oci.sh
figure serve bench/serve.sh
figure access bench/access.sh
figure signatures bench/signatures.sh
figure components bench/components.sh
figure start bench/start.sh
invoke() {
  cargo bench --quiet -p cup-runtime --bench invoke -- --output-format bencher 2>/dev/null |
    grep -v '^$' | tee "$work/invoke.txt" >&2
}
figure invoke invoke
# Criterion micro-benchmarks of the hot functions (section scan, digest streaming, embedding,
# canonical JSON), one line per function in `cargo bench`'s bencher format.
micro() {
  cargo bench --quiet -p cup-sections --bench sections -p cup-model --bench canonical -- \
    --output-format bencher 2>/dev/null | grep '^test ' | tee "$work/micro.txt" >&2
}
figure micro micro
figure build bench/build.sh
echo "total $(( $(date +%s) - t0 ))" >>"$work/timings.txt"

python3 bench/report.py "$work" "${BENCH_DOC:-$root/docs/BENCHMARKS.md}"
echo "==> wrote ${BENCH_DOC:-docs/BENCHMARKS.md} ($(( $(date +%s) - t0 )) s of benchmarks)" >&2
