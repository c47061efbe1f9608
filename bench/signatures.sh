#!/usr/bin/env bash
# Figure: what verifying controller signatures costs at cupd start. N distinct packages of
# the example module (bench/lib.sh make_controllers), each signed in the local store with
# `cup controller sign --local`; a release cupd started over them BENCH_ROUNDS times without
# and with `--require-signatures --verify-key`, alternating, the code cache warm (so a load
# is reading the store, checking the package, the signature, and reading compiled code).
# Reported: time from exec to /readyz, and the controllers' load_ms from /status, medians;
# the difference divided by N is the cost per controller.
# Writes bench/work/signatures.md and prints it.   BENCH_ROUNDS (7), BENCH_CONTROLLERS (5)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ -z "${BENCH_PREPARED:-}" ]; then
  (cd "$root" && cargo build --quiet --release -p cupd -p cup-cli -p cup-embed)
  "$root/bench/install-bins.sh"
fi
n=${BENCH_CONTROLLERS:-5}
b="$work/signatures"
make_controllers "$n" "$b"
export CUP_SIGNING_PASSWORD=bench
"$bin/cup" controller keygen --prefix "$b/key" --force >/dev/null 2>&1
for f in "$b"/config/*.json; do
  image=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["spec"]["spec"]["image"])' "$f")
  "$bin/cup" --store "$b/store" controller sign "$image" --key "$b/key.key" --local >/dev/null
done
unset CUP_SIGNING_PASSWORD
trap cupd_stop EXIT
python3 - "$b" "$bin/cupd" "$n" "${BENCH_ROUNDS:-7}" <<'PY'
import json, os, socket, statistics, subprocess, sys, time, urllib.request
b, cupd, n, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
os.makedirs(f"{b}/source", exist_ok=True)
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def start(extra):
    p = port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([cupd, "serve", "-api-address", f"127.0.0.1:{p}", "-api-resources", f"{b}/config",
                             "-api-local-path", f"{b}/source", "--store", f"{b}/store", "--code-cache", f"{b}/code"] + extra,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{p}/readyz") as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit("cupd exited")
        time.sleep(0.002)
    ready = (time.perf_counter() - t0) * 1000
    status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{p}/status"))
    proc.terminate(); proc.wait()
    states = {c["state"] for c in status["controllers"]}
    assert states == {"loaded"}, status
    if extra:
        assert all(c.get("signature") for c in status["controllers"]), status
    return ready, sum(c["load_ms"] for c in status["controllers"])
setups = {"signatures not checked": [], "--require-signatures": ["--require-signatures", "--verify-key", f"{b}/key.pub"]}
start([])  # warms the code cache
results = {k: [] for k in setups}
for _ in range(rounds):
    for name, extra in setups.items():
        results[name].append(start(extra))
med = statistics.median
base_ready = med(r[0] for r in results["signatures not checked"])
base_load = med(r[1] for r in results["signatures not checked"])
load = open("/proc/loadavg").read().split()[0]
lines = [f"{n} controllers, code cache warm, {rounds} alternating starts per setup, medians; load {load}.", "",
         "| setup | start → /readyz (ms) | min–max | Σ load_ms | per controller vs off (ms) |", "|---|---|---|---|---|"]
for name in setups:
    rs = results[name]
    ready = med(r[0] for r in rs); total = med(r[1] for r in rs)
    lines.append(f"| {name} | {ready:.1f} | {min(r[0] for r in rs):.1f}–{max(r[0] for r in rs):.1f} | {total:.1f} | "
                 f"{(total - base_load) / n:+.2f} |")
text = "\n".join(lines) + "\n"
open(f"{b}/signatures.md", "w").write(text)
print(text)
PY
cp "$b/signatures.md" "$work/signatures.md"
