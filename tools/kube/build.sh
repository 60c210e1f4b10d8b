#!/usr/bin/env bash
# Builds the real Kubernetes control plane the test suite runs against into a cache outside the
# work tree; a second run with the same pins does nothing.
#   kube-apiserver, kube-controller-manager, kubectl: k8s.io/kubernetes at the version go.mod
#     pins (its staging modules replaced by their tagged v0.x releases, as a module consumer must),
#     stamped with that version as the upstream release build stamps it.
#   etcd: go.etcd.io/etcd/server/v3 at the version go.mod pins (its main package is the module root).
# Modules come from the Go module proxy, pinned by go.mod and go.sum beside this script; Go's module
# and build caches are reused, so only a changed pin rebuilds.
# Usage: tools/kube/build.sh [CACHE_DIR]   (prints the bin dir on its last line)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
KUBE_VERSION=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$HERE/go.mod")
ETCD_VERSION=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$HERE/go.mod")
CACHE=${1:-${KOD_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-oidc-discovery/kube}}
STAMP="$KUBE_VERSION $ETCD_VERSION $(sha256sum "$HERE/go.sum" | cut -c1-16) 4"   # bump the last field when this recipe changes
BIN="$CACHE/bin"

if [ -f "$BIN/.stamp" ] && [ "$(cat "$BIN/.stamp")" = "$STAMP" ]; then
  echo "$BIN"; exit 0
fi

log() { echo "kube build: $*" >&2; }
command -v go >/dev/null || { log "Go (>= the go line of $HERE/go.mod) is needed"; exit 1; }

mkdir -p "$BIN"
cd "$HERE"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
# The version the binaries report (/version, --version); without it they say v0.0.0-master.
V=k8s.io/component-base/version
major_minor=${KUBE_VERSION#v}; major_minor=${major_minor%.*}
LDFLAGS="-s -w -X $V.gitVersion=$KUBE_VERSION -X $V.gitTreeState=clean"
LDFLAGS="$LDFLAGS -X $V.gitMajor=${major_minor%.*} -X $V.gitMinor=${major_minor#*.}"
for cmd in kube-apiserver kube-controller-manager kubectl; do
  log "go build $cmd $KUBE_VERSION"
  go build -trimpath -ldflags "$LDFLAGS" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
  mv "$BIN/$cmd.tmp" "$BIN/$cmd"
done
log "go build etcd $ETCD_VERSION"
go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
mv "$BIN/etcd.tmp" "$BIN/etcd"
# (read whole first: grep -q would close the pipe early, and pipefail would fail on the SIGPIPE)
[ "$("$BIN/kube-apiserver" --version)" = "Kubernetes $KUBE_VERSION" ] || { log "kube-apiserver --version is not $KUBE_VERSION"; exit 1; }
case "$("$BIN/etcd" --version)" in *"etcd Version: ${ETCD_VERSION#v}"*) ;; *) log "etcd --version is not $ETCD_VERSION"; exit 1;; esac
# The Debian-built v1.20.2 of earlier versions of this script left its stamp and binaries here;
# every binary above is replaced, so nothing of it remains.
echo "$STAMP" > "$BIN/.stamp"
log "done: $("$BIN/kube-apiserver" --version), etcd $ETCD_VERSION in $BIN"
echo "$BIN"
