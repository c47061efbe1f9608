#!/usr/bin/env bash
# Embed and read-definitions figures on a real >= 10 MB module (esbuild.wasm, npm
# esbuild-wasm), against the peers in the same run:
#   embed:  cup-embed  vs  wasm-tools metadata add  vs  cp
#   read:   cup controller definitions  vs  wasm-tools metadata show  vs  wasm-tools validate
#           (and /bin/true: what starting any process costs on this machine right now)
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

l0=$(cut -d' ' -f1 /proc/loadavg)
hyperfine -N --warmup 5 --runs "$runs" --export-json embed.json \
  -n "cp" "cp $in out-cp.wasm" \
  -n "cup-embed" "$bin/cup-embed -o out-cup.wasm ${defs[*]} $in" \
  -n "wasm-tools metadata add" "$wt metadata add --name cup $in -o out-wt.wasm" >/dev/null

l1=$(cut -d' ' -f1 /proc/loadavg)
hyperfine -N --warmup 5 --runs "$runs" --export-json read.json \
  -n "cup controller definitions" "$bin/cup -o json controller definitions embedded.wasm" \
  -n "wasm-tools metadata show" "$wt metadata show embedded.wasm" \
  -n "wasm-tools validate" "$wt validate embedded.wasm" \
  -n "/bin/true (process start floor)" "/bin/true" >/dev/null

l2=$(cut -d' ' -f1 /proc/loadavg)

python3 - "$in" "$l0" "$l1" "$l2" <<'PY'
import json, os, sys, platform
size = os.path.getsize(sys.argv[1])
load_embed = f"{min(float(sys.argv[2]), float(sys.argv[3])):.1f}–{max(float(sys.argv[2]), float(sys.argv[3])):.1f}"
load_read = f"{min(float(sys.argv[3]), float(sys.argv[4])):.1f}–{max(float(sys.argv[3]), float(sys.argv[4])):.1f}"
def load(name):
    return {r["command"]: r for r in json.load(open(name))["results"]}
def ms(r): return r["median"] * 1000
def spread(r): return (max(r["times"]) - min(r["times"])) * 1000
lines = [f"Input: esbuild.wasm from npm esbuild-wasm@0.28.2, {size:,} bytes. "
         f"Machine: {os.cpu_count()} cores, {platform.machine()}, {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}.",
         "", "| figure | command | median ms | min–max spread ms | ratio | load |", "|---|---|---|---|---|---|"]
embed = load("embed.json"); ours = embed["cup-embed"]
for name, r in embed.items():
    ratio = "1.00" if name == "cup-embed" else f"cup-embed is {ms(r)/ms(ours):.2f}× faster" if ms(r) > ms(ours) else f"cup-embed takes {ms(ours)/ms(r):.2f}× as long"
    lines.append(f"| embed | {name} | {ms(r):.2f} | {spread(r):.2f} | {ratio} | {load_embed} |")
read = load("read.json"); ours = read["cup controller definitions"]
for name, r in read.items():
    ratio = ("1.00" if r is ours else "floor: any process on this machine now" if name.startswith("/bin/true")
             else f"cup is {ms(r)/ms(ours):.1f}× faster")
    lines.append(f"| read definitions | {name} | {ms(r):.2f} | {spread(r):.2f} | {ratio} | {load_read} |")
e = load("embed.json"); rd = load("read.json")
r_wt = ms(e["wasm-tools metadata add"]) / ms(e["cup-embed"]); r_cp = ms(e["cup-embed"]) / ms(e["cp"])
r_read = ms(rd["cup controller definitions"])
lines += ["", f"Targets: embed {r_wt:.2f}× faster than wasm-tools (≥ 3× {'✓' if r_wt >= 3 else '✗'}); "
          f"embed takes {r_cp:.2f}× `cp` (≤ 1.5× {'✓' if r_cp <= 1.5 else '✗'}); "
          f"read definitions {r_read:.2f} ms whole process (≤ 2 ms {'✓' if r_read <= 2 else '✗'}), "
          f"of which starting any process (`/bin/true`) takes {ms(rd['/bin/true (process start floor)']):.2f} ms here."]
out = "\n".join(lines) + "\n"
open("embed.md", "w").write(out)
print(out)
PY
