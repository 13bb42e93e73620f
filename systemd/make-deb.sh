#!/usr/bin/env bash
# `npm run package`: an architecture-independent Debian package of the built release,
# laid out by install.sh (DESTDIR) with production dependencies only.
#   systemd/make-deb.sh [OUTDIR]    (default: dist/pkg) → OUTDIR/shoal_<version>_all.deb
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/dist/pkg}
command -v dpkg-deb >/dev/null || { echo "make-deb: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }
version=$(node -p "require('$src/package.json').version")
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT

DESTDIR="$stage" bash "$src/systemd/install.sh" >/dev/null
# The credential is made by postinst, not shipped: a conffile there would be replaced on purge/reinstall.
rm -rf "$stage/etc/credstore"
install -D -m 0644 "$src/systemd/config.example.json" "$stage/usr/share/doc/shoal/config.example.json"
install -D -m 0644 "$src/README.md" "$stage/usr/share/doc/shoal/README.md"
cp -a "$src/docs" "$stage/usr/share/doc/shoal/docs"
if find "$stage" -name '*.node' | grep -q .; then echo "make-deb: native code in the release: not architecture-independent" >&2; exit 1; fi

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: shoal
Version: $version
Architecture: all
Section: net
Priority: optional
Maintainer: shoal developers <shoal@localhost>
Depends: nodejs (>= 20.19)
Installed-Size: $size
Homepage: https://github.com/shoal/shoal
Description: LAN peer-to-peer software update distribution
 shoald runs on every machine of a site: the daemons find each other by mDNS,
 share verified chunks of updates, and pull each byte from the origin once per
 site. Each machine's daemon is also its apt proxy and container registry mirror,
 and fetches plain URLs with a known SHA-256, all checked against their hashes.
EOF
printf '/etc/shoal/config.json\n/etc/apt/apt.conf.d/80shoal\n' > "$stage/DEBIAN/conffiles"

# Maintainer scripts: systemd only where it runs (not in a chroot, a container build, or
# an install into another root, where DPKG_ROOT is set).
cat > "$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  cred="${DPKG_ROOT:-}/etc/credstore/shoal.site-secret"
  # LoadCredential= refuses a missing file; empty is an open site until the site's secret is put there.
  if [ ! -e "$cred" ]; then
    install -d -m 0700 "$(dirname "$cred")"
    install -m 0600 /dev/null "$cred"
  fi
  if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemd-tmpfiles --create shoal.conf >/dev/null || true
    systemctl daemon-reload
    systemctl enable shoal.service >/dev/null 2>&1 || true
    if [ -n "$2" ]; then systemctl try-restart shoal.service || true; else systemctl start shoal.service || true; fi
  fi
fi
exit 0
EOF
cat > "$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl disable --now shoal.service >/dev/null 2>&1 || true
fi
exit 0
EOF
cat > "$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
root="${DPKG_ROOT:-}"
if [ "$1" = purge ]; then
  # The cache and state (DynamicUser= keeps them under private/), and the secret if it is still the empty one.
  rm -rf "$root/var/cache/private/shoal" "$root/var/lib/private/shoal" "$root/var/cache/shoal" "$root/var/lib/shoal" "$root/run/shoal"
  cred="$root/etc/credstore/shoal.site-secret"
  if [ -f "$cred" ] && [ ! -s "$cred" ]; then rm -f "$cred"; rmdir "$root/etc/credstore" 2>/dev/null || true; fi
  rmdir "$root/etc/shoal" 2>/dev/null || true
fi
if [ -z "$root" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/shoal_${version}_all.deb"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "$deb"
