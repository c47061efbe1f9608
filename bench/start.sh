#!/usr/bin/env bash
# Figures: cupd start → /readyz with 5 controllers, compiled-code cache cold vs warm; and
# cupd's memory (VmRSS) with 20 controllers loaded.
# The controllers are the example module made distinct per controller (custom section
# `bench.variant` + its own API group, see make_controllers in lib.sh), embedded with
# cup-embed and loaded by digest from a local OCI store.
# Writes bench/work/start.md (and start.json) and prints it.
#   BENCH_START_ROUNDS (5): cold/warm rounds with 5 controllers; 20 controllers: 1 cold, 3 warm.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$root/bench/prepare.sh"
"$root/bench/install-bins.sh"

b="$work/start"
rm -rf "$b" && mkdir -p "$b/scratch"
cp -R "$root/examples/flipt/repo" "$b/source"
make_controllers 5 "$b/five"
make_controllers 20 "$b/twenty"
groups() { python3 -c 'import json,sys; print(json.dumps([f"flipt{i}.io" for i in range(1, int(sys.argv[1]) + 1)]))' "$1"; }

# start.py stops every cupd it starts (SIGTERM, then SIGKILL), also when it fails.
python3 "$root/bench/start.py" "$(cat <<EOF
{"cupd": "$bin/cupd", "scratch": "$b/scratch", "out": "$b/start",
 "sets": [
  {"name": "five", "config": "$b/five/config", "store": "$b/five/store", "source": "$b/source",
   "groups": $(groups 5), "rounds": ${BENCH_START_ROUNDS:-5}, "cold_rounds": ${BENCH_START_ROUNDS:-5}},
  {"name": "twenty", "config": "$b/twenty/config", "store": "$b/twenty/store", "source": "$b/source",
   "groups": $(groups 20), "rounds": 3, "cold_rounds": 1}
 ]}
EOF
)"
cp "$b/start.md" "$work/start.md"
