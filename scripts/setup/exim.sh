#!/usr/bin/env bash
# Unpacks Exim 4 (exim4-daemon-heavy, the only build with the dovecot
# authenticator) beside Postfix, for the AUTH tests. Debian's exim4
# packages conflict with postfix, so the .deb is unpacked with dpkg -x,
# its missing shared libraries are installed, and the Debian-exim user is
# created. Idempotent; the tests look for the binary at
# ${MAILWARRANT_EXIM_DIR:-/opt/mailwarrant-test/exim4}/usr/sbin/exim4.
set -euo pipefail

DIR="${MAILWARRANT_EXIM_DIR:-/opt/mailwarrant-test/exim4}"
EXIM="$DIR/usr/sbin/exim4"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing_libs() {
  ldd "$EXIM" | awk '/not found/ {print $1}'
}

if [ ! -x "$EXIM" ]; then
  echo "scripts/setup/exim.sh: unpacking exim4-daemon-heavy into $DIR" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download exim4-daemon-heavy >/dev/null 2>&1 || { $SUDO apt-get update -qq && apt-get download exim4-daemon-heavy >/dev/null; })
  $SUDO mkdir -p "$DIR"
  $SUDO dpkg -x "$work"/exim4-daemon-heavy_*.deb "$DIR"
fi

# Install the packages that provide the libraries ldd cannot find.
libs="$(missing_libs || true)"
if [ -n "$libs" ]; then
  packages=()
  for lib in $libs; do
    # Debian names: libfoo.so.3 -> libfoo3; libfoo2.so.2 -> libfoo2-2.
    base="${lib%%.so.*}"
    soname="${lib##*.so.}"
    soname="${soname%%.*}"
    found=""
    for guess in "$base$soname" "$base-$soname"; do
      if apt-cache show "$guess" >/dev/null 2>&1; then found="$guess"; break; fi
    done
    if [ -n "$found" ]; then
      packages+=("$found")
    else
      echo "scripts/setup/exim.sh: no package found for $lib" >&2
    fi
  done
  if [ ${#packages[@]} -gt 0 ]; then
    echo "scripts/setup/exim.sh: installing ${packages[*]}" >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null \
      || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; }
  fi
fi
libs="$(missing_libs || true)"
if [ -n "$libs" ]; then
  echo "scripts/setup/exim.sh: still missing: $libs" >&2
  exit 1
fi

# Exim refuses to run without its system user.
if ! getent passwd Debian-exim >/dev/null; then
  $SUDO adduser --system --group --no-create-home --home /var/spool/exim4 Debian-exim >/dev/null 2>&1 \
    || $SUDO useradd --system --user-group --no-create-home --home-dir /var/spool/exim4 --shell /usr/sbin/nologin Debian-exim
fi

"$EXIM" -C /dev/null -bV | head -1
