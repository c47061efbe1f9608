#!/usr/bin/env bash
# Builds the controller package config/notes.wasm from the Python sources in src/:
#   1. the unit tests of src/notes.py, with the system's python3 (no packages needed);
#   2. a venv in target/venv with the pinned, hash-checked tools of requirements.txt;
#   3. componentize-py: src/app.py against the contract in ../../wit (world cup-controller)
#      into target/notes.component.wasm;
#   4. cup-embed: defs/*.json into config/notes.wasm; `cup controller verify` checks it;
#   5. tests/test_component.py: config/notes.wasm itself, run by Wasmtime as cupd runs it.
# cup and cup-embed come from $CUP and $CUP_EMBED when set, else from PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

wit_dir=../../wit
world=cup-controller
venv=target/venv

# Everything missing is named before anything is built.
command -v python3 >/dev/null ||
  die "python3 is not on PATH (Debian: apt-get install python3 python3-venv)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  die "python3 is $(python3 -V 2>&1 | cut -d' ' -f2); componentize-py needs 3.10 or later"
python3 -c 'import venv, ensurepip' 2>/dev/null ||
  die "python3 cannot create a venv with pip (Debian: apt-get install python3-venv)"
cup=${CUP:-$(command -v cup || true)}
cup_embed=${CUP_EMBED:-$(command -v cup-embed || true)}
[[ -n $cup && -x $cup ]] ||
  die "cup not found: set CUP or put it on PATH (from a cup checkout: scripts/install.sh)"
[[ -n $cup_embed && -x $cup_embed ]] ||
  die "cup-embed not found: set CUP_EMBED or put it on PATH (from a cup checkout: scripts/install.sh)"
[[ -f $wit_dir/controller.wit ]] || die "$wit_dir/controller.wit is missing: build.sh runs inside a cup checkout"

step "unit tests (python3 $(python3 -V 2>&1 | cut -d' ' -f2))"
env -u NOTES_COMPONENT python3 -m unittest discover -s tests

# The venv is made again whenever requirements.txt or the python3 it comes from changes.
stamp="$(sha256sum requirements.txt | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version)')"
if [[ ! -x $venv/bin/python || "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]]; then
  step "venv $venv (requirements.txt)"
  t=$(now)
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-hashes --no-deps --only-binary=:all: -r requirements.txt
  printf '%s' "$stamp" >"$venv/.stamp"
  printf 'venv: %s\n' "$(since "$t")" >&2
fi

step "componentize-py ($("$venv/bin/componentize-py" --version | cut -d' ' -f2)): src/app.py -> target/notes.component.wasm"
t=$(now)
# componentize-py adds the site-packages of $VIRTUAL_ENV, or failing that of the system's
# Python, to the component's module path. An empty one keeps the build to src/ and
# componentize-py's own standard library, whatever is installed on the machine.
mkdir -p target/no-site-packages/lib/site-packages
VIRTUAL_ENV="$PWD/target/no-site-packages" "$venv/bin/componentize-py" -d "$wit_dir" -w "$world" \
  componentize -p src app -o target/notes.component.wasm.tmp
mv target/notes.component.wasm.tmp target/notes.component.wasm
printf 'componentize: %s, %s bytes\n' "$(since "$t")" "$(stat -c %s target/notes.component.wasm)" >&2

step "cup-embed defs/*.json -> config/notes.wasm"
"$cup_embed" -o config/notes.wasm defs/*.json target/notes.component.wasm
"$cup" controller verify config/notes.wasm

step "component tests (Wasmtime $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("wasmtime"))'), config/notes.wasm)"
NOTES_COMPONENT=config/notes.wasm "$venv/bin/python" -m unittest discover -s tests -p 'test_component.py'

printf '\nbuilt config/notes.wasm (%s bytes)\n' "$(stat -c %s config/notes.wasm)" >&2
