#!/usr/bin/env bash
# Embed and read-definitions figures on a real >= 10 MB module (esbuild.wasm, npm
# esbuild-wasm), against the peers in the same run:
#   embed:  cup-embed  vs  wasm-tools metadata add  vs  cp
#   read:   cup controller definitions  vs  wasm-tools metadata show  vs  wasm-tools validate
# Writes bench/work/embed.md (a table with medians and ratios) and prints it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/bench/work"
"$root/bench/prepare.sh"
bin="$root/target/release"
wt="$root/.venv/bin/wasm-tools"
defs=("$root"/examples/flipt/defs/*.json)
in="$work/esbuild.wasm"
runs="${BENCH_RUNS:-30}"

cd "$work"
"$bin/cup-embed" -o embedded.wasm "${defs[@]}" "$in" >/dev/null

hyperfine -N --warmup 5 --runs "$runs" --export-json embed.json \
  -n "cp" "cp $in out-cp.wasm" \
  -n "cup-embed" "$bin/cup-embed -o out-cup.wasm ${defs[*]} $in" \
  -n "wasm-tools metadata add" "$wt metadata add --name cup $in -o out-wt.wasm" >/dev/null

hyperfine -N --warmup 5 --runs "$runs" --export-json read.json \
  -n "cup controller definitions" "$bin/cup -o json controller definitions embedded.wasm" \
  -n "wasm-tools metadata show" "$wt metadata show embedded.wasm" \
  -n "wasm-tools validate" "$wt validate embedded.wasm" >/dev/null

python3 - "$in" <<'PY'
import json, os, sys, platform
size = os.path.getsize(sys.argv[1])
def load(name):
    return {r["command"]: r for r in json.load(open(name))["results"]}
def ms(r): return r["median"] * 1000
def spread(r): return (max(r["times"]) - min(r["times"])) * 1000
lines = [f"Input: esbuild.wasm from npm esbuild-wasm@0.28.2, {size:,} bytes. "
         f"Machine: {os.cpu_count()} cores, {platform.machine()}, {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}.",
         "", "| figure | command | median ms | min–max spread ms | ratio |", "|---|---|---|---|---|"]
embed = load("embed.json"); ours = embed["cup-embed"]
for name, r in embed.items():
    ratio = "1.00" if name == "cup-embed" else f"cup-embed is {ms(r)/ms(ours):.2f}× faster" if ms(r) > ms(ours) else f"cup-embed takes {ms(ours)/ms(r):.2f}× as long"
    lines.append(f"| embed | {name} | {ms(r):.2f} | {spread(r):.2f} | {ratio} |")
read = load("read.json"); ours = read["cup controller definitions"]
for name, r in read.items():
    ratio = "1.00" if r is ours else f"cup is {ms(r)/ms(ours):.1f}× faster"
    lines.append(f"| read definitions | {name} | {ms(r):.2f} | {spread(r):.2f} | {ratio} |")
out = "\n".join(lines) + "\n"
open("embed.md", "w").write(out)
print(out)
PY
