# Shared helpers of the bench scripts (sourced, not run).
#   root, work, bin, venv: paths; loadavg; free_port; ready PORT; cupd_serve/cupd_start/cupd_stop;
#   make_controllers N OUTDIR: N distinct embedded flipt packages in a store + config dir.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$root/bench/work"
bin="$root/target/bench-bin"  # installed copies: see install-bins.sh
venv="$root/.venv"
tools="$root/target/bench-tools"
wasmtime_cli="$tools/bin/wasmtime"
flipt_plain="$root/examples/flipt/target/wasm32-wasip1/release/flipt.wasm"
mkdir -p "$work"

# The 1-minute load average (what else was running while a figure was taken).
loadavg() { cut -d' ' -f1 /proc/loadavg; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# 0 when GET /readyz on 127.0.0.1:PORT answers 200.
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ]; }

# cupd_serve PORT LOG ARGS...: starts a release `cupd serve` on 127.0.0.1:PORT with ARGS and
# waits for /readyz; sets CUPD_PID. Fails (with the log) if it exits.
CUPD_PID=''
cupd_serve() {
  local port=$1 log=$2; shift 2
  "$bin/cupd" serve -api-address "127.0.0.1:$port" "$@" >"$log" 2>&1 &
  CUPD_PID=$!
  for _ in $(seq 1 1200); do
    if ! kill -0 "$CUPD_PID" 2>/dev/null; then
      echo "cupd exited during start-up:" >&2; tail -20 "$log" >&2; CUPD_PID=''; return 1
    fi
    ready "$port" && return 0
    sleep 0.05
  done
  echo "cupd not ready after 60 s" >&2; return 1
}
# cupd_start PORT CONFIG_DIR SOURCE_DIR STORE CODE_CACHE LOG: cupd_serve on a local source.
cupd_start() {
  cupd_serve "$1" "$6" -api-resources "$2" -api-local-path "$3" --store "$4" --code-cache "$5"
}
cupd_stop() {
  if [ -n "$CUPD_PID" ]; then
    kill "$CUPD_PID" 2>/dev/null || true
    wait "$CUPD_PID" 2>/dev/null || true
    CUPD_PID=''
  fi
}

# make_controllers N OUTDIR: N packages of the example module, each made distinct (so each
# has its own digest and its own compiled code) by a custom section `bench.variant` and by
# its own API group (fliptI.io, so the routes do not collide), embedded with cup-embed,
# stored with `cup controller add` in OUTDIR/store, and one Controller per package in
# OUTDIR/config naming only the image digest (as examples/quickstart.sh does).
make_controllers() {
  local n=$1 out=$2 i digest
  rm -rf "$out" && mkdir -p "$out/config" "$out/modules" "$out/defs"
  for i in $(seq 1 "$n"); do
    python3 - "$flipt_plain" "$out/modules/plain$i.wasm" "$i" "$root/examples/flipt/defs" "$out/defs/$i" <<'PY'
import json, os, sys
src, dst, i, defs_in, defs_out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n: return bytes(out)
name = b"bench.variant"
payload = leb(len(name)) + name + f"variant {i}".encode()
open(dst, "wb").write(open(src, "rb").read() + b"\x00" + leb(len(payload)) + payload)
os.makedirs(defs_out, exist_ok=True)
group = f"flipt{i}.io"
for f in sorted(os.listdir(defs_in)):
    d = json.load(open(os.path.join(defs_in, f)))
    d["metadata"]["name"] = f'{d["names"]["plural"]}.{group}'
    d["spec"]["group"] = group
    for schema in d["spec"]["versions"].values():
        schema["properties"]["apiVersion"]["enum"] = [f"{group}/v1alpha1"]
    json.dump(d, open(os.path.join(defs_out, f), "w"))
PY
    "$bin/cup-embed" -o "$out/modules/flipt$i.wasm" "$out/defs/$i"/*.json "$out/modules/plain$i.wasm" >/dev/null
    digest=$("$bin/cup" --store "$out/store" controller add "$out/modules/flipt$i.wasm" --tag "flipt$i:bench")
    printf '{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"flipt%s"},"spec":{"type":"wasm","spec":{"image":"localhost/cup/flipt%s@%s"}}}\n' \
      "$i" "$i" "$digest" >"$out/config/flipt$i.json"
  done
}
