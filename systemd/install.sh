#!/usr/bin/env bash
# Install a built shoal (run `npm ci && npm run build` first) under DESTDIR (default: /).
#   systemd/install.sh              install or update (idempotent)
#   systemd/install.sh --uninstall  remove what install put there (a changed config is kept)
# Layout: /usr/lib/shoal (the release), /usr/bin/shoal and /usr/bin/shoald (wrappers),
# /usr/lib/systemd/system/shoal.service, /usr/lib/tmpfiles.d/shoal.conf, /etc/shoal/config.json,
# /usr/lib/shoal/apt-proxy-detect and /etc/apt/apt.conf.d/80shoal (apt through shoald when it runs),
# /etc/credstore/shoal.site-secret (empty until the site's secret is put there; the unit loads it).
set -euo pipefail
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr}
src=$(cd "$(dirname "$0")/.." && pwd)
lib="$DESTDIR$PREFIX/lib/shoal"
bin="$DESTDIR$PREFIX/bin"
unit="$DESTDIR$PREFIX/lib/systemd/system/shoal.service"
tmpfiles="$DESTDIR$PREFIX/lib/tmpfiles.d/shoal.conf"
conf="$DESTDIR/etc/shoal/config.json"
aptconf="$DESTDIR/etc/apt/apt.conf.d/80shoal"
credential="$DESTDIR/etc/credstore/shoal.site-secret"
example="$src/systemd/config.example.json"

say() { printf 'shoal install: %s\n' "$*"; }

if [ "${1:-}" = "--uninstall" ]; then
  rm -rf "$lib" "$bin/shoal" "$bin/shoald" "$unit" "$tmpfiles" "$aptconf"
  # The site secret stays unless it is still the empty one install put there.
  if [ -f "$credential" ] && [ ! -s "$credential" ]; then rm -f "$credential"; rmdir "$(dirname "$credential")" 2>/dev/null || true; fi
  if [ -f "$conf" ] && cmp -s "$conf" "$example"; then
    rm -f "$conf"; rmdir "$DESTDIR/etc/shoal" 2>/dev/null || true
  elif [ -f "$conf" ]; then
    say "kept $conf: it was changed"
  fi
  say "removed"
  exit 0
fi
[ -z "${1:-}" ] || { echo "usage: $0 [--uninstall]" >&2; exit 2; }
[ -f "$src/dist/daemon/shoald.js" ] || { echo "build first: npm ci && npm run build" >&2; exit 1; }

# Stage the release next to its place, then swap it in: a half-copied release is never live.
stage="$lib.new.$$"
rm -rf "$stage"
mkdir -p "$stage/node_modules"
cp -a "$src/package.json" "$src/dashboard" "$stage/"
(cd "$src" && find dist \( -name '*.js' -o -name '*.node' \) -not -path 'dist/test/*' -not -path 'dist/bench/*') | while read -r f; do
  mkdir -p "$stage/$(dirname "$f")"; cp -a "$src/$f" "$stage/$f"
done
install -m 0755 "$src/systemd/apt-proxy-detect" "$stage/apt-proxy-detect"
chmod 0755 "$stage/dist/daemon/shoald.js" "$stage/dist/agent-api/shoal.js"
# Production dependencies only (no compiler, test runner or browser driver).
(cd "$src" && npm ls --omit=dev --all --parseable 2>/dev/null) | grep '/node_modules/' | while read -r dep; do
  rel=${dep#"$src/node_modules/"}
  mkdir -p "$stage/node_modules/$(dirname "$rel")"
  [ -e "$stage/node_modules/$rel" ] || cp -a "$dep" "$stage/node_modules/$rel"
done
rm -rf "$lib.old"
[ -d "$lib" ] && mv "$lib" "$lib.old"
mkdir -p "$(dirname "$lib")"
mv "$stage" "$lib"
rm -rf "$lib.old"

mkdir -p "$bin"
for cmd in shoal shoald; do
  entry=$([ "$cmd" = shoal ] && echo agent-api/shoal.js || echo daemon/shoald.js)
  # The entry point is executable (#!/usr/bin/env node): the wrapper only fixes its path.
  printf '#!/bin/sh\nexec %s/lib/shoal/dist/%s "$@"\n' "$PREFIX" "$entry" > "$bin/$cmd.tmp"
  chmod 0755 "$bin/$cmd.tmp"; mv "$bin/$cmd.tmp" "$bin/$cmd"
done
install -D -m 0644 "$src/systemd/shoal.service" "$unit"
install -D -m 0644 "$src/systemd/shoal.tmpfiles.conf" "$tmpfiles"
# Only where apt is: its helper answers DIRECT whenever shoald does not, so apt never depends on it.
if [ -d "$DESTDIR/etc/apt/apt.conf.d" ] || [ -n "$DESTDIR" ]; then install -D -m 0644 "$src/systemd/80shoal" "$aptconf"; fi
# LoadCredential= needs the file to exist: empty is an open site (shoal site init makes a secret).
if [ ! -e "$credential" ]; then
  install -d -m 0700 "$(dirname "$credential")"
  install -m 0600 /dev/null "$credential"
fi
if [ ! -f "$conf" ]; then
  install -D -m 0644 "$example" "$conf"
elif ! cmp -s "$conf" "$example"; then
  say "kept $conf: it differs from the shipped example (see $example)"
fi
say "installed under ${DESTDIR:-/} (enable with: systemctl daemon-reload && systemctl enable --now shoal)"
