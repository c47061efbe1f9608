#!/usr/bin/env python3
"""cupd start → /readyz with N controllers, compiled-code cache cold vs warm, and cupd's
memory once ready. Called by bench/start.sh with a JSON config:

  {"cupd": PATH, "sets": [{"name", "config", "store", "source", "groups", "rounds", "cold_rounds"}], "out": PREFIX}

Per set, rounds alternate cold (an empty --code-cache directory) and warm (a cache filled
by one discarded start). Each start: spawn → first 200 from GET /readyz (polled every
millisecond), then /status is checked (every controller loaded, cache as expected),
VmRSS/VmHWM read from /proc, one list request sent to every controller and VmRSS read
again, then SIGTERM. Writes PREFIX.json and PREFIX.md.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

cfg = json.loads(sys.argv[1])
med = statistics.median


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def proc_kb(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def start(s, cache_dir, expect_cache):
    port = free_port()
    log = open(os.path.join(cfg["scratch"], f"cupd-{s['name']}.log"), "w")
    load = float(open("/proc/loadavg").read().split()[0])
    t0 = time.perf_counter()
    p = subprocess.Popen([cfg["cupd"], "serve", "-api-address", f"127.0.0.1:{port}", "-api-resources", s["config"],
                          "-api-local-path", s["source"], "--store", s["store"], "--code-cache", cache_dir],
                         stdout=subprocess.DEVNULL, stderr=log)
    try:
        while True:
            if p.poll() is not None:
                sys.exit(f"cupd exited with {p.returncode}; see {log.name}")
            try:
                status, _ = get(port, "/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() - t0 > 120:
                sys.exit("cupd not ready after 120 s")
            time.sleep(0.001)
        ready_ms = (time.perf_counter() - t0) * 1e3
        rss, hwm = proc_kb(p.pid, "VmRSS"), proc_kb(p.pid, "VmHWM")
        _, body = get(port, "/status")
        doc = json.loads(body)
        ctl = doc["controllers"]
        bad = [c["name"] for c in ctl if c["state"] != "loaded"]
        if bad or len(ctl) != len(s["groups"]):
            sys.exit(f"controllers not loaded: {bad or ctl}")
        caches = sorted({c.get("cache", "?") for c in ctl})
        for g in s["groups"]:
            status, _ = get(port, f"/apis/{g}/v1alpha1/namespaces/default/flags")
            if status != 200:
                sys.exit(f"list {g}: HTTP {status}")
        rss_after = proc_kb(p.pid, "VmRSS")
        return {"ready_ms": ready_ms, "rss_kb": rss, "hwm_kb": hwm, "rss_after_requests_kb": rss_after,
                "load_ms_sum": sum(c.get("load_ms") or 0 for c in ctl), "cache": caches, "load": load,
                "expect": expect_cache}
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()


results = {}
for s in cfg["sets"]:
    warm_cache = tempfile.mkdtemp(prefix="warm-", dir=cfg["scratch"])
    start(s, warm_cache, "fill")  # fills the warm cache; not counted
    runs = {"cold": [], "warm": []}
    for i in range(s["rounds"]):
        if i < s["cold_rounds"]:
            cold_cache = tempfile.mkdtemp(prefix="cold-", dir=cfg["scratch"])
            runs["cold"].append(start(s, cold_cache, "cold"))
            shutil.rmtree(cold_cache)
        runs["warm"].append(start(s, warm_cache, "warm"))
        print(f"{s['name']} round {i + 1}: " + ", ".join(
            f"{k} {v[-1]['ready_ms']:.0f} ms ({','.join(v[-1]['cache'])}) RSS {v[-1]['rss_kb'] / 1024:.1f} MiB"
            for k, v in runs.items() if v and (k == "warm" or i < s["cold_rounds"])), file=sys.stderr)
    results[s["name"]] = runs
json.dump(results, open(cfg["out"] + ".json", "w"), indent=1)


def rng(rs, key, scale=1.0, fmt="{:.0f}"):
    v = [r[key] / scale for r in rs]
    return (fmt + "–" + fmt).format(min(v), max(v))


def loads(rs):
    v = [r["load"] for r in rs]
    return f"{min(v):.1f}–{max(v):.1f}"


lines = ["Start = spawn of `cupd serve` → first 200 from `/readyz` (polled every ms). Cold: an empty "
         "`--code-cache` directory per start (every module compiled by Cranelift). Warm: the cache filled by an "
         "earlier start (compiled code loaded). Rounds alternate cold and warm. `load_ms` is the sum of the "
         "per-controller load times cupd reports in `/status`.",
         "",
         "| controllers | cache | runs | median ms | min–max ms | Σ load_ms (median) | cache status | ratio | ≥ 20× | load |",
         "|---|---|---|---|---|---|---|---|---|---|"]
for s in cfg["sets"]:
    r = results[s["name"]]
    if not r["cold"]:
        continue
    ratio = med(x["ready_ms"] for x in r["cold"]) / med(x["ready_ms"] for x in r["warm"])
    for kind in ("cold", "warm"):
        rs = r[kind]
        lines.append(f"| {len(s['groups'])} | {kind} | {len(rs)} | {med(x['ready_ms'] for x in rs):.1f} | "
                     f"{rng(rs, 'ready_ms', fmt='{:.1f}')} | {med(x['load_ms_sum'] for x in rs):.1f} | "
                     f"{','.join(sorted({c for x in rs for c in x['cache']}))} | "
                     + (f"**warm is {ratio:.1f}× faster**" if kind == "warm" else "1.00") + " | "
                     + (("✓" if ratio >= 20 else "✗") if kind == "warm" else "") + f" | {loads(rs)} |")
lines += ["", "Memory of cupd once ready (VmRSS), peak (VmHWM), and VmRSS after one list request to every controller.",
          "", "| controllers | cache | runs | VmRSS MiB (median) | min–max | VmHWM MiB | VmRSS after requests MiB | ≤ 100 MB (95.4 MiB) | load |",
          "|---|---|---|---|---|---|---|---|---|"]
for s in cfg["sets"]:
    for kind in ("cold", "warm"):
        rs = results[s["name"]][kind]
        if not rs:
            continue
        rss = med(x["rss_kb"] for x in rs) / 1024
        lines.append(f"| {len(s['groups'])} | {kind} | {len(rs)} | {rss:.1f} | {rng(rs, 'rss_kb', 1024, '{:.1f}')} | "
                     f"{med(x['hwm_kb'] for x in rs) / 1024:.1f} | {med(x['rss_after_requests_kb'] for x in rs) / 1024:.1f} | "
                     f"{'✓' if rss * 1024 * 1024 <= 100e6 else '✗'} | {loads(rs)} |")
out = "\n".join(lines) + "\n"
open(cfg["out"] + ".md", "w").write(out)
print(out)
