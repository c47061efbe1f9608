#!/usr/bin/env bash
# Checks that the quick start's build (`cargo build --bins --workspace`) and the tests' build
# (`cargo test --workspace`) compile every dependency the same way (same features, same
# profile), so that running one after the other compiles the wasm runtime once. A dev-dependency
# that turns on a feature of a shared crate breaks this silently: the second build recompiles
# that crate and everything above it. Reads cargo's unit graph; builds nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The unit graph is an unstable cargo output; RUSTC_BOOTSTRAP lets a stable cargo print it.
RUSTC_BOOTSTRAP=1 cargo build --quiet --bins --workspace -Z unstable-options --unit-graph >"$work/build.json"
RUSTC_BOOTSTRAP=1 cargo test --quiet --workspace --no-run -Z unstable-options --unit-graph >"$work/test.json"
python3 - "$work/build.json" "$work/test.json" <<'PY'
import json, sys
def units(path):
    graph = json.load(open(path))
    out = {}
    for u in graph["units"]:
        if u["pkg_id"].startswith("path+file://"):
            continue  # the workspace's own crates differ by design (test harnesses)
        key = (u["pkg_id"].split("#")[-1], u["target"]["name"], u["mode"], u.get("platform"))
        out[key] = (sorted(u["features"]), u["profile"]["opt_level"], u["profile"].get("debuginfo"))
    return out
build, test = units(sys.argv[1]), units(sys.argv[2])
differ = [(k, build[k], test[k]) for k in sorted(build.keys() & test.keys()) if build[k] != test[k]]
for key, b, t in differ:
    print(f"{key[0]} ({key[1]}, {key[2]}): build {b} vs test {t}", file=sys.stderr)
if differ:
    sys.exit(f"shared-build: {len(differ)} dependency unit(s) compile differently in the quick start and the tests")
print(f"shared-build: the quick start's {len(build)} dependency units are all reused by the tests")
PY
