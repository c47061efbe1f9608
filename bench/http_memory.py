#!/usr/bin/env python3
"""Resource figures of a cupd binary: /metrics and RSS after many distinct methods, 400 body and
RSS for a body with ~1M schema violations (alone and six at once).
usage: bench/http_memory.py target/release/cupd   (METHODS=N to change the 50000 methods)"""
import os, socket, subprocess, sys, tempfile, time, json, threading

cupd = sys.argv[1]
cfg = tempfile.mkdtemp(); src = tempfile.mkdtemp(); store = tempfile.mkdtemp()
os.makedirs(f"{src}/default")
def obj(kind, name, body): return json.dumps({"apiVersion":"cup.flipt.io/v1alpha1","kind":kind,"metadata":{"name":name}, **body})
schema = {"type":"object","properties":{"spec":{"type":"object","properties":{"items":{"type":"array","items":{"type":"string"}}}}}}
open(f"{cfg}/d.json","w").write(obj("ResourceDefinition","resources.test.cup.flipt.io",{"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":schema}}}))
open(f"{cfg}/c.json","w").write(obj("Controller","template",{"spec":{"type":"template"}}))
open(f"{cfg}/b.json","w").write(obj("Binding","template",{"spec":{"controller":"template","resources":["test.cup.flipt.io/v1alpha1/resources"]}}))

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen([cupd, "serve", "-api-address", f"127.0.0.1:{port}", "-api-resources", cfg,
                      "-api-local-path", src, "--store", store, "-log-level", "warn"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def req(method, path, body=b"", headers=""):
    c = socket.create_connection(("127.0.0.1", port), timeout=120)
    c.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body)
    out = bytearray()
    while True:
        b = c.recv(1 << 20)
        if not b: break
        out += b
    c.close()
    head, _, rest = bytes(out).partition(b"\r\n\r\n")
    return head.split(b" ")[1], head, rest

def status(field):
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith(field): return int(l.split()[1]) // 1024
for _ in range(400):
    try:
        if req("GET", "/readyz")[0] == b"200": break
    except OSError: pass
    time.sleep(0.05)

N = int(os.environ.get("METHODS", "50000"))
print(f"start: VmRSS {status('VmRSS:')} MiB")
pad = "M" * 2000
codes = {}
for i in range(N):
    c = req(f"X{i:06d}{pad}", "/healthz")[0]
    codes[c] = codes.get(c, 0) + 1
t = time.time(); code, head, body = req("GET", "/metrics"); dt = time.time() - t
print(f"{N} distinct 2 KB methods (answers {codes}): VmRSS {status('VmRSS:')} MiB, /metrics {len(body)} bytes in {dt:.1f} s (chunked size incl.)")

items = ",".join(["1"] * 1_040_000)
doc = f'{{"spec":{{"items":[{items}]}}}}'.encode()
path = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/x"
rss0 = status("VmRSS:")
t = time.time(); code, head, body = req("PUT", path, doc); dt = time.time() - t
print(f"PUT {len(doc)} byte body, 1040000 violations: {code.decode()} body {len(body)} bytes in {dt:.1f} s; VmRSS {rss0} -> {status('VmRSS:')} MiB, VmHWM {status('VmHWM:')} MiB")
code, head, body = req("PUT", path, doc, "Accept: application/json\r\n")
print(f"  as JSON: {code.decode()} body {len(body)} bytes; VmHWM {status('VmHWM:')} MiB")
res = []
def one(): res.append(req("PUT", path, doc))
ths = [threading.Thread(target=one) for _ in range(6)]
t = time.time()
for th in ths: th.start()
peak = 0
while any(th.is_alive() for th in ths):
    peak = max(peak, status("VmRSS:")); time.sleep(0.02)
print(f"six at once: {[r[0].decode() for r in res]} in {time.time()-t:.1f} s, peak VmRSS sampled {peak} MiB, VmHWM {status('VmHWM:')} MiB, after {status('VmRSS:')} MiB")
p.kill(); p.wait()
