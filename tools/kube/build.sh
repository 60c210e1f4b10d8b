#!/usr/bin/env bash
# Builds the real Kubernetes components the test suite runs against, from Debian's packages, into a cache
# outside the work tree; a second run with the same pins does nothing.
#   kube-apiserver, kube-controller-manager: built from Debian's `kubernetes` source package (upstream
#     v1.20.2 with vendor/) with Debian's Go 1.19, in GOPATH mode (the Go module proxy is not reachable).
#   kubectl: Debian's kubernetes-client (the same 1.20.2), unpacked, not installed (it would clash with
#     another kubectl package on the machine).
#   etcd: Debian's etcd-server (3.4), unpacked, not installed (its package starts a service).
# The system's apt sources are left alone: a private source list, list dir and archive cache are used.
# Usage: tools/kube/build.sh [CACHE_DIR]   (prints the bin dir on its last line)
set -euo pipefail

KUBE_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
KUBE_VERSION=v1.20.2   # the upstream release inside that package
GO_PKG=golang-1.19
CACHE=${1:-${KOD_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-oidc-discovery/kube}}
STAMP="$KUBE_DEB_VERSION $GO_PKG 3"   # bump the last field when this recipe changes
BIN="$CACHE/bin"

if [ -f "$BIN/.stamp" ] && [ "$(cat "$BIN/.stamp")" = "$STAMP" ]; then
  echo "$BIN"; exit 0
fi

mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/archives/partial" "$CACHE/debs" "$BIN"
cat > "$CACHE/apt/sources.list" <<LIST
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
LIST
APT=(-o "Dir::Etc::SourceList=$CACHE/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache=$CACHE/apt" -o APT::Sandbox::User=root -qq)

log() { echo "kube build: $*" >&2; }

command -v rsync >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync >/dev/null; }

log "package lists (private)"
apt-get "${APT[@]}" update

cd "$CACHE/debs"
debs=("$GO_PKG-go" "$GO_PKG-src" golang-github-modern-go-reflect2-dev kubernetes-client etcd-server)
log "downloading ${debs[*]}"
apt-get "${APT[@]}" download "${debs[@]}"
rm -rf "$CACHE/root" && mkdir -p "$CACHE/root"
for d in *.deb; do dpkg -x "$d" "$CACHE/root"; done

log "kubernetes source $KUBE_DEB_VERSION"
apt-get "${APT[@]}" source --download-only "kubernetes=$KUBE_DEB_VERSION"
orig=$(ls kubernetes_*.orig.tar.gz)

GOROOT="$CACHE/root/usr/lib/go-1.19"
export GOROOT PATH="$GOROOT/bin:$PATH" GOPATH="$CACHE/gopath" GO111MODULE=off CGO_ENABLED=0 \
       GOCACHE="$CACHE/gocache" GOFLAGS= GOTOOLCHAIN=local
SRC="$GOPATH/src/k8s.io/kubernetes"
rm -rf "$GOPATH" && mkdir -p "$SRC"
tar -xzf "$orig" -C "$SRC" --strip-components=1

# reflect2 1.0.1 reads runtime internals that changed in Go 1.18 and crashes at start; Debian's 1.0.2 does not.
rm -rf "$SRC/vendor/github.com/modern-go/reflect2"
cp -r "$CACHE/root/usr/share/gocode/src/github.com/modern-go/reflect2" "$SRC/vendor/github.com/modern-go/reflect2"

cd "$SRC"
log "make generated_files (the OpenAPI definitions are not in the tarball)"
make generated_files >"$CACHE/generated_files.log" 2>&1 || { tail -30 "$CACHE/generated_files.log" >&2; exit 1; }
# The version the binaries report (/version, --version), as the upstream release build stamps it.
V=k8s.io/kubernetes/vendor/k8s.io/component-base/version
major_minor=${KUBE_VERSION#v}; major_minor=${major_minor%.*}   # 1.20: /version's major and minor
LDFLAGS="-s -w -X $V.gitVersion=$KUBE_VERSION -X $V.gitTreeState=clean"
LDFLAGS="$LDFLAGS -X $V.gitMajor=${major_minor%.*} -X $V.gitMinor=${major_minor#*.}"
for cmd in kube-apiserver kube-controller-manager; do
  log "go build $cmd"
  go build -trimpath -ldflags "$LDFLAGS" -o "$BIN/$cmd" "./cmd/$cmd"
done
cp "$CACHE/root/usr/bin/kubectl" "$CACHE/root/usr/bin/etcd" "$BIN/"
"$BIN/kube-apiserver" --version | grep -qx "Kubernetes $KUBE_VERSION"
echo "$STAMP" > "$BIN/.stamp"
# Only the binaries are kept (about 270 MB); the rest (3 GB) is rebuilt if the pin changes.
cd "$CACHE" && rm -rf gopath gocache root debs apt
log "done: $("$BIN/kube-apiserver" --version) in $BIN"
echo "$BIN"
