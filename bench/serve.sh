#!/usr/bin/env bash
# Figure: GET / list / put through the example Flipt controller, concurrency 1 and 16.
#   ours:  a release cupd over a temp copy of examples/flipt/repo, the controller loaded
#          from a local OCI store by digest (as examples/quickstart.sh), driven by wrk
#   peer:  the per-process model, a new `wasmtime run` (CLI 48) per request with the same
#          module, argv and tree; also with the module precompiled (.cwasm), its best case
#   plus:  the guest's own work alone, in-process on cupd's wasmtime (bench/guest-timer),
#          for the per-request overhead
# Writes bench/work/serve.md (and serve.json) and prints it.
#   BENCH_ROUNDS (3), BENCH_DURATION seconds per wrk run (3), BENCH_GUEST_N (300)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$root/bench/prepare.sh"

b="$work/serve"
rm -rf "$b" && mkdir -p "$b/config"
QUIET_PID=''
cleanup() {
  cupd_stop
  if [ -n "$QUIET_PID" ]; then kill "$QUIET_PID" 2>/dev/null || true; wait "$QUIET_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$b"

# The package: the example module with its definitions, in a local store, by digest.
"$bin/cup-embed" -o flipt.wasm "$root"/examples/flipt/defs/*.json "$flipt_plain" >/dev/null
digest=$("$bin/cup" --store "$b/store" controller add flipt.wasm --tag flipt:bench)
printf '{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"flipt"},"spec":{"type":"wasm","spec":{"image":"localhost/cup/flipt@%s"}}}\n' \
  "$digest" >config/flipt.json
cp -R "$root/examples/flipt/repo" source       # cupd's tree
cp -R "$root/examples/flipt/repo" peer-source  # the per-process peer's tree
"$wasmtime_cli" compile -C cache=n -o flipt.cwasm flipt.wasm
printf '[cache]\ndirectory = "%s"\n' "$b/wasmtime-cache" >wasmtime-cache.toml
cat >put.json <<'EOF'
{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{"namespace":"default","name":"bench"},"spec":{"name":"Bench","type":"BOOLEAN_FLAG_TYPE","description":"written by the benchmark","enabled":true}}
EOF

# A second cupd, identical but for the log filter: wasmtime-wasi wraps every WASI p1 call
# in an INFO-level tracing span, which cupd's default `info` filter records. Only get and
# list at c=1 go to it, to show what that costs.
port=$(free_port)
CUPD_LOG_LEVEL='info,wasmtime_wasi=warn' cupd_start "$port" "$b/config" "$b/source" "$b/store" "$b/code" "$b/cupd-quiet.log"
QUIET_PID=$CUPD_PID quiet_port=$port CUPD_PID=''
port=$(free_port)
cupd_start "$port" "$b/config" "$b/source" "$b/store" "$b/code" "$b/cupd.log"
echo "cupd ready on 127.0.0.1:$port (load $(loadavg))" >&2

python3 "$root/bench/serve.py" "$(cat <<EOF
{"port": $port, "quiet_port": $quiet_port, "rounds": ${BENCH_ROUNDS:-3}, "duration_s": ${BENCH_DURATION:-3},
 "peer_n1": 20, "peer_n16": 64,
 "wasm": "$b/flipt.wasm", "cwasm": "$b/flipt.cwasm", "wasmtime": "$wasmtime_cli",
 "wasmtime_cache": "$b/wasmtime-cache.toml", "peer_src": "$b/peer-source", "peer_lock": "$b/peer.lock",
 "put_body": "$b/put.json", "wrk_lua": "$root/bench/wrk.lua",
 "guest_cmd": ["$bin/cup-bench-guest-timer", "$b/flipt.wasm", "$b/peer-source", "$b/put.json", "${BENCH_GUEST_N:-300}"]}
EOF
)"
# What cupd said about loading it (compiled or from the cache), for the record.
grep -m1 'controller loaded' cupd.log >&2 || true
cp serve.md "$work/serve.md"
