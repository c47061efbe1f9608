#!/usr/bin/env bash
# Prints what the built component imports and exports, as WIT, with `jco wit` (the pinned
# @bytecodealliance/jco of tools/jco/package-lock.json, installed into target/jco), then
# cup's own view of the package. Run ./build.sh first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

die() { printf 'inspect.sh: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || die "node is not on PATH (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm is not on PATH (Debian: apt-get install npm)"
[[ -f config/notes.wasm ]] || die "config/notes.wasm is missing: run ./build.sh first"
cup=${CUP:-$(command -v cup || true)}

if ! cmp -s tools/jco/package-lock.json target/jco/package-lock.json 2>/dev/null ||
  [[ ! -x target/jco/node_modules/.bin/jco ]]; then
  rm -rf target/jco
  mkdir -p target/jco
  cp tools/jco/package.json tools/jco/package-lock.json target/jco/
  (cd target/jco && npm ci --no-audit --no-fund --silent)
fi

target/jco/node_modules/.bin/jco wit config/notes.wasm
if [[ -n $cup ]]; then
  echo
  "$cup" controller inspect config/notes.wasm
fi
