#!/usr/bin/env bash
# Checks what building and testing cup needs, before anything is built.
#
#   scripts/prerequisites.sh build   what `cargo build` of the workspace and the quick start need
#   scripts/prerequisites.sh test    that, plus what the test suite starts or drives
#
# Missing Debian packages are installed when this runs as root on Debian (apt-get), and a
# missing wasm32-wasip1 or wasm32-wasip2 target is added with rustup (no root needed). Anything it cannot
# install is named with the exact command to run, and it exits 1 without building anything.
# CUP_NO_INSTALL=1 only checks.
set -euo pipefail

what=${1:-test}
case "$what" in
  build | test) ;;
  -h | --help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [build|test]" >&2
    exit 2
    ;;
esac

missing_pkgs=()   # Debian packages
missing_other=()  # lines of advice for what apt cannot give
need() { missing_pkgs+=("$1"); }

# --- what every build needs -------------------------------------------------------------
command -v cargo >/dev/null ||
  missing_other+=("Rust (cargo, rustc 1.95): curl --proto '=https' -sSf https://sh.rustup.rs | sh")
# git2 builds its bundled libgit2 with a C compiler, against the system OpenSSL found by
# pkg-config (https remotes); the wasm runtime's build scripts need a C compiler too.
command -v cc >/dev/null || need build-essential
command -v pkg-config >/dev/null || need pkg-config
if command -v pkg-config >/dev/null; then
  pkg-config --exists openssl 2>/dev/null || need libssl-dev
elif ! dpkg -s libssl-dev >/dev/null 2>&1; then
  need libssl-dev
fi
# The Git source drives libgit2, and the quick start shows its result with `git diff`.
command -v git >/dev/null || need git

# --- what the test suite starts or drives -----------------------------------------------
if [ "$what" = test ]; then
  # The OCI tests start Debian's registry (distribution v2) on 127.0.0.1 themselves.
  [ -x /usr/bin/docker-registry ] || need docker-registry
  # The SSH Git tests start their own sshd with a fresh host key and an ssh-agent.
  [ -x /usr/sbin/sshd ] || need openssh-server
  command -v ssh-keygen >/dev/null && command -v ssh-agent >/dev/null || need openssh-client
  # The interop tests make a venv with Python `oras` (from PyPI) under target/.
  if ! command -v python3 >/dev/null; then
    need python3 && need python3-venv
  elif ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    need python3-venv
  fi
  # The JavaScript example controller is built with npm packages (componentize-js); its
  # build fetches a Node 20 from npm itself when the system's node is older.
  command -v node >/dev/null || need nodejs
  command -v npm >/dev/null || need npm
fi

# --- install what can be installed --------------------------------------------------------
is_debian() { [ -f /etc/debian_version ] && command -v apt-get >/dev/null; }
if [ ${#missing_pkgs[@]} -gt 0 ]; then
  if [ "${CUP_NO_INSTALL:-0}" != 1 ] && is_debian && [ "$(id -u)" = 0 ]; then
    echo "prerequisites: installing ${missing_pkgs[*]} (apt-get)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing_pkgs[@]}" >/dev/null
    missing_pkgs=()
  elif is_debian; then
    sudo=sudo\ ; [ "$(id -u)" = 0 ] && sudo=''
    missing_other+=("${sudo}apt-get install --no-install-recommends ${missing_pkgs[*]}")
  else
    missing_other+=("the packages that give: ${missing_pkgs[*]} (Debian names)")
  fi
fi

# The controllers the tests and the quick start build are wasm32-wasip1 modules; the tests also
# build the example controller as a wasm32-wasip2 component.
for target in wasm32-wasip1 wasm32-wasip2; do
  if command -v rustup >/dev/null; then
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
      if [ "${CUP_NO_INSTALL:-0}" != 1 ]; then
        echo "prerequisites: adding the $target target (rustup)" >&2
        rustup target add "$target" >&2
      else
        missing_other+=("rustup target add $target")
      fi
    fi
  elif command -v rustc >/dev/null &&
    [ ! -d "$(rustc --print sysroot)/lib/rustlib/$target" ]; then
    missing_other+=("the $target standard library for your rustc (with rustup: rustup target add $target)")
  fi
done

if [ ${#missing_other[@]} -gt 0 ]; then
  echo "prerequisites: missing; nothing was built. Run:" >&2
  for line in "${missing_other[@]}"; do echo "  $line" >&2; done
  exit 1
fi
