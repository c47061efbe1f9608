#!/bin/sh
# usage: bench/list-amplify.sh CUPD_BINARY PORT [extra cupd flags]
# (build the probe first: cargo build --release --target wasm32-wasip1 --manifest-path
# tests/guests/Cargo.toml --target-dir tests/guests/target)
# Serves the probe guest's Braces Kind and lists 15 MiB of {} once; prints status, body
# size, time and cupd's VmRSS before / VmHWM (peak) and VmRSS after.
set -e
BIN=$1; PORT=$2; shift 2
W=$(mktemp -d)
mkdir -p $W/cfg $W/src $W/store
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cp $ROOT/tests/guests/target/wasm32-wasip1/release/probe.wasm $W/cfg/probe.wasm
cat > $W/cfg/def.json <<'J'
{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"braces.example.com"},"names":{"kind":"Braces","singular":"brace","plural":"braces"},"spec":{"group":"example.com","versions":{"v1":{"type":"object"}}}}
J
echo '{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"probe"},"spec":{"type":"wasm","spec":{"path":"probe.wasm"}}}' > $W/cfg/ctl.json
echo '{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Binding","metadata":{"name":"probe"},"spec":{"controller":"probe","resources":["example.com/v1/braces"]}}' > $W/cfg/bind.json
$BIN serve -api-address 127.0.0.1:$PORT -api-resources $W/cfg -api-local-path $W/src --store $W/store "$@" 2>$W/log &
PID=$!
until curl -sf http://127.0.0.1:$PORT/readyz >/dev/null; do sleep 0.2; done
rss() { grep "^$1:" /proc/$PID/status | tr -s ' ' | cut -d' ' -f2; }
B=$(rss VmRSS)
R=$(curl -s -o $W/body -w '%{http_code} %{size_download} %{time_total}' http://127.0.0.1:$PORT/apis/example.com/v1/namespaces/15728640/braces)
echo "status/bytes/seconds: $R; VmRSS before ${B} kB, VmHWM $(rss VmHWM) kB, VmRSS after $(rss VmRSS) kB"
head -c 300 $W/body; echo
kill $PID; wait $PID 2>/dev/null || true
rm -rf $W
