#!/usr/bin/env bash
# Figure: the team's own build cost. Incremental debug builds after touching
# crates/cup-sections/src/lib.rs (a leaf library most crates depend on), in the shared
# target directory: `cargo build --workspace` and `cargo test --workspace --no-run` (the
# edit-test loop), alternating. No cold build here (minutes on 2 cores): cold
# figures measured once are quoted as reference in docs/BENCHMARKS.md.
# Writes bench/work/build.md (and build.json) and prints it.
#   BENCH_BUILD_RUNS (2)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$root"
runs="${BENCH_BUILD_RUNS:-2}"
b="$work/build"
rm -rf "$b" && mkdir -p "$b"
now() { date +%s.%N; }
since() { python3 -c "import sys,time; print(round(time.time() - float(sys.argv[1]), 2))" "$1"; }

# Both builds once first, untimed: whatever other people changed since the last build is
# compiled here, so the timed runs see only the touch.
t=$(now)
if ! { cargo build --workspace && cargo test --workspace --no-run; } >"$b/catch-up.log" 2>&1; then
  echo "the workspace does not build right now (someone is mid-edit?); see $b/catch-up.log" >&2
  printf '| incremental debug builds | — | — | — | the workspace did not build at the time | — |\n' >"$work/build.md"
  exit 0
fi
echo "catch-up build: $(since "$t") s" >&2

: >"$b/runs.txt"
for i in $(seq 1 "$runs"); do
  for kind in build test; do
    load=$(loadavg)
    touch crates/cup-sections/src/lib.rs
    t=$(now)
    if [ $kind = build ]; then
      cargo build --workspace >"$b/$kind$i.log" 2>&1
    else
      cargo test --workspace --no-run >"$b/$kind$i.log" 2>&1
    fi
    wall=$(since "$t")
    crates=$(grep -c '^ *Compiling ' "$b/$kind$i.log" || true)
    blocked=$(grep -c 'Blocking waiting for file lock' "$b/$kind$i.log" || true)
    echo "$kind $wall $crates $blocked $load" >>"$b/runs.txt"
    echo "$kind run $i: ${wall}s, $crates crates recompiled, blocked=$blocked, load $load" >&2
  done
done

python3 - "$b/runs.txt" "$work/build.md" <<'PY'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
names = {"build": "`cargo build --workspace`", "test": "`cargo test --workspace --no-run` (all test binaries)"}
out, raw = [], {}
for kind in ("build", "test"):
    rs = [r for r in rows if r[0] == kind]
    walls = [float(r[1]) for r in rs]
    crates = sorted({int(r[2]) for r in rs})
    blocked = sum(int(r[3]) for r in rs)
    loads = [float(r[4]) for r in rs]
    raw[kind] = {"walls_s": walls, "crates": crates, "blocked": blocked, "loads": loads}
    out.append(f"| {names[kind]}, debug, after `touch crates/cup-sections/src/lib.rs` | {len(walls)} | "
               f"**{statistics.median(walls):.1f} s** | {min(walls):.1f}–{max(walls):.1f} s | "
               f"{'/'.join(map(str, crates))} crates recompiled"
               + (f"; waited on another build's lock {blocked}×" if blocked else "")
               + f" | {min(loads):.1f}–{max(loads):.1f} |")
json.dump(raw, open(sys.argv[1].replace("runs.txt", "build.json"), "w"))
text = "\n".join(out) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
