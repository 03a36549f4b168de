#!/usr/bin/env bash
# The test command (README): installs what the tests need from Debian's
# packages when missing, then checks formatting and lints and runs the
# whole suite. Tests start their own slapd, Postfix, ... on free loopback
# ports; nothing here starts a long-lived service.
set -euo pipefail
cd "$(dirname "$0")/.."

# The packages and the file that proves each installed: one list, also
# read by the test kit to name a missing package in a test's failure.
# Prints "package proof" for each one whose proof is missing.
unproven() {
  local package proof
  while read -r package proof _; do
    case "$package" in '' | '#'*) continue ;; esac
    # shellcheck disable=SC2086 # a `*` in the proof is a glob on purpose
    compgen -G $proof >/dev/null || echo "$package $proof"
  done <scripts/test-packages.txt
}

mapfile -t missing < <(unproven | cut -d' ' -f1)
if [ ${#missing[@]} -gt 0 ]; then
  . /etc/os-release
  [ "${VERSION_CODENAME:-}" = bookworm ] ||
    echo "scripts/test.sh: the suite is tested on Debian 12 (bookworm); this is ${PRETTY_NAME:-unknown}" >&2
  echo "scripts/test.sh: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Never configure the packaged instances: tests run private ones.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  still="$(unproven)"
  if [ -n "$still" ]; then
    printf 'scripts/test.sh: installed, but these files are still missing:\n%s\n' "$still" >&2
    exit 1
  fi
fi

# Parts Debian cannot install side by side (e.g. Exim beside Postfix).
for setup in scripts/setup/*.sh; do
  if [ -e "$setup" ]; then bash "$setup"; fi
done

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

# The fuzz targets (fuzz/, a workspace of their own) built as plain
# binaries on the stable toolchain, so they never rot: no cargo-fuzz or
# nightly needed (scripts/fuzz.sh runs them instrumented). The main lock
# file pins the shared dependencies, so the main target folder's builds
# are reused; each target then runs on a thousand generated inputs.
cp Cargo.lock fuzz/Cargo.lock
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" cargo build --manifest-path fuzz/Cargo.toml --bins
for target in $(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^mailwarrant-fuzz$'); do
  "${CARGO_TARGET_DIR:-$PWD/target}/debug/$target" -runs=1000 -seed=1 >/dev/null 2>&1 ||
    { echo "scripts/test.sh: fuzz target $target failed" >&2; exit 1; }
done

# The Debian package's maintainer scripts run only on a real install, which
# the suite cannot do: check their syntax here. The package itself is
# built, verified, unpacked and served by tests/it/package.rs below.
for script in packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm; do
  sh -n "$script" || { echo "scripts/test.sh: $script does not parse" >&2; exit 1; }
done

cargo test --locked --all-features
