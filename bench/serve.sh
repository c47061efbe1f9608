#!/usr/bin/env bash
# Figure: GET / list / put through the example Flipt controller, concurrency 1 and 16.
#   ours:  a release cupd over a temp copy of examples/flipt/repo, the controller loaded
#          from a local OCI store by digest (as examples/quickstart.sh), driven by wrk
#   peer:  the per-process model, a new `wasmtime run` (CLI 48) per request with the same
#          module, argv and tree; also with the module precompiled (.cwasm), its best case
#   plus:  the guest's own work alone, in-process on cupd's wasmtime (bench/guest-timer),
#          for the per-request overhead; and a second cupd with wasmtime-wasi's per-call
#          spans recorded, to show what cupd's default log filter saves
# Writes bench/work/serve.md (and serve.json) and prints it.
#   BENCH_ROUNDS (3), BENCH_DURATION seconds per wrk run (3), BENCH_GUEST_N (300)
# Before/after mode: BENCH_AB_BASE=/path/to/an/older/cupd runs only cupd, that binary against
# the current release build, alternating run by run (same setup, same load), and prints p50 /
# p99 / req/s per verb and concurrency (bench/work/serve-ab.md). Keep the old binary by
# copying target/release/cupd before rebuilding.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$root/bench/prepare.sh"
"$root/bench/install-bins.sh"

# The before/after mode works in a directory of its own, so it never wipes the results of the
# main run (serve/serve.json, which bench/report.py reads).
b="$work/serve${BENCH_AB_BASE:+-ab}"
rm -rf "$b" && mkdir -p "$b/config"
SPANS_PID=''
cleanup() {
  cupd_stop
  if [ -n "$SPANS_PID" ]; then kill "$SPANS_PID" 2>/dev/null || true; wait "$SPANS_PID" 2>/dev/null || true; fi
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
# in an INFO-level tracing span; cupd's default filter (`info` plus a built-in
# `wasmtime_wasi=warn`, crates/cupd/src/main.rs) leaves them out, and this one records them
# (`-log-level info,wasmtime_wasi=info`). Only get and list at c=1 go to it, alternating
# with the default cupd, to show what the default saves. (An earlier version started this
# second cupd with `info,wasmtime_wasi=warn`, i.e. the same filter as the default, and read
# its noise as a difference: run side by side, two identical cupds agree within 1 µs.)
port=$(free_port)
CUPD_LOG_LEVEL='info,wasmtime_wasi=info' cupd_start "$port" "$b/config" "$b/source" "$b/store" "$b/code" "$b/cupd-spans.log"
SPANS_PID=$CUPD_PID spans_port=$port CUPD_PID=''
port=$(free_port)
cupd_start "$port" "$b/config" "$b/source" "$b/store" "$b/code" "$b/cupd.log"
echo "cupd ready on 127.0.0.1:$port (load $(loadavg))" >&2
# The guest timer's put runs where cupd's puts run: the scratch directory cupd's log names.
GUEST_TIMER_SCRATCH=$(sed -n 's/.*scratch copies for writes dir=\([^ ]*\).*/\1/p' "$b/cupd.log" | head -1)
[ -n "$GUEST_TIMER_SCRATCH" ] || { echo "cupd's log names no scratch directory" >&2; exit 1; }
export GUEST_TIMER_SCRATCH

if [ -n "${BENCH_AB_BASE:-}" ]; then
  cupd_stop
  CUPD_PID=$SPANS_PID; cupd_stop; SPANS_PID=''
  cp -R "$root/examples/flipt/repo" source-base
  port_base=$(free_port)
  bin_saved=$bin
  bin=$(dirname "$BENCH_AB_BASE"); ab_base_name=$(basename "$BENCH_AB_BASE")
  [ "$ab_base_name" = cupd ] || { echo "BENCH_AB_BASE must name a file called cupd" >&2; exit 2; }
  cupd_start "$port_base" "$b/config" "$b/source-base" "$b/store" "$b/code-base" "$b/cupd-base.log"
  BASE_PID=$CUPD_PID; bin=$bin_saved
  port=$(free_port)
  cupd_start "$port" "$b/config" "$b/source" "$b/store" "$b/code" "$b/cupd.log"
  trap 'cupd_stop; CUPD_PID=$BASE_PID; cupd_stop' EXIT
  python3 - "$port_base" "$port" "${BENCH_ROUNDS:-3}" "${BENCH_DURATION:-3}" "$b/put.json" "$root/bench/wrk.lua" <<'PY' | tee "$work/serve-ab.md"
import json, os, statistics, subprocess, sys
base_port, new_port, rounds, dur, put_body, lua = sys.argv[1:7]
paths = {"get": "/apis/flipt.io/v1alpha1/namespaces/default/flags/new-login",
         "list": "/apis/flipt.io/v1alpha1/namespaces/default/flags",
         "put": "/apis/flipt.io/v1alpha1/namespaces/default/flags/bench"}
builds = [("before", base_port), ("after", new_port)]
def wrk(port, c, verb):
    env = dict(os.environ, WRK_METHOD="PUT" if verb == "put" else "GET",
               WRK_BODY=put_body if verb == "put" else "")
    out = subprocess.run(["wrk", f"-t{min(c, 2)}", f"-c{c}", f"-d{dur}s", "-s", lua,
                          f"http://127.0.0.1:{port}{paths[verb]}"],
                         env=env, check=True, capture_output=True, text=True).stdout
    r = json.loads(next(l for l in out.splitlines() if l.startswith("BENCH-JSON "))[11:])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["load"] = float(open("/proc/loadavg").read().split()[0])
    return r
res = {}
for rnd in range(int(rounds)):
    # Alternate which build goes first, so neither always runs on the warmer machine.
    order = builds if rnd % 2 == 0 else builds[::-1]
    for verb in paths:
        for c in (1, 16):
            for name, port in order:
                r = wrk(port, c, verb)
                res.setdefault((verb, c, name), []).append(r)
                print(f"round {rnd + 1} {verb} c={c} {name}: p50 {r['p50_us']} µs", file=sys.stderr)
med = statistics.median
print(f"{rounds} alternating rounds of wrk {dur} s per build, verb and concurrency; medians over rounds.\n")
print("| verb | c | build | p50 ms | p99 ms | req/s | p50 range ms | load |")
print("|---|---|---|---|---|---|---|---|")
for verb in paths:
    for c in (1, 16):
        for name, _ in builds:
            rs = res[(verb, c, name)]
            p50 = [r["p50_us"] / 1e3 for r in rs]
            load = [r["load"] for r in rs]
            print(f"| {verb} | {c} | {name} | {med(p50):.3f} | {med(r['p99_us'] for r in rs) / 1e3:.3f} | "
                  f"{med(r['rps'] for r in rs):,.0f} | {min(p50):.3f}–{max(p50):.3f} | {min(load):.1f}–{max(load):.1f} |")
PY
  exit 0
fi

python3 "$root/bench/serve.py" "$(cat <<EOF
{"port": $port, "spans_port": $spans_port, "rounds": ${BENCH_ROUNDS:-3}, "duration_s": ${BENCH_DURATION:-3},
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
