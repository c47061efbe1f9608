#!/usr/bin/env bash
# Copies our release binaries into target/bench-bin, which is what the figures run (run by
# every bench script after its builds; cheap when nothing changed).
#
# Why copies: they are installed as `cargo install` installs them (a copy of the linker's
# output), as the peers were copied into place by their installers. A binary run straight
# from the file the linker just wrote starts slower on this kernel (6.18, ext4):
# `cup controller definitions` took 2.5–2.7 ms against 1.8–2.0 ms for a `cp` of the same
# file (359 against 329 page faults; 2026-11-28), and cup-embed ≈ 0.5–1 ms more.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/target/bench-bin"
for name in cup cupd cup-embed cup-load cup-bench-guest-timer; do
  built="$root/target/release/$name"
  installed="$root/target/bench-bin/$name"
  [ -f "$built" ] || continue
  if ! cmp -s "$built" "$installed"; then
    # A new file, never the old one rewritten in place (a running benchmark may hold it).
    cp "$built" "$installed.new"
    mv -f "$installed.new" "$installed"
  fi
done
