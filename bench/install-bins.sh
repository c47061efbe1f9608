#!/usr/bin/env bash
# Copies our release binaries into target/bench-bin, which is what the figures run (run by
# every bench script after its builds; cheap when nothing changed).
#
# Why copies: they are installed as `cargo install` installs them (a copy of the linker's
# output), as the peers were copied into place by their installers. A binary run straight
# from the file the linker just wrote starts measurably slower (more page faults) than a
# copy of the same bytes, which would bias every whole-process figure against cup.
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
