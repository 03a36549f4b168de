#!/usr/bin/env bash
# The test command (README): installs what the tests need from Debian's
# packages when missing, then checks formatting and lints and runs the
# whole suite. Tests start their own slapd, Postfix, ... on free loopback
# ports; nothing here starts a long-lived service.
set -euo pipefail
cd "$(dirname "$0")/.."

# package:file-that-proves-it-is-installed
REQUIRED=(
  slapd:/usr/sbin/slapd
  samba:/usr/sbin/samba
  ldap-utils:/usr/bin/ldapsearch
  postfix:/usr/sbin/postfix
  swaks:/usr/bin/swaks
  sasl2-bin:/usr/sbin/testsaslauthd
  python3-aiosmtpd:/usr/lib/python3/dist-packages/aiosmtpd
  chromium:/usr/bin/chromium
  chromium-driver:/usr/bin/chromedriver
  systemd:/usr/bin/systemd-socket-activate
  openssl:/usr/bin/openssl
  tzdata:/usr/share/zoneinfo/Europe/Berlin
  curl:/usr/bin/curl
  redis-server:/usr/bin/redis-server
  redis-tools:/usr/bin/redis-cli
)

missing=()
for pair in "${REQUIRED[@]}"; do
  [ -e "${pair#*:}" ] || missing+=("${pair%%:*}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Never configure the packaged instances: tests run private ones.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Parts Debian cannot install side by side (e.g. Exim beside Postfix).
for setup in scripts/setup/*.sh; do
  if [ -e "$setup" ]; then bash "$setup"; fi
done

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --all-features
