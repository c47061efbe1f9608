#!/usr/bin/env bash
# The whole test suite: checks (and on Debian as root, installs) what the tests need, before
# anything is built, then runs every test of the workspace. Arguments go to `cargo test`
# (e.g. `scripts/test.sh -p cup-git`). `.ci/run` runs exactly this after fmt and clippy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/prerequisites.sh test
# --no-fail-fast: one failing test binary must not hide the results of the others.
exec cargo test --workspace --no-fail-fast "$@"
