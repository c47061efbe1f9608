#!/usr/bin/env bash
# The quick start, end to end on this machine (no registry, no network):
#   the example Flipt controller's source → wasm32-wasip1 module → definitions embedded
#   (cup-embed) → a local OCI layout store (cup controller add) → signed (cup controller
#   sign) → cupd, requiring signatures, verifies and loads it by digest
#   and serves a copy of examples/flipt/repo → cup definitions / get / apply / delete → the
#   change in the files.
# Run it with `just demo`, or directly. KEEP=1 keeps the work directory for a look around.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [ -t 1 ]; then BOLD=$'\033[1m' DIM=$'\033[2m' OFF=$'\033[0m'; else BOLD='' DIM='' OFF=''; fi
step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$OFF"; }
# Prints a command the way a user would type it (program name without its directory),
# then runs it.
show() {
  local shown=("${1##*/}" "${@:2}")
  printf '%s$ %s%s\n' "$DIM" "${shown[*]}" "$OFF"
  "$@"
}
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

# A C compiler, pkg-config, OpenSSL's headers, git, the wasm32-wasip1 target: installed on
# Debian as root, otherwise named with the command to run, before anything is built.
scripts/prerequisites.sh build

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cup-quickstart.XXXXXX")
CUPD_PID=''
cleanup() {
  local status=$?
  if [ -n "$CUPD_PID" ] && kill -0 "$CUPD_PID" 2>/dev/null; then
    kill "$CUPD_PID" 2>/dev/null || true
    wait "$CUPD_PID" 2>/dev/null || true
  fi
  if [ $status -ne 0 ] && [ -s "$WORK/cupd.log" ]; then
    printf '\n--- last lines of the cupd log ---\n' >&2
    # (Without backtrace frames, which RUST_BACKTRACE may add.)
    grep -vE '^[[:space:]]+([0-9]+: |at )' "$WORK/cupd.log" | tail -n 20 >&2 || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    printf '\nkept %s\n' "$WORK"
  else
    rm -rf "$WORK"
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "Building cup, cup-embed and cupd"
# The same command the end-to-end tests use, so both share one build.
cargo build --quiet --bins --workspace
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

step "Building the example controller for wasm32-wasip1"
cargo build --quiet --release --target wasm32-wasip1 \
  --manifest-path examples/flipt/Cargo.toml --target-dir examples/flipt/target
MODULE=examples/flipt/target/wasm32-wasip1/release/flipt.wasm

step "Embedding its ResourceDefinitions into the module"
show "$BIN/cup-embed" -o "$WORK/flipt.wasm" examples/flipt/defs/*.json "$MODULE"
show "$BIN/cup" controller definitions "$WORK/flipt.wasm"

step "Storing it in a local OCI image layout (no registry needed)"
STORE="$WORK/store"
printf '%s$ cup --store %s controller add %s --tag flipt:quickstart%s\n' \
  "$DIM" "$STORE" "$WORK/flipt.wasm" "$OFF"
DIGEST=$("$BIN/cup" --store "$STORE" controller add "$WORK/flipt.wasm" --tag flipt:quickstart)
echo "$DIGEST"
IMAGE="localhost/cup/flipt@$DIGEST"

step "Signing it (cosign's format), so cupd can require that it runs only signed code"
# A throwaway key for the demo; a real one is made once and its password kept elsewhere.
export CUP_SIGNING_PASSWORD=quickstart
printf '%s$ cup controller keygen --prefix %s%s\n' "$DIM" "$WORK/cosign" "$OFF"
"$BIN/cup" controller keygen --prefix "$WORK/cosign"
printf '%s$ cup --store %s controller sign %s --key %s --local%s\n' \
  "$DIM" "$STORE" "$IMAGE" "$WORK/cosign.key" "$OFF"
"$BIN/cup" --store "$STORE" controller sign "$IMAGE" --key "$WORK/cosign.key" --local
unset CUP_SIGNING_PASSWORD

step "Configuring cupd: one Controller, by digest (its definitions come from the module)"
mkdir -p "$WORK/config"
cat >"$WORK/config/flipt.json" <<EOF
{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"flipt"},"spec":{"type":"wasm","spec":{"image":"$IMAGE"}}}
EOF
cat "$WORK/config/flipt.json"

# The source tree cupd serves: a copy, so the example stays pristine and the diff shows
# exactly what the API did.
cp -R examples/flipt/repo "$WORK/source"

# A loopback port nobody answers on. Another process may take it before cupd binds it,
# so a start that fails is retried on another port.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local candidate
  for _ in $(seq 1 50); do
    candidate=$((20000 + RANDOM % 40000))
    if ! port_in_use "$candidate"; then echo "$candidate"; return 0; fi
  done
  die "no free port found"
}

# /readyz answers 200 once every controller is loaded (or has failed).
# (A subshell, so a refused connection cannot end the script.)
readyz() (
  exec 3<>"/dev/tcp/127.0.0.1/$PORT" || exit 1
  printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  status=''
  IFS= read -r status <&3 || true
  [[ $status == *" 200"* ]]
)

# Starts cupd on $PORT; succeeds once it is ready, fails if it exits first.
start_cupd() {
  "$BIN/cupd" serve --store "$STORE" -api-resources "$WORK/config" \
    -api-local-path "$WORK/source" -api-address "127.0.0.1:$PORT" \
    --require-signatures --verify-key "$WORK/cosign.pub" >"$WORK/cupd.log" 2>&1 &
  CUPD_PID=$!
  for _ in $(seq 1 300); do
    kill -0 "$CUPD_PID" 2>/dev/null || { wait "$CUPD_PID" 2>/dev/null || true; CUPD_PID=''; return 1; }
    if readyz 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "cupd was not ready after 30 s"
}

step "Starting cupd over a copy of examples/flipt/repo"
started=''
for _ in 1 2 3; do
  PORT=$(free_port)
  printf '%s$ cupd serve --store %s -api-resources %s -api-local-path %s -api-address 127.0.0.1:%s --require-signatures --verify-key %s%s\n' \
    "$DIM" "$STORE" "$WORK/config" "$WORK/source" "$PORT" "$WORK/cosign.pub" "$OFF"
  if start_cupd; then started=1; break; fi
  grep -q "in use" "$WORK/cupd.log" || die "cupd exited during start-up"
done
[ -n "$started" ] || die "cupd could not bind a port"
ADDRESS="http://127.0.0.1:$PORT"
echo "ready on $ADDRESS"

# -c names a config file that does not exist: the built-in default context is used, -a
# points it at this cupd, and nothing is written to ~/.config.
cup() { "$BIN/cup" -c "$WORK/cup-config.json" -a "$ADDRESS" "$@"; }
show_cup() { printf '%s$ cup %s%s\n' "$DIM" "$*" "$OFF"; cup "$@"; }

step "What the server serves"
show_cup definitions

step "The flags in namespace default (from features.yml)"
show_cup get flags

step "Applying a new flag"
cat >"$WORK/quick-start.json" <<'EOF'
{
  "apiVersion": "flipt.io/v1alpha1",
  "kind": "Flag",
  "metadata": {"namespace": "default", "name": "quick-start"},
  "spec": {
    "name": "Quick start",
    "type": "BOOLEAN_FLAG_TYPE",
    "description": "Added by examples/quickstart.sh",
    "enabled": true
  }
}
EOF
cat "$WORK/quick-start.json"
show_cup apply -f "$WORK/quick-start.json"
show_cup get flags
show_cup -o json get flag quick-start

step "Deleting a flag"
show_cup delete flag dark-mode
show_cup get flags

step "What changed on disk"
if command -v git >/dev/null; then
  # -w: the controller re-serialises the YAML (indentation); hide that, show the content.
  git --no-pager diff --no-index --no-color -w examples/flipt/repo "$WORK/source" || true
else
  diff -ruw examples/flipt/repo "$WORK/source" || true
fi

step "Done: stopping cupd"
