#!/usr/bin/env python3
"""Probe a cupd binary's listener: silent/slow heads, idle keep-alive, slow body, fd pressure.
usage: bench/http_slow_clients.py target/release/cupd [extra cupd args...]   (needs prlimit)"""
import os, socket, subprocess, sys, tempfile, time, json

cupd = sys.argv[1]; extra = sys.argv[2:]
cfg = tempfile.mkdtemp(); src = tempfile.mkdtemp(); store = tempfile.mkdtemp()
os.makedirs(f"{src}/default")
def obj(kind, name, body): return json.dumps({"apiVersion":"cup.flipt.io/v1alpha1","kind":kind,"metadata":{"name":name}, **body})
open(f"{cfg}/d.json","w").write(obj("ResourceDefinition","resources.test.cup.flipt.io",{"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":{"type":"object"}}}}))
open(f"{cfg}/c.json","w").write(obj("Controller","template",{"spec":{"type":"template"}}))
open(f"{cfg}/b.json","w").write(obj("Binding","template",{"spec":{"controller":"template","resources":["test.cup.flipt.io/v1alpha1/resources"]}}))

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def start(wrapper=()):
    port = free_port()
    log = open(tempfile.mktemp(), "w")
    p = subprocess.Popen([*wrapper, cupd, "serve", "-api-address", f"127.0.0.1:{port}", "-api-resources", cfg,
                          "-api-local-path", src, "--store", store, *extra], stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(600):
        try:
            if b"200" in get(port, "/readyz", 2)[:20]: return p, port
        except OSError: pass
        time.sleep(0.05)
    raise SystemExit("not ready")

def get(port, path, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    out = b""
    while True:
        b = s.recv(65536)
        if not b: return out
        out += b

def closed_within(s, limit):
    s.settimeout(0.2); t = time.time()
    while time.time() - t < limit:
        try:
            if s.recv(4096) == b"": return time.time() - t
        except socket.timeout: pass
        except OSError: return time.time() - t
    return None

p, port = start()
silent = socket.create_connection(("127.0.0.1", port))
r = closed_within(silent, 15)
print(f"silent connection: {'closed after %.1f s' % r if r else 'still open after 15 s'}")
ka = socket.create_connection(("127.0.0.1", port))
ka.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); time.sleep(0.3); ka.recv(4096)
r = closed_within(ka, 75)
print(f"idle keep-alive connection: {'closed after %.1f s' % r if r else 'still open after 75 s'}")
body = socket.create_connection(("127.0.0.1", port))
body.sendall(b"PUT /apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
body.settimeout(75)
try: ans = body.recv(100)
except socket.timeout: ans = b"(no answer after 75 s)"
print(f"slow body: {ans[:40]!r}")
p.kill(); p.wait()

p, port = start(("prlimit", "--nofile=256:256"))
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(260)]
t = time.time()
try:
    ans = get(port, "/healthz", 40)[:15]
    print(f"/healthz behind 260 silent connections, nofile 256: {ans!r} after {time.time()-t:.1f} s")
except socket.timeout:
    print(f"/healthz behind 260 silent connections, nofile 256: no answer after {time.time()-t:.1f} s")
p.kill(); p.wait()
