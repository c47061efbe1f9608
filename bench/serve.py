#!/usr/bin/env python3
"""GET / list / put through the example controller: a running cupd (driven by wrk) against
the per-process model (a new `wasmtime run` process per request, same module, same argv,
same source tree), at concurrency 1 and 16, in alternating rounds.

Called by bench/serve.sh, which prepares the inputs and starts/stops cupd. Writes
serve.json (every sample) and serve.md (the tables) in the current directory.
"""
import json
import os
import statistics
import subprocess
import sys
import time

cfg = json.loads(sys.argv[1])
ROUNDS = cfg["rounds"]
DURATION = cfg["duration_s"]
PEER_N = {1: cfg["peer_n1"], 16: cfg["peer_n16"]}
CONCURRENCY = (1, 16)
base = f"http://127.0.0.1:{cfg['port']}"
paths = {
    "get": "/apis/flipt.io/v1alpha1/namespaces/default/flags/new-login",
    "list": "/apis/flipt.io/v1alpha1/namespaces/default/flags",
    "put": "/apis/flipt.io/v1alpha1/namespaces/default/flags/bench",
}
argvs = {
    "get": ["get", "Flag", "default", "new-login"],
    "list": ["list", "Flag", "default"],
    "put": ["put", "Flag", "default", "bench"],
}
wt = cfg["wasmtime"]
peers = {
    # What a user of the CLI types (wasmtime's own compiled-code cache is on by default; its
    # directory is moved under bench/work so the run leaves nothing in ~/.cache).
    "wasmtime run": lambda verb: [wt, "run", "-C", f"cache-config={cfg['wasmtime_cache']}", "--argv0", "wasi",
                                  "--dir", f"{cfg['peer_src']}::/", cfg["wasm"]] + argvs[verb],
    # The best case of the model: code compiled ahead of time, only loaded per process.
    "wasmtime run .cwasm": lambda verb: [wt, "run", "-C", f"cache-config={cfg['wasmtime_cache']}",
                                         "--allow-precompiled", "--argv0", "wasi", "--dir",
                                         f"{cfg['peer_src']}::/", cfg["cwasm"]] + argvs[verb],
}


def peer_cmd(name, verb):
    cmd = peers[name](verb)
    # Writes take a lock, as cupd's do (without it, concurrent puts of the per-process
    # model race on features.yml and fail).
    return ["/usr/bin/flock", cfg["peer_lock"]] + cmd if verb == "put" else cmd


def loadavg():
    return float(open("/proc/loadavg").read().split()[0])


def wrk(path, conc, method="GET", body=None, duration=DURATION, url=None):
    env = dict(os.environ, WRK_METHOD=method, WRK_BODY=body or "")
    out = subprocess.run(
        ["wrk", f"-t{min(conc, 2)}", f"-c{conc}", f"-d{duration}s", "-s", cfg["wrk_lua"], (url or base) + path],
        env=env, check=True, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH-JSON "))
    r = json.loads(line[len("BENCH-JSON "):])
    errors = sum(r[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
    if errors:
        sys.exit(f"wrk {method} {path} c={conc}: {errors} errors: {r}")
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["load"] = loadavg()
    return r


def processes(cmd, conc, total, stdin):
    """Runs `total` processes, at most `conc` at a time; latencies from spawn to reap."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, stdin or "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
               (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)]
    running, lat, started, failed = {}, [], 0, 0
    t0 = time.perf_counter()
    while started < total or running:
        while started < total and len(running) < conc:
            running[os.posix_spawn(cmd[0], cmd, os.environ, file_actions=actions)] = time.perf_counter()
            started += 1
        pid, status = os.wait()
        lat.append(time.perf_counter() - running.pop(pid))
        failed += os.waitstatus_to_exitcode(status) != 0
    wall = time.perf_counter() - t0
    if failed:
        sys.exit(f"{cmd}: {failed} of {total} processes failed")
    lat.sort()
    q = lambda p: lat[int((len(lat) - 1) * p)] * 1e6
    return {"requests": total, "p10_us": q(0.1), "p50_us": q(0.5), "p90_us": q(0.9), "p99_us": q(0.99),
            "rps": total / wall, "load": loadavg()}


# Sanity: every peer command works, and cupd answers every verb.
for name in peers:
    for verb in argvs:
        subprocess.run(peer_cmd(name, verb), check=True, capture_output=True,
                       stdin=open(cfg["put_body"], "rb") if verb == "put" else subprocess.DEVNULL)

results = {verb: {c: {"cupd": []} | {p: [] for p in peers} for c in CONCURRENCY} for verb in argvs}
# The same cupd with wasmtime-wasi's per-WASI-call spans recorded (bench/serve.sh).
spans_base = f"http://127.0.0.1:{cfg['spans_port']}"
spans = {"get": [], "list": []}
floor = []
guest_runs = []
for rnd in range(ROUNDS):
    # The guest alone, once per round (it shares the machine with the same neighbours).
    g = json.loads(subprocess.run(cfg["guest_cmd"], check=True, capture_output=True, text=True).stdout)
    g["load"] = loadavg()
    guest_runs.append(g)
    floor.append(wrk("/healthz", 1, duration=1))
    for verb in argvs:
        for c in CONCURRENCY:
            method, body = ("PUT", cfg["put_body"]) if verb == "put" else ("GET", None)
            if c == 1 and verb in spans:
                # Alternate which of the two goes first, so neither always runs second.
                if rnd % 2:
                    spans[verb].append(wrk(paths[verb], c, url=spans_base))
                results[verb][c]["cupd"].append(wrk(paths[verb], c, method, body))
                if not rnd % 2:
                    spans[verb].append(wrk(paths[verb], c, url=spans_base))
            else:
                results[verb][c]["cupd"].append(wrk(paths[verb], c, method, body))
            for name in peers:
                results[verb][c][name].append(
                    processes(peer_cmd(name, verb), c, PEER_N[c], cfg["put_body"] if verb == "put" else None))
            print(f"round {rnd + 1}/{ROUNDS} {verb} c={c}: cupd p50 "
                  f"{results[verb][c]['cupd'][-1]['p50_us']:.0f} µs, "
                  + ", ".join(f"{p} p50 {results[verb][c][p][-1]['p50_us'] / 1e3:.1f} ms" for p in peers),
                  file=sys.stderr)

# Per verb and phase: the median over rounds of each round's median (and of its p10/p90).
guest = {verb: {phase: {k: statistics.median(g[verb][phase][k] for g in guest_runs)
                        for k in ("median_ms", "p10_ms", "p90_ms")}
                for phase in ("invoke", "instantiate", "start")} for verb in argvs}
guest_load = [g["load"] for g in guest_runs]
json.dump({"results": results, "floor": floor, "guest": guest, "guest_runs": guest_runs, "spans": spans}, open("serve.json", "w"), indent=1)

med = statistics.median


def agg(runs, key):
    return med(r[key] for r in runs)


def rng(runs, key, scale=1e3):
    vals = [r[key] / scale for r in runs]
    return f"{min(vals):.2f}–{max(vals):.2f}"


def loads(runs):
    vals = [r["load"] for r in runs]
    return f"{min(vals):.1f}–{max(vals):.1f}"


lines = [
    f"{ROUNDS} alternating rounds; per round and verb: cupd under wrk for {DURATION} s per concurrency, then "
    f"{PEER_N[1]} (c=1) / {PEER_N[16]} (c=16) `wasmtime` processes per peer. Latencies: median over rounds of "
    "each round's p50 / p90 / p99; the range is the p50s' min–max over rounds. Ratio: c=1 → p50 latency "
    "of the peer ÷ cupd's; c=16 → cupd's throughput ÷ the peer's (reported, no target).",
    "",
    "| verb | c | cupd p50 ms | p50 range | p90 ms | p99 ms | req/s | `wasmtime run` p50 ms | p90 ms | req/s | ratio | "
    "`.cwasm` p50 ms | req/s | ratio vs `.cwasm` | load |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
for verb in argvs:
    for c in CONCURRENCY:
        r = results[verb][c]
        cu, pd, pc = r["cupd"], r["wasmtime run"], r["wasmtime run .cwasm"]
        if c == 1:
            ratio = agg(pd, "p50_us") / agg(cu, "p50_us")
            ratio_c = agg(pc, "p50_us") / agg(cu, "p50_us")
        else:
            ratio = agg(cu, "rps") / agg(pd, "rps")
            ratio_c = agg(cu, "rps") / agg(pc, "rps")
        allruns = cu + pd + pc
        lines.append(
            f"| {verb} | {c} | {agg(cu, 'p50_us') / 1e3:.3f} | {rng(cu, 'p50_us')} | {agg(cu, 'p90_us') / 1e3:.3f} | "
            f"{agg(cu, 'p99_us') / 1e3:.3f} | "
            f"{agg(cu, 'rps'):,.0f} | {agg(pd, 'p50_us') / 1e3:.1f} | {agg(pd, 'p90_us') / 1e3:.1f} | {agg(pd, 'rps'):,.0f} | "
            f"**{ratio:.0f}×** | {agg(pc, 'p50_us') / 1e3:.1f} | {agg(pc, 'rps'):,.0f} | {ratio_c:.0f}× | "
            f"{loads(allruns)} |")

ceil = {verb: agg(results[verb][1]["wasmtime run"], "p50_us") / 1e3 / guest[verb]["start"]["median_ms"] for verb in argvs}
ceil_c = {verb: agg(results[verb][1]["wasmtime run .cwasm"], "p50_us") / 1e3 / guest[verb]["start"]["median_ms"]
          for verb in argvs}
# Any HTTP server pays one loopback round trip on top: `GET /healthz`, which runs no controller.
round_trip = agg(floor, "p50_us") / 1e3
ceil_http = {verb: agg(results[verb][1]["wasmtime run"], "p50_us") / 1e3 / (guest[verb]["start"]["median_ms"] + round_trip)
             for verb in argvs}
lines += [
    "",
    "Ceiling of the c=1 ratio if cupd added nothing at all to the guest's own work (peer p50 ÷ guest `_start` p50): "
    + ", ".join(f"{v} {ceil[v]:.0f}× vs `wasmtime run` ({ceil_c[v]:.0f}× vs `.cwasm`)" for v in argvs) + ". "
    f"Ceiling for any server answering over HTTP on this machine (peer p50 ÷ (guest `_start` p50 + the "
    f"`GET /healthz` round trip, {round_trip:.3f} ms)): "
    + ", ".join(f"{v} {ceil_http[v]:.0f}×" for v in argvs) + ".",
]
lines += [
    "",
    "Per-request overhead at c=1: cupd's p50 latency minus the guest's own work, i.e. the `_start` call "
    "alone, timed in-process on the same wasmtime 48 engine settings as cupd's (its pooling allocator: a reused "
    "memory slot, as in cupd) and WASI p1 host, instantiation outside "
    "the timer (bench/guest-timer, once per round; medians over rounds; put on a private copy of the tree in the "
    "directory where cupd makes its scratch copies, as its log names it). `invoke` is cup-runtime's `LoadedController::invoke` in-process (fresh "
    "WASI context + store + instance + `_start` + teardown): cupd − invoke is the HTTP side (loopback TCP "
    "both ways, axum, routing, decoding the guest's JSON, logging, metrics; get and list run the guest on the "
    "request's own task at c=1, on the blocking pool beyond one per spare worker; put always hands off to the blocking "
    "pool and also copies the tree to a scratch directory and applies it), invoke − `_start` the runtime side. "
    f"For scale: `GET /healthz` (no controller) at c=1 has p50 {agg(floor, 'p50_us') / 1e3:.3f} ms.",
    "",
    "| verb | cupd p50 ms (c=1) | guest `_start` alone p50 ms (p10–p90) | overhead ms | of which HTTP side | of which runtime | ≤ 0.1 ms | load |",
    "|---|---|---|---|---|---|---|---|",
]
for verb in argvs:
    cu = results[verb][1]["cupd"]
    g = guest[verb]
    st, inv = g["start"], g["invoke"]
    http = agg(cu, "p50_us") / 1e3
    over = http - st["median_ms"]
    lines.append(f"| {verb} | {http:.3f} | {st['median_ms']:.3f} ({st['p10_ms']:.3f}–{st['p90_ms']:.3f}) | "
                 f"**{over:.3f}** | {http - inv['median_ms']:.3f} | {inv['median_ms'] - st['median_ms']:.3f} | "
                 f"{('✓' if over <= 0.1 else '✗') if verb != 'put' else '— (no target)'} | {loads(cu)} (guest timing: {min(guest_load):.1f}–{max(guest_load):.1f}) |")
lines += [
    "",
    "What cupd's default log filter saves: the same cupd with `-log-level info,wasmtime_wasi=info`, which "
    "records wasmtime-wasi's INFO span around every WASI call (the default adds `wasmtime_wasi=warn`), "
    "c=1, same rounds, the two alternating: "
    + ", ".join(f"{v} p50 {agg(spans[v], 'p50_us') / 1e3:.3f} ms with the spans vs {agg(results[v][1]['cupd'], 'p50_us') / 1e3:.3f} ms "
                f"by default ({(agg(spans[v], 'p50_us') - agg(results[v][1]['cupd'], 'p50_us')) / 1e3:+.3f} ms)" for v in spans) + ".",
]
out = "\n".join(lines) + "\n"
open("serve.md", "w").write(out)
print(out)
