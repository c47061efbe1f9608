#!/usr/bin/env python3
"""Component controllers against a preview 1 command, and the Python and JavaScript
examples (see bench/components.sh, which builds the packages and calls this with the work
directory, the cupd binary, the wrk script and the repository root). Writes
components.json and components.md."""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

work, cupd, wrk_lua, root = sys.argv[1:5]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DURATION = int(os.environ.get("BENCH_DURATION", "3"))

NOTE = {"apiVersion": "notes.example.com/v1", "kind": "Note",
        "metadata": {"namespace": "default", "name": "bench"},
        "spec": {"title": "Bench", "tags": ["a"], "body": "text\n"}}
REDIRECTS = "/old /new 301  # name: bench\n"

# name, package, resource path, how to seed the source tree
SETUPS = [
    ("flipt command", "flipt-command.wasm",
     "/apis/flipt.io/v1alpha1/namespaces/default/flags/new-login", "flipt"),
    ("flipt component", "flipt-component.wasm",
     "/apis/flipt.io/v1alpha1/namespaces/default/flags/new-login", "flipt"),
    ("python-notes", "python-notes.wasm",
     "/apis/notes.example.com/v1/namespaces/default/notes/bench", "notes"),
    ("js-redirects", "js-redirects.wasm",
     "/apis/web.example.com/v1/namespaces/default/redirects/bench", "redirects"),
]


def slug(name):
    return name.replace(" ", "-")


def seed(kind, source):
    if kind == "flipt":
        shutil.copytree(os.path.join(root, "examples/flipt/repo"), source)
    elif kind == "notes":
        os.makedirs(source)
        # The controller writes the note itself: a put through a first cupd (below).
    else:
        os.makedirs(os.path.join(source, "default"))
        open(os.path.join(source, "default/_redirects"), "w").write(REDIRECTS)


def config(name, package):
    d = os.path.join(work, "config", slug(name))
    os.makedirs(d)
    shutil.copy(os.path.join(work, "packages", package), os.path.join(d, "controller.wasm"))
    json.dump({"apiVersion": "cup.flipt.io/v1alpha1", "kind": "Controller",
               "metadata": {"name": slug(name)},
               "spec": {"type": "wasm", "spec": {"path": "controller.wasm"}}},
              open(os.path.join(d, "controller.json"), "w"))
    return d


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(name, config_dir, source, cache):
    port = free_port()
    log = open(os.path.join(work, f"cupd-{slug(name)}.log"), "a")
    t0 = time.perf_counter()
    proc = subprocess.Popen([cupd, "serve", "-api-address", f"127.0.0.1:{port}",
                             "-api-resources", config_dir, "-api-local-path", source,
                             "--store", os.path.join(work, "store"), "--code-cache", cache],
                            stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            sys.exit(f"cupd ({name}) exited: see {log.name}")
        try:
            with urllib.request.urlopen(url + "/readyz") as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.005)
    ready_ms = (time.perf_counter() - t0) * 1000
    status = json.load(urllib.request.urlopen(url + "/status"))
    [c] = status["controllers"]
    if c["state"] != "loaded":
        sys.exit(f"{name}: {c}")
    return proc, url, ready_ms, c


def stop(proc):
    proc.terminate()
    proc.wait()


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def loadavg():
    return float(open("/proc/loadavg").read().split()[0])


def wrk(url, path, conc):
    env = dict(os.environ, WRK_METHOD="GET", WRK_BODY="", WRK_AUTHORIZATION="")
    out = subprocess.run(["wrk", f"-t{min(conc, 2)}", f"-c{conc}", f"-d{DURATION}s", "-s", wrk_lua,
                          url + path], env=env, check=True, capture_output=True, text=True).stdout
    r = json.loads(next(l for l in out.splitlines() if l.startswith("BENCH-JSON "))[11:])
    errors = sum(r[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
    if errors:
        sys.exit(f"wrk {url}{path} c={conc}: {errors} errors: {r}")
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["load"] = loadavg()
    return r


servers, loads = {}, {}
try:
    for name, package, path, kind in SETUPS:
        source = os.path.join(work, "source", slug(name))
        seed(kind, source)
        cfg = config(name, package)
        cache = os.path.join(work, "code", slug(name))
        # Cold: an empty code cache (the package is compiled); warm: the same cupd command
        # again (the code is read from the cache).
        proc, url, cold_ready, cold = start(name, cfg, source, cache)
        stop(proc)
        proc, url, warm_ready, warm = start(name, cfg, source, cache)
        if kind == "notes":
            req = urllib.request.Request(url + path, data=json.dumps(NOTE).encode(), method="PUT",
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req).read()
        with urllib.request.urlopen(url + path) as r:
            assert r.status == 200, (name, r.status)
        servers[name] = (proc, url, path)
        loads[name] = {
            "package_bytes": os.path.getsize(os.path.join(work, "packages", package)),
            "abi": warm.get("abi"),
            "cold_load_ms": cold["load_ms"], "cold_ready_ms": cold_ready, "cold_cache": cold["cache"],
            "warm_load_ms": warm["load_ms"], "warm_ready_ms": warm_ready, "warm_cache": warm["cache"],
            "code_cache_bytes": du(cache),
        }
    results = {name: {1: [], 16: []} for name, *_ in SETUPS}
    for _ in range(ROUNDS):
        for conc in (1, 16):
            for name, *_ in SETUPS:
                _, url, path = servers[name]
                results[name][conc].append(wrk(url, path, conc))
finally:
    for proc, _, _ in servers.values():
        stop(proc)

json.dump({"rounds": ROUNDS, "duration_s": DURATION, "loads": loads, "results": results},
          open(os.path.join(work, "components.json"), "w"), indent=1)
med = statistics.median
base = {c: med(r["p50_us"] for r in results["flipt command"][c]) for c in (1, 16)}
base_rps = med(r["rps"] for r in results["flipt command"][16])
lines = [
    f"GET of one resource, a release cupd per controller, wrk keep-alive, {ROUNDS} rounds of "
    f"{DURATION} s per controller and concurrency, controllers alternating; medians of the rounds.",
    "",
    "| controller | ABI | c | p50 (ms) | p50 min–max | p50 − flipt command (ms) | p99 (ms) | req/s | load |",
    "|---|---|---|---|---|---|---|---|---|",
]
for name, *_ in SETUPS:
    for c in (1, 16):
        rs = results[name][c]
        p50 = med(r["p50_us"] for r in rs)
        lines.append(
            f"| {name} | {loads[name]['abi']} | {c} | {p50 / 1e3:.3f} | "
            f"{min(r['p50_us'] for r in rs) / 1e3:.3f}–{max(r['p50_us'] for r in rs) / 1e3:.3f} | "
            f"{(p50 - base[c]) / 1e3:+.3f} | {med(r['p99_us'] for r in rs) / 1e3:.3f} | "
            f"{med(r['rps'] for r in rs):,.0f} | {med(r['load'] for r in rs):.1f} |")
lines += [
    "",
    "Loading each package (`load_ms` from `/status`: reading, checking, compiling or reading "
    "compiled code, linking), with an empty code cache and again with the cache warm:",
    "",
    "| controller | package | cold load (compile) | warm load (cache hit) | compiled code in the cache |",
    "|---|---|---|---|---|",
]
for name, *_ in SETUPS:
    l = loads[name]
    lines.append(
        f"| {name} | {l['package_bytes'] / 1e6:.2f} MB | {l['cold_load_ms'] / 1e3:.2f} s | "
        f"{l['warm_load_ms']:.0f} ms | {l['code_cache_bytes'] / 1e6:.1f} MB |")
open(os.path.join(work, "components.md"), "w").write("\n".join(lines) + "\n")
