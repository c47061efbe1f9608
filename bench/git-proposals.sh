#!/usr/bin/env bash
# GET /proposals against a Git remote with many proposal branches over a long history,
# served by `git daemon`:
#   1. the time of one listing (median of 3) on a remote of COMMITS commits on main and
#      BRANCHES proposal branches, all merged (MERGED=1: each points into main's history)
#      or all open (MERGED=0: each one commit off a point of main's history);
#   2. how many fetches (upload-pack runs, counted in `git daemon --verbose`'s log) CLIENTS
#      concurrent listings cost, on a small remote (3 open proposals) so that a cupd that
#      lists slowly still finishes.
# Usage: bench/git-proposals.sh CUPD [CUPD...]   (release binaries: old first, then new)
set -euo pipefail

COMMITS=${COMMITS:-20001}
BRANCHES=${BRANCHES:-3000}
MERGED=${MERGED:-1}
CLIENTS=${CLIENTS:-50}

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A remote from a fast-import stream: main with $1 commits, $2 proposal branches.
make_remote() {
    local dir=$1 commits=$2 branches=$3 merged=$4
    git init -q --bare -b main "$dir"
    python3 - "$commits" "$branches" "$merged" <<'EOF' | git -C "$dir" fast-import --quiet
import sys
commits, branches, merged = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
out = sys.stdout
def data(text):
    b = text.encode()
    out.write(f"data {len(b)}\n")
    out.write(text + "\n")
foo = '{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"foo"},"spec":{"foo":"bar"}}'
for i in range(1, commits + 1):
    out.write(f"commit refs/heads/main\nmark :{i}\n")
    out.write(f"committer t <t@t> {1700000000 + i} +0000\n")
    data(f"commit {i}")
    if i > 1:
        out.write(f"from :{i - 1}\n")
    else:
        out.write("M 100644 inline default/test.cup.flipt.io-v1alpha1-Resource-foo.json\n")
        data(foo)
    out.write("M 100644 inline n.txt\n")
    data(str(i))
for b in range(branches):
    point = 1 + b * (commits - 1) // max(branches, 1)
    ref = f"refs/heads/cup/proposal/01J{b:023d}"
    if merged:
        out.write(f"reset {ref}\nfrom :{point}\n\n")
    else:
        out.write(f"commit {ref}\n")
        out.write(f"committer t <t@t> {1800000000 + b} +0000\n")
        data(f"proposal {b}")
        out.write(f"from :{point}\nM 100644 inline p.txt\n")
        data(str(b))
EOF
}

mkdir -p "$work/root" "$work/config" "$work/src"
make_remote "$work/root/big.git" "$COMMITS" "$BRANCHES" "$MERGED"
make_remote "$work/root/small.git" 10 3 0
cat >"$work/config/def.json" <<'EOF'
{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"resources.test.cup.flipt.io"},"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":{"type":"object"}}}}
EOF
cat >"$work/config/ctl.json" <<'EOF'
{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"template"},"spec":{"type":"template"}}
EOF
cat >"$work/config/bind.json" <<'EOF'
{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Binding","metadata":{"name":"template"},"spec":{"controller":"template","resources":["test.cup.flipt.io/v1alpha1/resources"]}}
EOF

dport=$(free_port)
git daemon --reuseaddr --export-all --verbose --listen=127.0.0.1 --port="$dport" \
    --base-path="$work/root" "$work/root" 2>"$work/daemon.log" &
pids+=($!)
sleep 0.5

upload_packs() { grep -c "Request upload-pack" "$work/daemon.log" || true; }

# cupd $1 on remote $2, cache $3; sets `port` once it is ready (not in a subshell: the
# EXIT trap would run there).
start_cupd() {
    local bin=$1 repo=$2 cache=$3
    port=$(free_port)
    "$bin" serve -api-address "127.0.0.1:$port" -api-resources "$work/config" \
        -api-local-path "$work/src" --store "$work/store" -api-source git \
        -api-git-repo "git://127.0.0.1:$dport/$repo" --git-cache "$cache" \
        --git-fetch-interval 0s -log-level warn >/dev/null 2>>"$work/cupd.log" &
    pids+=($!)
    for _ in $(seq 600); do
        if curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
            return
        fi
        sleep 0.1
    done
    echo "cupd did not start; log:" >&2
    cat "$work/cupd.log" >&2
    exit 1
}

kind=$([ "$MERGED" = 1 ] && echo merged || echo open)
for bin in "$@"; do
    n=$((${n:-0} + 1))
    echo "== $bin"
    start_cupd "$bin" big.git "$work/cache-big-$n"
    big_pid=${pids[-1]}
    times=()
    for _ in 1 2 3; do
        t=$(curl -s -o "$work/list.json" -w '%{time_total}' "http://127.0.0.1:$port/proposals")
        times+=("$t")
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
    bytes=$(wc -c <"$work/list.json")
    echo "GET /proposals, $BRANCHES $kind proposal branches over $COMMITS commits: ${times[*]} s (median $median s), $bytes bytes"
    # Every page, following `metadata.continue` (a cupd that answers one array: one page).
    python3 - "$port" <<'PY'
import json, sys, time, urllib.request
port, token, ids, pages, start = sys.argv[1], None, 0, 0, time.monotonic()
while True:
    url = f"http://127.0.0.1:{port}/proposals" + (f"?continue={token}" if token else "")
    body = json.load(urllib.request.urlopen(url))
    pages += 1
    if isinstance(body, list):
        ids += len(body)
        break
    ids += len(body["items"])
    token = body["metadata"].get("continue")
    if not token:
        break
print(f"every page: {ids} proposals in {pages} pages, {time.monotonic() - start:.3f} s")
PY
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$big_pid/status")
    echo "cupd peak RSS after the listings: ${rss} KiB"

    kill "$big_pid"
    start_cupd "$bin" small.git "$work/cache-small-$n"
    before=$(upload_packs)
    start=$(date +%s.%N)
    seq "$CLIENTS" | xargs -P "$CLIENTS" -I{} \
        curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$port/proposals" \
        >"$work/codes.txt"
    end=$(date +%s.%N)
    after=$(upload_packs)
    codes=$(sort "$work/codes.txt" | uniq -c | tr -s ' ' | tr '\n' ',')
    echo "$CLIENTS concurrent GET /proposals: $((after - before)) upload-packs, $(awk "BEGIN {printf \"%.2f\", $end - $start}") s, statuses:$codes"
done
