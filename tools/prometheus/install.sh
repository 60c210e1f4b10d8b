#!/usr/bin/env bash
# Prometheus and promtool from Debian's `prometheus` package, unpacked into a cache directory, not
# installed: installing it would start a Prometheus service on :9090 (its postinst does) and pull
# in the web UI's JavaScript packages, and the tests start their own Prometheus anyway.
# Usage: tools/prometheus/install.sh [CACHE_DIR]   (prints the bin dir on its last line)
set -euo pipefail

DEB_VERSION=2.42.0+ds-5+deb12u1
CACHE=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-oidc-discovery/prometheus}
BIN="$CACHE/bin"

if [ -f "$BIN/.stamp" ] && [ "$(cat "$BIN/.stamp")" = "$DEB_VERSION" ]; then
  echo "$BIN"; exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# the system's package lists may predate the pinned version: refresh them once and retry
apt-get download -qq "prometheus=$DEB_VERSION" 2>/dev/null \
  || { apt-get update -qq && apt-get download -qq "prometheus=$DEB_VERSION"; }
dpkg -x prometheus_*.deb root
mkdir -p "$BIN"
cp root/usr/bin/prometheus root/usr/bin/promtool "$BIN/"
"$BIN/promtool" --version 2>&1 | grep -q 'version 2\.42\.' 
echo "$DEB_VERSION" > "$BIN/.stamp"
echo "$BIN"
