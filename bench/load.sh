#!/usr/bin/env bash
# The load run (`just load`): release cupd with the example Flipt controller,
# `cup-load` (tests/src/bin/cup-load.rs) with 64 clients of mixed get/list/put/delete,
# every write checked afterwards. First the local source (a temp copy of
# examples/flipt/repo) for $LOAD_DURATION, then the Git source (a temp bare repository
# seeded with the same files) for $LOAD_GIT_DURATION. cupd's VmRSS is sampled every second.
# Writes bench/work/load.md (tables, machine, load averages, the commands) and, under
# bench/work/load/, each run's JSON report and cupd log. Exit status 1 if a run failed.
#   LOAD_DURATION (10m)  LOAD_GIT_DURATION (3m)  LOAD_CLIENTS (64)
#   LOAD_MIX (get=50,list=20,put=20,delete=10)  LOAD_WARMUP (60s)  LOAD_SEED (from the clock)
#   LOAD_SOURCES ("local git"): which runs to make, e.g. LOAD_SOURCES=git for the Git one only.
#   LOAD_GIT_TRANSPORT (daemon): how cupd reaches the remote. `daemon` serves it with
#   `git daemon` on 127.0.0.1 (git://, the smart protocol any real remote speaks); `path`
#   names the directory, which libgit2 serves with its local transport: that reads the
#   object of every ref on each connect, so with ~1,000 proposal branches each fetch and
#   push costs ~0.1 s more (measured; see docs/RELIABILITY.md).
#
# `bench/load.sh --soak`: instead, the soak run (bench/soak.py) on the Git source: a modest
# steady load (SOAK_WRITE_RATE proposals/s, each merged; SOAK_READ_RATE reads/s at the base
# and at recent commits) for SOAK_DURATION (6h), sampled every SOAK_SAMPLE (60s): cupd's RSS,
# the cache's disk use, snapshot directories, packs, loose objects, the remote's refs and the
# latencies. Writes bench/work/soak.md (the curve) and bench/work/load/soak.csv (every
# sample). SOAK_CUPD_ARGS adds cupd flags (e.g. "--git-snapshots 16").
set -euo pipefail
source "$(dirname "$0")/lib.sh"
soak=''
case "${1:-}" in
  --soak) soak=1 ;;
  '') ;;
  *) echo "usage: bench/load.sh [--soak]  (settings are environment variables: see the script's header)" >&2; exit 2 ;;
esac
duration="${LOAD_DURATION:-10m}"
git_duration="${LOAD_GIT_DURATION:-3m}"
sources="${LOAD_SOURCES:-local git}"
clients="${LOAD_CLIENTS:-64}"
mix="${LOAD_MIX:-get=50,list=20,put=20,delete=10}"
warmup="${LOAD_WARMUP:-60s}"
seed="${LOAD_SEED:-$(date +%s)}"
b="$work/load"
rm -rf "$b" && mkdir -p "$b/config/ctl" "$b/store" "$b/unused-source"
cd "$root"
trap cupd_stop EXIT

echo "==> release builds (cupd, cup-embed, cup-load) and the example controller" >&2
cargo build --quiet --release -p cupd -p cup-embed -p cup-e2e --bins
"$root/bench/install-bins.sh"
cargo build --quiet --release --target wasm32-wasip1 --manifest-path examples/flipt/Cargo.toml \
  --target-dir examples/flipt/target
"$bin/cup-embed" -o "$b/config/ctl/flipt.wasm" examples/flipt/defs/*.json "$flipt_plain" >/dev/null
echo '{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"flipt"},"spec":{"type":"wasm","spec":{"path":"ctl/flipt.wasm"}}}' \
  >"$b/config/flipt.json"

# start_cupd LOG ARGS...: a release cupd with the flipt config on a free port, waited for
# until ready; sets CUPD_PID and PORT (cupd_stop in lib.sh stops it).
start_cupd() {
  local log=$1; shift
  PORT=$(free_port)
  cupd_serve "$PORT" "$log" -api-resources "$b/config" --store "$b/store" \
    --code-cache "$b/code-cache" "$@"
}

# run_load NAME DURATION ARGS...: cup-load against the running cupd; records the command,
# the load average before and after and the exit status in $b/NAME.*.
run_load() {
  local name=$1 for=$2; shift 2
  local cmd=("$bin/cup-load" --url "http://127.0.0.1:$PORT" --clients "$clients" --duration "$for"
    --mix "$mix" --warmup "$warmup" --seed "$seed" --pid "$CUPD_PID"
    --json "$b/$name.json" --markdown "$b/$name.md" "$@")
  echo "${cmd[*]}" | sed "s|$root/||g" >"$b/$name.cmd"
  loadavg >"$b/$name.load-before"
  echo "==> $name: $clients clients for $for (load $(cat "$b/$name.load-before"))" >&2
  local status=0
  "${cmd[@]}" >&2 || status=$?
  loadavg >"$b/$name.load-after"
  echo "$status" >"$b/$name.status"
}

# start_git_remote: a bare remote seeded with the example's files at $b/remote.git, served
# by git daemon unless LOAD_GIT_TRANSPORT=path; sets git_url (and DAEMON_PID).
start_git_remote() {
  git init -q --bare -b main "$b/remote.git"
  git clone -q "$b/remote.git" "$b/seed" 2>/dev/null
  cp -R examples/flipt/repo/. "$b/seed/"
  git -C "$b/seed" add -A
  git -C "$b/seed" -c user.name=seed -c user.email=seed@load commit -q -m "seed: examples/flipt/repo"
  git -C "$b/seed" push -q origin main
  git_url="$b/remote.git"
  DAEMON_PID=''
  if [ "${LOAD_GIT_TRANSPORT:-daemon}" = daemon ]; then
    daemon_port=$(free_port)
    # git-daemon itself, not `git daemon` (which runs it as a child that a kill leaves behind).
    "$(git --exec-path)/git-daemon" --reuseaddr --export-all --enable=receive-pack --listen=127.0.0.1 \
      --port="$daemon_port" --base-path="$b" "$b" >"$b/git-daemon.log" 2>&1 &
    DAEMON_PID=$!
    trap 'cupd_stop; kill "$DAEMON_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
      git ls-remote "git://127.0.0.1:$daemon_port/remote.git" >/dev/null 2>&1 && break
      sleep 0.1
    done
    git_url="git://127.0.0.1:$daemon_port/remote.git"
  fi
}

if [ -n "$soak" ]; then
  soak_duration="${SOAK_DURATION:-6h}"
  start_git_remote
  # shellcheck disable=SC2086 # SOAK_CUPD_ARGS is a list of flags
  start_cupd "$b/cupd-soak.log" -api-local-path "$b/unused-source" -api-source git \
    -api-git-repo "$git_url" --git-cache "$b/git-cache" ${SOAK_CUPD_ARGS:-}
  cmd=(python3 "$root/bench/soak.py" --url "http://127.0.0.1:$PORT" --pid "$CUPD_PID"
    --git-cache "$b/git-cache" --remote "$b/remote.git" --duration "$soak_duration"
    --write-rate "${SOAK_WRITE_RATE:-1}" --read-rate "${SOAK_READ_RATE:-20}"
    --sample "${SOAK_SAMPLE:-60s}" --csv "$b/soak.csv" --markdown "$b/soak.body.md")
  echo "==> soak for $soak_duration (load $(loadavg)): ${cmd[*]}" >&2
  status=0
  "${cmd[@]}" >"$b/soak.samples" || status=$?
  cupd_stop
  {
    echo "# Soak run ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r);"\
      "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)');"\
      "release cupd on the Git source (git:// through git daemon), driver on the same machine; load at the end $(loadavg)."
    echo "Command: \`SOAK_DURATION=$soak_duration SOAK_WRITE_RATE=${SOAK_WRITE_RATE:-1} SOAK_READ_RATE=${SOAK_READ_RATE:-20} SOAK_CUPD_ARGS='${SOAK_CUPD_ARGS:-}' bench/load.sh --soak\`; exit status $status."
    echo
    cat "$b/soak.body.md" 2>/dev/null || echo "(no report: the driver failed, see $b/soak.samples)"
  } >"$work/soak.md"
  echo "==> wrote bench/work/soak.md" >&2
  exit "$status"
fi

if [[ " $sources " == *" local "* ]]; then
  cp -R examples/flipt/repo "$b/local-source"
  start_cupd "$b/cupd-local.log" -api-local-path "$b/local-source"
  run_load local "$duration"
  cupd_stop
fi

# git_push_yardstick: what the same remote costs the git CLI now that the run has left its
# proposal branches there: the median of 5 pushes of a new one-commit branch, the way cupd
# proposes (the CLI also walks every advertised ref and the remote advertises them all).
git_push_yardstick() {
  local times=() branches i c t0
  branches=$(git ls-remote --heads "$git_url" | wc -l)
  for i in 1 2 3 4 5; do
    c=$(git -C "$b/seed" commit-tree -p HEAD -m "yardstick $i" "HEAD^{tree}")
    t0=$(date +%s%N)
    git -C "$b/seed" push -q "$git_url" "$c:refs/heads/load-yardstick/$i"
    times+=($(( ($(date +%s%N) - t0) / 1000000 )))
  done
  echo "After the run the remote has $branches branches; a \`git push\` of a one-commit branch to it" \
    "(the git CLI, same transport) takes a median $(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p) ms" \
    "(5 pushes: ${times[*]} ms)."
}

if [[ " $sources " == *" git "* ]]; then
  start_git_remote
  echo "git remote: $git_url" >&2
  start_cupd "$b/cupd-git.log" -api-local-path "$b/unused-source" -api-source git \
    -api-git-repo "$git_url" --git-cache "$b/git-cache"
  run_load git "$git_duration" --source git --git-remote "$b/remote.git"
  cupd_stop
  git_push_yardstick >"$b/git.yardstick"
fi

section() {
  local name=$1 title=$2
  echo "## $title"
  echo
  echo "Load average (1 min) before $(cat "$b/$name.load-before"), after $(cat "$b/$name.load-after"); exit status $(cat "$b/$name.status"); cupd log $(du -h "$b/cupd-$name.log" | cut -f1)."
  echo
  echo '```'
  cat "$b/$name.cmd"
  echo '```'
  echo
  if [ -f "$b/$name.yardstick" ]; then cat "$b/$name.yardstick"; echo; fi
  if [ -f "$b/$name.md" ]; then cat "$b/$name.md"; else echo "(no report: cup-load failed before the end, see above)"; fi
  echo
}
{
  echo "# Load run ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"\
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r);"\
    "$(rustc --version | cut -d' ' -f1-2); commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')."
  echo "Release builds; cup-load runs on the same machine as cupd (2 worker threads), so both share the cores."
  echo "Command: \`LOAD_DURATION=$duration LOAD_GIT_DURATION=$git_duration LOAD_CLIENTS=$clients LOAD_SEED=$seed bench/load.sh\`."
  echo
  [[ " $sources " == *" local "* ]] && section local "Local source ($duration)"
  [[ " $sources " == *" git "* ]] && section git "Git source ($git_duration)"
} >"$work/load.md"
echo "==> wrote bench/work/load.md" >&2
for name in $sources; do [ "$(cat "$b/$name.status")" = 0 ] || exit 1; done
