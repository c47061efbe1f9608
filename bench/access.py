#!/usr/bin/env python3
"""The cost of access control per request (see bench/access.sh, which calls this with the
work directory, the cupd binary and the wrk script). Writes access.json and access.md."""
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

work, cupd, wrk_lua = sys.argv[1:4]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DURATION = int(os.environ.get("BENCH_DURATION", "3"))
PATH = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/foo"
TOKEN = "bench-token-0123456789abcdef0123456789abcdef"


def write(name, text):
    path = os.path.join(work, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def config_object(kind, name, rest):
    return json.dumps({"apiVersion": "cup.flipt.io/v1alpha1", "kind": kind,
                       "metadata": {"name": name}, **rest})


write("config/def.json", config_object("ResourceDefinition", "resources.test.cup.flipt.io", {
    "names": {"kind": "Resource", "singular": "resource", "plural": "resources"},
    "spec": {"group": "test.cup.flipt.io", "versions": {"v1alpha1": {"type": "object"}}}}))
write("config/ctl.json", config_object("Controller", "template", {"spec": {"type": "template"}}))
write("config/bind.json", config_object("Binding", "template", {
    "spec": {"controller": "template", "resources": ["test.cup.flipt.io/v1alpha1/resources"]}}))
write("source/default/test.cup.flipt.io-v1alpha1-Resource-foo.json", json.dumps({
    "apiVersion": "test.cup.flipt.io/v1alpha1", "kind": "Resource",
    "metadata": {"namespace": "default", "name": "foo"}, "spec": {}}))
tokens = write("tokens.csv", f"other-token-xyz,someone,1,others\n{TOKEN},bench,2,readers\n")
reader = {"groups": ["readers"], "verbs": ["get", "list"],
          "resources": ["test.cup.flipt.io/resources"], "namespaces": ["default"]}
one = write("policy-1.json", json.dumps({"rules": [reader]}))
others = [{"users": [f"user{i}"], "groups": [f"group{i}"], "verbs": ["get", "list", "put"],
           "resources": [f"example{i}.io/things"], "namespaces": [f"ns{i}"]} for i in range(99)]
hundred = write("policy-100.json", json.dumps({"rules": others + [reader]}))
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                "subjectAltName=IP:127.0.0.1", "-keyout", os.path.join(work, "tls.key"),
                "-out", os.path.join(work, "tls.crt")], check=True, capture_output=True)

access = ["--token-auth-file", tokens, "--authorization-policy-file"]
tls = ["--tls-cert-file", os.path.join(work, "tls.crt"),
       "--tls-private-key-file", os.path.join(work, "tls.key")]
SETUPS = [
    ("open", [], "http", False),
    ("token, 1 rule", access + [one], "http", True),
    ("token, 100 rules", access + [hundred], "http", True),
    ("TLS + token, 100 rules", access + [hundred] + tls, "https", True),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(name, args, scheme):
    port = free_port()
    slug = name.replace(" ", "").replace(",", "-").replace("+", "")
    log = open(os.path.join(work, f"cupd-{slug}.log"), "w")
    proc = subprocess.Popen([cupd, "serve", "-api-address", f"127.0.0.1:{port}",
                             "-api-resources", os.path.join(work, "config"),
                             "-api-local-path", os.path.join(work, "source"),
                             "--store", os.path.join(work, "store")] + args,
                            stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"cupd ({name}) exited: see {log.name}")
        if "cupd listening" in open(log.name).read():
            try:
                ctx = None
                if scheme == "https":
                    import ssl
                    ctx = ssl.create_default_context(cafile=os.path.join(work, "tls.crt"))
                with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/readyz", context=ctx) as r:
                    if r.status == 200:
                        return proc, f"{scheme}://127.0.0.1:{port}"
            except OSError:
                pass
        time.sleep(0.05)
    sys.exit(f"cupd ({name}) not ready")


def loadavg():
    return float(open("/proc/loadavg").read().split()[0])


def wrk(url, conc, token):
    env = dict(os.environ, WRK_METHOD="GET", WRK_BODY="",
               WRK_AUTHORIZATION=f"Bearer {TOKEN}" if token else "")
    out = subprocess.run(["wrk", f"-t{min(conc, 2)}", f"-c{conc}", f"-d{DURATION}s", "-s", wrk_lua,
                          url + PATH], env=env, check=True, capture_output=True, text=True).stdout
    r = json.loads(next(l for l in out.splitlines() if l.startswith("BENCH-JSON "))[11:])
    errors = sum(r[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
    if errors:
        sys.exit(f"wrk {url} c={conc}: {errors} errors (a refused request would be one): {r}")
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["load"] = loadavg()
    return r


servers = {}
try:
    for name, args, scheme, _ in SETUPS:
        servers[name] = start(name, args, scheme)
    results = {name: {1: [], 16: []} for name, *_ in SETUPS}
    for _ in range(ROUNDS):
        for conc in (1, 16):
            for name, _, _, token in SETUPS:
                results[name][conc].append(wrk(servers[name][1], conc, token))
finally:
    for proc, _ in servers.values():
        proc.terminate()
        proc.wait()

json.dump({"rounds": ROUNDS, "duration_s": DURATION, "results": results},
          open(os.path.join(work, "access.json"), "w"), indent=1)
med = statistics.median
open_p50 = {c: med(r["p50_us"] for r in results["open"][c]) for c in (1, 16)}
lines = [
    f"GET of one resource through the template controller, wrk keep-alive, {ROUNDS} rounds of "
    f"{DURATION} s per setup and concurrency, setups alternating; medians of the rounds.",
    "",
    "| setup | c | p50 (ms) | p50 min–max | p50 − open (ms) | p99 (ms) | req/s | load |",
    "|---|---|---|---|---|---|---|---|",
]
for name, *_ in SETUPS:
    for c in (1, 16):
        rs = results[name][c]
        p50 = med(r["p50_us"] for r in rs)
        lines.append(
            f"| {name} | {c} | {p50 / 1e3:.3f} | "
            f"{min(r['p50_us'] for r in rs) / 1e3:.3f}–{max(r['p50_us'] for r in rs) / 1e3:.3f} | "
            f"{(p50 - open_p50[c]) / 1e3:+.3f} | "
            f"{med(r['p99_us'] for r in rs) / 1e3:.3f} | {med(r['rps'] for r in rs):,.0f} | "
            f"{min(r['load'] for r in rs):.2f}–{max(r['load'] for r in rs):.2f} |")
text = "\n".join(lines) + "\n"
open(os.path.join(work, "access.md"), "w").write(text)
print(text)
