#!/usr/bin/env bash
# Figure: what access control costs per request. A release cupd serves GET of one resource
# through the template controller (the cheapest route there is, so the access check is as
# large a share of the request as it can be), driven by wrk at c=1 and c=16, keep-alive:
#   open            no access control (the default)
#   token, 1 rule   a bearer token from a 2-token file, a policy of one rule
#   token, 100 rules the same token, the caller's rule the last of 100 (the worst case:
#                   every rule is looked at)
#   TLS + token, 100 rules   the same over HTTPS (one handshake per connection)
# The four cupds run side by side and are driven in turn, round by round.
# Writes bench/work/access.md (the samples in bench/work/access/access.json) and prints it.
#   BENCH_ROUNDS (3), BENCH_DURATION seconds per wrk run (3)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ -z "${BENCH_PREPARED:-}" ]; then
  (cd "$root" && cargo build --quiet --release -p cupd)
  "$root/bench/install-bins.sh"
fi
b="$work/access"
rm -rf "$b" && mkdir -p "$b"
python3 "$root/bench/access.py" "$b" "$bin/cupd" "$root/bench/wrk.lua"
cp "$b/access.md" "$work/access.md"
