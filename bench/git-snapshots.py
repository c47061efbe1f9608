#!/usr/bin/env python3
"""The Git source against a hostile remote, through the cupd in BIN_DIR (a release build):
  big       8 concurrent reads of a revision holding a 200 MB file of zeros (a loose object
            of about 200 KB): statuses, time, cupd peak RSS, peak extra disk under the cache;
  wide100k  the same for a tree of 100,000 files (100 directories of 1,000);
  wide40k   the same for 40,000 files (within the default limits);
  partial   a PUT on a main holding a name that is not UTF-8 and a nested `lib/.git`: what
            the proposal changes against main;
  stall     a `git://` remote (git daemon behind a proxy) that accepts and never answers
            after startup: a PUT, a read and a listing meanwhile (status and seconds).
Usage: bench/git-snapshots.py BIN_DIR [scenario...]   (all scenarios when none is named)"""
import json, os, shutil, socket, subprocess, sys, tempfile, threading, time, urllib.request, urllib.error

BIN = sys.argv[1]
ONLY = set(sys.argv[2:])
RES = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources"
FOO = '{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"foo","labels":{},"annotations":{}},"spec":{"foo":"bar"}}'
BAZ = '{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"baz","labels":{},"annotations":{}},"spec":{}}'

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def obj(kind, name, body):
    return '{"apiVersion":"cup.flipt.io/v1alpha1","kind":"%s","metadata":{"name":"%s"},%s}' % (kind, name, body)

def req(port, method, path, body=None, timeout=120):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body.encode() if body else None, method=method,
                               headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except Exception as e:
        return None, f"no answer: {e}"

def status(pid, field):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith(field + ":"): return int(l.split()[1]) // 1024

def git(d, *args, inp=None):
    r = subprocess.run(["git", "-C", d, *args], input=inp, capture_output=True, check=True,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})
    return r.stdout.decode(errors="replace").strip()

def config():
    d = tempfile.mkdtemp()
    open(f"{d}/tmpl-def.json", "w").write(obj("ResourceDefinition", "resources.test.cup.flipt.io",
        '"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":{"type":"object"}}}'))
    open(f"{d}/tmpl-ctl.json", "w").write(obj("Controller", "template", '"spec":{"type":"template"}'))
    open(f"{d}/tmpl-bind.json", "w").write(obj("Binding", "template", '"spec":{"controller":"template","resources":["test.cup.flipt.io/v1alpha1/resources"]}'))
    return d

def remote():
    root = tempfile.mkdtemp()
    git(root, "init", "-q", "--bare", "-b", "main", "remote.git")
    bare = f"{root}/remote.git"
    git(root, "clone", "-q", bare, "seed")
    os.makedirs(f"{root}/seed/default")
    open(f"{root}/seed/default/test.cup.flipt.io-v1alpha1-Resource-foo.json", "w").write(FOO)
    git(f"{root}/seed", "add", "-A"); git(f"{root}/seed", "commit", "-q", "-m", "seed"); git(f"{root}/seed", "push", "-q", "origin", "main")
    return root, bare

def branch_adding(bare, branch, extra: bytes):
    default = git(bare, "rev-parse", "main:default")
    root = git(bare, "mktree", inp=f"040000 tree {default}\tdefault\n".encode() + extra)
    c = git(bare, "commit-tree", root, "-p", "main", "-m", branch)
    git(bare, "update-ref", f"refs/heads/{branch}", c)
    return c

def start(url, extra=()):
    port = free_port()
    store = tempfile.mkdtemp(); cache = tempfile.mkdtemp()
    logf = tempfile.mktemp()
    p = subprocess.Popen([f"{BIN}/cupd", "serve", "-api-address", f"127.0.0.1:{port}", "-api-resources", config(),
                          "-api-source", "git", "-api-git-repo", url, "--git-cache", cache, "--git-fetch-interval", "0s",
                          "--store", store, *extra], stdout=subprocess.DEVNULL, stderr=open(logf, "w"))
    for _ in range(600):
        if p.poll() is not None: raise SystemExit("cupd exited: " + open(logf).read()[-2000:])
        try:
            if req(port, "GET", "/readyz", timeout=2)[0] == 200: return p, port, cache
        except Exception: pass
        time.sleep(0.1)
    raise SystemExit("cupd not ready")

class DiskWatch(threading.Thread):
    """Peak of du -sk and of inodes under `d` while running."""
    def __init__(self, d):
        super().__init__(daemon=True); self.d = d; self.stop = False; self.kib = 0; self.inodes = 0
    def run(self):
        while not self.stop:
            r = subprocess.run(["du", "-sk", "--inodes", self.d], capture_output=True, text=True).stdout.split()
            k = subprocess.run(["du", "-sk", self.d], capture_output=True, text=True).stdout.split()
            if r: self.inodes = max(self.inodes, int(r[0]))
            if k: self.kib = max(self.kib, int(k[0]))
            time.sleep(0.05)

def readers(port, cache, path, n=8):
    base_kib = int(subprocess.run(["du", "-sk", cache], capture_output=True, text=True).stdout.split()[0])
    base_in = int(subprocess.run(["du", "-s", "--inodes", cache], capture_output=True, text=True).stdout.split()[0])
    w = DiskWatch(cache); w.start()
    out = [None] * n
    def one(i):
        t = time.time(); st, body = req(port, "GET", path, timeout=600); out[i] = (st, round(time.time() - t, 2), body[:220])
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t = time.time()
    for x in ts: x.start()
    for x in ts: x.join()
    wall = round(time.time() - t, 2)
    time.sleep(0.2); w.stop = True; w.join()
    return out, wall, round((w.kib - base_kib) / 1024), w.inodes - base_in

out = {}
def scenario(name):
    return not ONLY or name in ONLY

if scenario("big"):
    root, bare = remote()
    z = f"{root}/zeros.bin"; open(z, "wb").truncate(200 << 20)
    blob = git(bare, "hash-object", "-w", z); os.remove(z)
    branch_adding(bare, "big", f"100644 blob {blob}\tzeros.bin\n".encode())
    p, port, cache = start(bare)
    before = status(p.pid, "VmHWM")
    res, wall, disk, inodes = readers(port, cache, f"{RES}/foo?revision=big")
    out["big: 8 concurrent reads of a revision with a 200 MB zero file"] = {
        "statuses": sorted({r[0] for r in res}), "slowest s": max(r[1] for r in res), "wall s": wall,
        "cupd peak RSS MiB before/after": [before, status(p.pid, "VmHWM")],
        "peak extra disk MiB": disk, "first body": res[0][2]}
    p.kill(); p.wait(); shutil.rmtree(root, ignore_errors=True)

def wide(n_dirs, label):
    root, bare = remote()
    blob = git(bare, "hash-object", "-w", "--stdin", inp=b"x\n")
    d = git(bare, "mktree", inp="".join(f"100644 blob {blob}\tf{i}\n" for i in range(1000)).encode())
    top = git(bare, "mktree", inp="".join(f"040000 tree {d}\td{i}\n" for i in range(n_dirs)).encode())
    branch_adding(bare, "wide", f"040000 tree {top}\twide\n".encode())
    p, port, cache = start(bare)
    before = status(p.pid, "VmHWM")
    res, wall, disk, inodes = readers(port, cache, f"{RES}/foo?revision=wide")
    out[label] = {"statuses": sorted({r[0] for r in res}), "slowest s": max(r[1] for r in res), "wall s": wall,
        "cupd peak RSS MiB before/after": [before, status(p.pid, "VmHWM")],
        "peak extra disk MiB": disk, "peak extra inodes": inodes, "first body": res[0][2]}
    p.kill(); p.wait(); shutil.rmtree(root, ignore_errors=True)

if scenario("wide100k"):
    wide(100, "wide100k: 8 concurrent reads of a 100,000-file tree")
if scenario("wide40k"):
    wide(40, "wide40k: 8 concurrent reads of a 40,000-file tree")

if scenario("partial"):
    root, bare = remote()
    blob = git(bare, "hash-object", "-w", "--stdin", inp=b"kept\n")
    head = git(bare, "mktree", inp=f"100644 blob {blob}\tHEAD\n".encode())
    lib = git(bare, "mktree", inp=f"040000 tree {head}\t.git\n100644 blob {blob}\tREADME\n".encode())
    c = branch_adding(bare, "partial", f"040000 tree {lib}\tlib\n100644 blob {blob}\tcaf".encode() + b"\xe9.txt\n")
    git(bare, "update-ref", "refs/heads/main", c)
    p, port, cache = start(bare)
    st, body = req(port, "PUT", f"{RES}/baz", BAZ)
    branch = json.loads(body)["proposal"]["branch"] if st == 202 else None
    diff = git(bare, "diff", "--name-status", "main", branch) if branch else body
    out["partial: a PUT on main holding a non-UTF-8 name and lib/.git"] = {"status": st, "proposal vs main": diff.splitlines()}
    p.kill(); p.wait(); shutil.rmtree(root, ignore_errors=True)

if scenario("stall"):
    # git daemon behind a proxy that, once stalled, accepts and never answers.
    root, bare = remote()
    dport, pport = free_port(), free_port()
    daemon = subprocess.Popen(["git", "daemon", "--export-all", f"--base-path={root}", f"--port={dport}", "--listen=127.0.0.1",
                               "--enable=receive-pack", "--reuseaddr", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stalled = threading.Event()
    lsock = socket.socket(); lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); lsock.bind(("127.0.0.1", pport)); lsock.listen(64)
    held = []
    def pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data: break
                b.sendall(data)
        except Exception: pass
        finally:
            try: b.shutdown(socket.SHUT_WR)
            except Exception: pass
    def proxy():
        while True:
            c, _ = lsock.accept()
            if stalled.is_set(): held.append(c); continue
            u = socket.create_connection(("127.0.0.1", dport))
            threading.Thread(target=pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=pipe, args=(u, c), daemon=True).start()
    threading.Thread(target=proxy, daemon=True).start()
    time.sleep(0.5)
    p, port, cache = start(f"git://127.0.0.1:{pport}/remote.git")
    stalled.set()
    res = {}
    def put():
        t = time.time(); st, body = req(port, "PUT", f"{RES}/baz", BAZ, timeout=180); res["put"] = (st, round(time.time() - t, 1), body[:200])
    th = threading.Thread(target=put); th.start(); time.sleep(1)
    t = time.time(); st, _ = req(port, "GET", f"{RES}/foo", timeout=180); read = (st, round(time.time() - t, 2))
    t = time.time(); st2, body2 = req(port, "GET", "/proposals", timeout=180); listing = (st2, round(time.time() - t, 1), body2[:160])
    th.join()
    out["stall: a remote that accepts and never answers (after startup)"] = {"PUT (status, s, body)": res["put"], "GET meanwhile (status, s)": read,
        "GET /proposals meanwhile (status, s, body)": listing}
    p.kill(); p.wait(); daemon.kill(); daemon.wait(); shutil.rmtree(root, ignore_errors=True)

print(json.dumps(out, indent=1))
