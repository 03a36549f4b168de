#!/bin/sh
# Runs every cargo-fuzz target for N seconds (default 60) each; further
# arguments go to `cargo fuzz run` (e.g. --dev for a quicker build).
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only sanitizer flags.
#   scripts/fuzz.sh 60 --dev
set -eu
seconds="${1:-60}"
[ $# -gt 0 ] && shift
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
for target in $(cargo fuzz list); do
    echo "== $target ($seconds s)"
    cargo fuzz run "$@" "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048
done
