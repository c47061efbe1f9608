#!/usr/bin/env python3
"""The soak run behind `bench/load.sh --soak`: a modest, steady load on a cupd serving the
Git source, for hours, sampled every minute, to show whether disk, memory and latency stay
flat.

Writers put Flags at a fixed rate; each proposal is merged through POST /proposals/{id}/merge,
so the base branch moves on, proposal branches come and go and every merge is a new commit.
Readers get the Flag list at the base branch and at commits of the last hour picked at random
(`?revision=<commit>`), so cupd keeps making snapshots of commits it has not read before.

Every --sample seconds one row: cupd's RSS (VmRSS, and RssAnon: the heap and stacks, without
the pages of mapped files such as the cache's packs, which the kernel may drop), the git
cache's size on disk (snapshots
apart from the rest), the number of snapshot directories, packs and loose objects of the
cache, the remote's ref count, the latencies (p50/p99) and errors of that interval, and the
machine's load average (what else competed for the cores).
Writes a CSV of every row and a Markdown report with the curve (about 24 rows spread over the
run), the first and last rows and each column's slope per hour over the second half of the run.
Standard library only: the rates are a few requests per second, so the driver's own cost does
not bound any figure (latencies are measured from just before each request is sent).
"""

import argparse
import csv
import itertools
import json
import os
import random
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request

FLAG_PATH = "/apis/flipt.io/v1alpha1/namespaces/default/flags"


def parse_duration(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * units[suffix]
    raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 6h, 30m, 90s)")


class Window:
    """Latencies and errors of one sampling interval, per operation."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.latencies = {"put": [], "merge": [], "read": []}
        self.errors = {"put": 0, "merge": 0, "read": 0}
        self.last_error = ""

    def record(self, op, seconds, ok, detail=""):
        with self.lock:
            if ok:
                self.latencies[op].append(seconds * 1000)
            else:
                self.errors[op] += 1
                self.last_error = f"{op}: {detail}"[:300]

    def take(self):
        with self.lock:
            taken = (self.latencies, self.errors, self.last_error)
            self.reset()
            return taken


def request(url, method="GET", body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        # Counted as an error of the operation, not a crash of the driver.
        return 0, str(e).encode()


def writer(args, window, commits, stop, seq):
    interval = 1.0 / args.write_rate
    next_at = time.monotonic()
    rng = random.Random(args.seed)
    while not stop.is_set():
        next_at += interval
        n = next(seq)
        name = f"soak-{n % args.names}"
        flag = {
            "apiVersion": "flipt.io/v1alpha1",
            "kind": "Flag",
            "metadata": {"namespace": "default", "name": name},
            "spec": {"name": f"soak {n}", "enabled": rng.random() < 0.5,
                     "description": f"put {n}"},
        }
        t0 = time.monotonic()
        status, body = request(f"{args.url}{FLAG_PATH}/{name}", "PUT", flag)
        put_ok = status == 202
        window.record("put", time.monotonic() - t0, put_ok, f"{status} {body[:200]!r}")
        if put_ok:
            proposal_id = json.loads(body)["id"]
            t0 = time.monotonic()
            status, body = request(f"{args.url}/proposals/{proposal_id}/merge", "POST")
            ok = status == 200
            window.record("merge", time.monotonic() - t0, ok, f"{status} {body[:200]!r}")
            if ok:
                with commits[0]:
                    commits[1].append((time.monotonic(), json.loads(body)["commit"]))
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            next_at = time.monotonic()


def reader(args, window, commits, stop, index):
    interval = args.readers / args.read_rate
    rng = random.Random(args.seed + 1 + index)
    next_at = time.monotonic()
    while not stop.is_set():
        next_at += interval
        revision = ""
        with commits[0]:
            recent = commits[1]
            # Commits of the last hour only: older ones stay reachable (history of main) but
            # a steady run reads a moving window, as clients following a branch do.
            cutoff = time.monotonic() - 3600
            while recent and recent[0][0] < cutoff:
                recent.pop(0)
            if recent and rng.random() < 0.5:
                revision = "?revision=" + rng.choice(recent)[1]
        t0 = time.monotonic()
        status, body = request(f"{args.url}{FLAG_PATH}{revision}")
        window.record("read", time.monotonic() - t0, status == 200, f"{status} {body[:200]!r}")
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            next_at = time.monotonic()


def rss_mib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def du_bytes(path):
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                pass  # removed by cupd while walking (a pruned snapshot)
    return total


def cache_facts(cache_root):
    """Sizes and counts of the bare cache(s) under --git-cache."""
    facts = {"snapshots_mib": 0.0, "cache_mib": 0.0, "snapshots": 0, "packs": 0, "loose": 0}
    for entry in os.listdir(cache_root):
        repo = os.path.join(cache_root, entry)
        if not entry.endswith(".git") or not os.path.isdir(repo):
            continue
        snapshots = os.path.join(repo, "cup-snapshots")
        snap_bytes = du_bytes(snapshots) if os.path.isdir(snapshots) else 0
        facts["snapshots_mib"] += snap_bytes / 2**20
        facts["cache_mib"] += (du_bytes(repo) - snap_bytes) / 2**20
        if os.path.isdir(snapshots):
            facts["snapshots"] += sum(1 for n in os.listdir(snapshots) if len(n) == 40)
        pack_dir = os.path.join(repo, "objects", "pack")
        if os.path.isdir(pack_dir):
            facts["packs"] += sum(1 for n in os.listdir(pack_dir) if n.endswith(".pack"))
        objects = os.path.join(repo, "objects")
        for sub in os.listdir(objects):
            if len(sub) == 2:
                facts["loose"] += len(os.listdir(os.path.join(objects, sub)))
    return facts


def remote_refs(remote):
    out = subprocess.run(["git", "--git-dir", remote, "for-each-ref", "--format=x"],
                         capture_output=True, text=True, check=True).stdout
    return out.count("\n")


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def slope_per_hour(rows, column):
    half = rows[len(rows) // 2:]
    points = [(r["minutes"] / 60, r[column]) for r in half if r[column] == r[column]]
    if len(points) < 3:
        return float("nan")
    mx = statistics.fmean(p[0] for p in points)
    my = statistics.fmean(p[1] for p in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


COLUMNS = [
    ("minutes", "min", "{:.1f}"), ("rss_mib", "RSS MiB", "{:.1f}"),
    ("rss_anon_mib", "anon RSS MiB", "{:.1f}"),
    ("snapshots_mib", "snapshots MiB", "{:.1f}"), ("snapshots", "snapshot dirs", "{}"),
    ("cache_mib", "bare cache MiB", "{:.1f}"), ("packs", "packs", "{}"), ("loose", "loose objects", "{}"),
    ("remote_refs", "remote refs", "{}"), ("puts", "puts", "{}"),
    ("put_p50", "put p50 ms", "{:.1f}"), ("put_p99", "put p99 ms", "{:.1f}"),
    ("merge_p50", "merge p50 ms", "{:.1f}"), ("read_p50", "read p50 ms", "{:.2f}"),
    ("read_p99", "read p99 ms", "{:.2f}"), ("errors", "errors", "{}"),
    ("load", "load (1 min)", "{:.1f}"),
]


def markdown(rows, args, totals):
    lines = [f"Soak: {args.duration_text}, {args.write_rate} writes/s (each merged), "
             f"{args.read_rate} reads/s, sampled every {args.sample:.0f} s; "
             f"{totals['puts']} proposals, {totals['errors']} errors.", ""]
    if totals["last_error"]:
        lines += [f"Last error: `{totals['last_error']}`", ""]
    head = "| " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines += [head, "|" + "---|" * len(COLUMNS)]
    step = max(1, len(rows) // 24)
    shown = rows[::step]
    if rows and shown[-1] is not rows[-1]:
        shown.append(rows[-1])
    for r in shown:
        lines.append("| " + " | ".join(fmt.format(r[key]) for key, _, fmt in COLUMNS) + " |")
    lines += ["", "Slope per hour over the second half (least squares):", ""]
    lines.append("| " + " | ".join(c[1] for c in COLUMNS[1:]) + " |")
    lines.append("|" + "---|" * (len(COLUMNS) - 1))
    lines.append("| " + " | ".join(f"{slope_per_hour(rows, key):+.2f}" for key, _, _ in COLUMNS[1:]) + " |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True, help="cupd's process id (RSS)")
    p.add_argument("--git-cache", required=True, help="cupd's --git-cache directory")
    p.add_argument("--remote", required=True, help="the bare remote's path (ref count)")
    p.add_argument("--duration", default="6h", type=str)
    p.add_argument("--write-rate", type=float, default=1.0, help="proposals per second")
    p.add_argument("--read-rate", type=float, default=20.0, help="reads per second")
    p.add_argument("--readers", type=int, default=4)
    p.add_argument("--names", type=int, default=64, help="distinct Flag names written")
    p.add_argument("--sample", type=parse_duration, default=60.0)
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    args = p.parse_args()
    args.duration_text = args.duration
    duration = parse_duration(args.duration)

    window, stop = Window(), threading.Event()
    commits = (threading.Lock(), [])
    # One writer thread: proposals are serialised by cupd anyway, so a steady rate needs one.
    threads = [threading.Thread(target=writer, args=(args, window, commits, stop, itertools.count()),
                                daemon=True)]
    threads += [threading.Thread(target=reader, args=(args, window, commits, stop, i), daemon=True)
                for i in range(args.readers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    rows, totals = [], {"puts": 0, "errors": 0, "last_error": ""}
    with open(args.csv, "w", newline="") as out:
        writer_csv = csv.DictWriter(out, fieldnames=[c[0] for c in COLUMNS])
        writer_csv.writeheader()
        while True:
            remaining = duration - (time.monotonic() - started)
            stop.wait(min(args.sample, max(remaining, 0)))
            latencies, errors, last_error = window.take()
            row = {"minutes": (time.monotonic() - started) / 60, "rss_mib": rss_mib(args.pid),
                   "rss_anon_mib": rss_mib(args.pid, "RssAnon"),
                   "remote_refs": remote_refs(args.remote), "puts": len(latencies["put"]),
                   "put_p50": pct(latencies["put"], 0.5), "put_p99": pct(latencies["put"], 0.99),
                   "merge_p50": pct(latencies["merge"], 0.5),
                   "read_p50": pct(latencies["read"], 0.5), "read_p99": pct(latencies["read"], 0.99),
                   "errors": sum(errors.values()), "load": os.getloadavg()[0]}
            row.update(cache_facts(args.git_cache))
            rows.append(row)
            writer_csv.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in row.items()})
            out.flush()
            totals["puts"] += row["puts"]
            totals["errors"] += row["errors"]
            totals["last_error"] = last_error or totals["last_error"]
            print(" ".join(f"{key}={fmt.format(row[key])}" for key, _, fmt in COLUMNS), flush=True)
            if time.monotonic() - started >= duration:
                break
    stop.set()
    for t in threads:
        t.join(timeout=150)
    with open(args.markdown, "w") as f:
        f.write(markdown(rows, args, totals))
    return 1 if totals["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
