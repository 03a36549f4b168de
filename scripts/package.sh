#!/usr/bin/env bash
# Builds the Debian package with dpkg-deb alone: no cargo-deb to install,
# no debian/ source tree; every file it ships is in this repository
# (packaging/debian/, scripts/systemd/) or made from the binary itself
# (man pages, shell completions).
#
#   scripts/package.sh                      # cargo build --release, then the .deb in target/debian/
#   scripts/package.sh --binary PATH        # package this binary instead (tests: the debug build)
#   scripts/package.sh --out DIR            # where the .deb goes
#   scripts/package.sh --compress none      # dpkg-deb's -Z (default xz)
#
# Prints the path of the .deb. Needs dpkg-deb and binutils (strip, objdump).
set -euo pipefail
cd "$(dirname "$0")/.."

binary="" out="target/debian" compress="xz"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --compress) compress="$2"; shift 2 ;;
    *) echo "scripts/package.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in dpkg-deb strip objdump gzip; do
  command -v "$tool" >/dev/null || { echo "scripts/package.sh: $tool is missing (apt-get install dpkg binutils gzip)" >&2; exit 1; }
done
if [ -z "$binary" ]; then
  cargo build --release --locked --bin mailwarrant >&2
  binary="${CARGO_TARGET_DIR:-target}/release/mailwarrant"
fi

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
description="$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d "${TMPDIR:-/tmp}/mailwarrant-package.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"

# The binary, without its debug info (Debian packages ship none).
install -D -m 0755 "$binary" "$stage/usr/bin/mailwarrant"
strip --strip-debug "$stage/usr/bin/mailwarrant"

# The config template (a conffile), the units, the account, log rotation.
install -D -m 0644 packaging/debian/mailwarrant.toml "$stage/etc/mailwarrant/mailwarrant.toml"
install -D -m 0644 packaging/debian/logrotate "$stage/etc/logrotate.d/mailwarrant"
install -D -m 0644 packaging/debian/sysusers.conf "$stage/usr/lib/sysusers.d/mailwarrant.conf"
# /lib, not /usr/lib: bookworm's dpkg does not know the two are one folder.
for unit in scripts/systemd/*.service scripts/systemd/*.socket; do
  install -D -m 0644 "$unit" "$stage/lib/systemd/system/$(basename "$unit")"
done

# Man pages and completions, from the CLI of the binary being shipped.
"$stage/usr/bin/mailwarrant" generate-man "$stage/usr/share/man/man1"
gzip -9n "$stage"/usr/share/man/man1/*.1
complete() { install -d "$(dirname "$2")"; "$stage/usr/bin/mailwarrant" completions "$1" >"$2"; }
complete bash "$stage/usr/share/bash-completion/completions/mailwarrant"
complete zsh "$stage/usr/share/zsh/vendor-completions/_mailwarrant"
complete fish "$stage/usr/share/fish/vendor_completions.d/mailwarrant.fish"

install -D -m 0644 README.md "$stage/usr/share/doc/mailwarrant/README.md"
cat >"$stage/usr/share/doc/mailwarrant/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mailwarrant

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

# The newest glibc symbol version the binary uses is the libc6 it needs.
glibc="$(objdump -T "$stage/usr/bin/mailwarrant" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)"
install -d "$stage/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DESCRIPTION@/$description/" \
  -e "s/@DEPENDS@/libc6 (>= $glibc), systemd | adduser/" packaging/debian/control.in >"$stage/DEBIAN/control"
echo "Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)" >>"$stage/DEBIAN/control"
printf '%s\n' /etc/mailwarrant/mailwarrant.toml /etc/logrotate.d/mailwarrant >"$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$stage/DEBIAN/$script"
done

mkdir -p "$out"
deb="$out/mailwarrant_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compress" --build "$stage" "$deb" >&2
echo "$deb"
