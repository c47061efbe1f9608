#!/usr/bin/env bash
# Push and pull of a ~20 MB controller against a local registry (Debian docker-registry on
# 127.0.0.1), against the peers in the same run:
#   pull:  cup controller pull (fresh store)  vs  skopeo copy docker:// -> oci:DIR  vs  Python oras pull
#   push:  cup controller push (new repo)     vs  Python oras push (new repo)
# Input: esbuild.wasm (npm esbuild-wasm, 13.9 MB) padded with a 6 MiB custom section, with
# the example definitions embedded. Writes bench/work/oci.md (medians and ratios) and prints it.
# CUP_BASELINE=/path/to/an/older/cup adds its push and pull to the same runs (before/after
# figures measured under the same load).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/bench/work"
"$root/bench/prepare.sh"
"$root/bench/install-bins.sh"
bin="$root/target/bench-bin"  # installed copies: see install-bins.sh
runs="${BENCH_RUNS:-10}"
defs=("$root"/examples/flipt/defs/*.json)

for tool in /usr/bin/docker-registry skopeo; do
  command -v "$tool" >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry skopeo >/dev/null
  }
done
venv="$root/target/oras-venv"
if [ ! -f "$venv/.oras-0.2.43" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check oras==0.2.43
  touch "$venv/.oras-0.2.43"
fi

b="$work/oci"
rm -rf "$b" && mkdir -p "$b"
cd "$b"

# The input: a 6 MiB custom section appended to esbuild.wasm, then the definitions embedded.
python3 - "$work/esbuild.wasm" padded.wasm <<'PY'
import os, sys
def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n: return bytes(out)
name = b"bench.padding"
payload = leb(len(name)) + name + os.urandom(6 << 20)
open(sys.argv[2], "wb").write(open(sys.argv[1], "rb").read() + b"\x00" + leb(len(payload)) + payload)
PY
"$bin/cup-embed" -o ctl.wasm "${defs[@]}" padded.wasm >/dev/null
size=$(stat -c %s ctl.wasm)

# A registry on a free port, its own storage, quiet log.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > registry.yml <<YML
version: 0.1
log: { level: error }
storage:
  filesystem: { rootdirectory: $b/registry }
  delete: { enabled: true }
  cache: { blobdescriptor: inmemory }
http:
  addr: 127.0.0.1:$port
YML
/usr/bin/docker-registry serve registry.yml > registry.log 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null; wait $registry_pid 2>/dev/null || true' EXIT
host="127.0.0.1:$port"
for _ in $(seq 100); do curl -fs "http://$host/v2/" >/dev/null && break; sleep 0.05; done

cat > oras_push.py <<'PY'
import sys, oras.client
oras.client.OrasClient(hostname=sys.argv[1], insecure=True).push(target=sys.argv[2], files=["ctl.wasm:application/wasm"])
PY
cat > oras_pull.py <<'PY'
import sys, oras.client
oras.client.OrasClient(hostname=sys.argv[1], insecure=True).pull(target=sys.argv[2], outdir=sys.argv[3])
PY
py="$venv/bin/python"

# What every pull fetches: the same artifact, pushed once by cup.
"$bin/cup" --store "$b/seed" controller push ctl.wasm "$host/bench/ctl:v1" >/dev/null

# Pushes go to a new repository each run (a registry skips blobs already linked to the
# repository, so a fixed one would measure HEAD requests only). Commands are interleaved round
# by round (hyperfine runs all of one command, then the next), so load that comes and goes on
# a shared machine hits every command alike; push.json and pull.json have hyperfine's shape.
cat > interleave.py <<'PY'
import json, shutil, subprocess, sys, time
out, runs, clean = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
commands = json.loads(sys.stdin.read())  # name -> argv with {n} for the round number
times = {name: [] for name in commands}
for n in range(-2, runs):  # two warm-up rounds
    for name, argv in commands.items():
        for d in clean:
            shutil.rmtree(d, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run([a.replace("{n}", str(n + 2)) for a in argv], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if n >= 0:
            times[name].append(time.perf_counter() - start)
def median(xs):
    xs = sorted(xs); m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2
json.dump({"results": [{"command": k, "median": median(v), "times": v} for k, v in times.items()]}, open(out, "w"))
PY
push_cmds=$(python3 - "$bin/cup" "$py" "$host" "$b" "${CUP_BASELINE:-}" <<'PY'
import json, sys
cup, py, host, b, baseline = sys.argv[1:6]
c = {
    "cup controller push": [cup, "--store", f"{b}/pstore", "controller", "push", "ctl.wasm", f"{host}/bench/cup{{n}}:v1"],
    "oras push (Python)": [py, "oras_push.py", host, f"{host}/bench/oras{{n}}:v1"],
    "cup controller push (blobs present)": [cup, "--store", f"{b}/pstore", "controller", "push", "ctl.wasm", f"{host}/bench/ctl:v1"],
    # oras exists only as a Python package: what starting it costs before any request.
    "oras start-up floor (Python, import only)": [py, "-c", "import oras.client, oras.provider"],
}
if baseline:
    c["cup controller push (baseline)"] = [baseline, "--store", f"{b}/pstore", "controller", "push", "ctl.wasm", f"{host}/bench/base{{n}}:v1"]
print(json.dumps(c))
PY
)
pull_cmds=$(python3 - "$bin/cup" "$py" "$host" "$b" "${CUP_BASELINE:-}" <<'PY'
import json, sys
cup, py, host, b, baseline = sys.argv[1:6]
c = {
    "cup controller pull": [cup, "--store", f"{b}/store", "controller", "pull", f"{host}/bench/ctl:v1"],
    "skopeo copy to oci:": ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{host}/bench/ctl:v1", f"oci:{b}/skopeo:ctl"],
    "oras pull (Python)": [py, "oras_pull.py", host, f"{host}/bench/ctl:v1", f"{b}/oras-out"],
}
if baseline:
    c["cup controller pull (baseline)"] = [baseline, "--store", f"{b}/store", "controller", "pull", f"{host}/bench/ctl:v1"]
print(json.dumps(c))
PY
)
l0=$(cut -d' ' -f1 /proc/loadavg)
echo "$push_cmds" | python3 interleave.py push.json "$runs" ""
l1=$(cut -d' ' -f1 /proc/loadavg)
echo "$pull_cmds" | python3 interleave.py pull.json "$runs" "$b/store $b/skopeo $b/oras-out"
l2=$(cut -d' ' -f1 /proc/loadavg)

# Raw hashing speed of the machine (sha256 of the artifact, which cup does while streaming).
hash_ms=$(python3 - ctl.wasm <<'PY'
import hashlib, sys, time
data = open(sys.argv[1], "rb").read()
t = time.perf_counter(); hashlib.sha256(data).hexdigest(); print((time.perf_counter() - t) * 1000)
PY
)

python3 - "$size" "$hash_ms" "$l0" "$l1" "$l2" <<'PY'
import json, os, sys, platform
size = int(sys.argv[1]); hash_ms = float(sys.argv[2])
l = [float(x) for x in sys.argv[3:6]]
loadr = {"push": f"{min(l[0], l[1]):.1f}–{max(l[0], l[1]):.1f}", "pull": f"{min(l[1], l[2]):.1f}–{max(l[1], l[2]):.1f}"}
def load(name):
    return {r["command"]: r for r in json.load(open(name))["results"]}
def ms(r): return r["median"] * 1000
def spread(r): return (max(r["times"]) - min(r["times"])) * 1000
cpu = open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()
lines = [f"Input: esbuild.wasm (npm esbuild-wasm) + a 6 MiB custom section + the example definitions: {size:,} bytes. "
         f"Registry: Debian docker-registry 2.8 on 127.0.0.1. Machine: {os.cpu_count()} cores, {platform.machine()}, {cpu}.",
         "", "| figure | command | median ms | min–max spread ms | MB/s | ratio | load |", "|---|---|---|---|---|---|---|"]
for fig, name, ours in (("push", "push.json", "cup controller push"), ("pull", "pull.json", "cup controller pull")):
    res = load(name); base = ms(res[ours])
    for cmd, r in res.items():
        if cmd == ours: ratio = "1.00"
        elif "floor" in cmd: ratio = "floor: the interpreter and oras' import, no request"
        elif cmd.endswith("(baseline)"): ratio = f"baseline: {ms(r)/base:.2f}× the time of this build"
        elif cmd.startswith("cup"): ratio = f"{base/ms(r):.2f}× faster than a first push (HEADs only)"
        else: ratio = f"cup is {ms(r)/base:.2f}× faster" if ms(r) > base else f"cup takes {base/ms(r):.2f}× as long"
        mbs = "—" if "floor" in cmd else f"{size / ms(r) / 1000:.0f}"
        lines.append(f"| {fig} | {cmd} | {ms(r):.1f} | {spread(r):.1f} | {mbs} | {ratio} | {loadr[fig]} |")
push, pull = load("push.json"), load("pull.json")
r_push = ms(push["oras push (Python)"]) / ms(push["cup controller push"])
net = ms(push["oras push (Python)"]) - ms(push["oras start-up floor (Python, import only)"])
r_net = net / ms(push["cup controller push"])
r_pull = ms(pull["skopeo copy to oci:"]) / ms(pull["cup controller pull"])
lines += ["", f"Targets: push {r_net:.2f}× faster than oras net of its start-up (oras {net:.1f} ms without it; "
          f"faster {'✓' if r_net > 1 else '✗'}; whole process {r_push:.2f}×, reported); "
          f"pull {r_pull:.2f}× faster than skopeo (≥ 1.5× {'✓' if r_pull >= 1.5 else '✗'})."]
lines += ["", f"sha256 of the artifact in Python hashlib (OpenSSL) on this machine: {hash_ms:.1f} ms ({size / hash_ms / 1000:.0f} MB/s)."]
out = "\n".join(lines) + "\n"
open("../oci.md", "w").write(out)
print(out)
PY
