#!/usr/bin/env bash
# Runs mailwarrant on the embedded default: the LDIF demo directory and a
# SQLite store, no servers needed. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -- serve --config config/demo.toml "$@"
