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
# wasm-opt (binaryen 108) rejects a stripped module unless the features are named.
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
                  --enable-mutable-globals --enable-reference-types --enable-multivalue
# wasm-bindgen-cli must be exactly the wasm-bindgen version in Cargo.lock.
WBG_VERSION = $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/"/,"",$$3); print $$3}' Cargo.lock)
IMAGE ?=
PUSH_FLAGS ?=

.PHONY: tools tools-rust tools-apt tools-py tools-npm tools-wbg build lint fmt unit wasm-test e2e \
        chart-lint chart-template chart-test oci oci-test push test run bench bench-memory clean

# ---------------------------------------------------------------- tools
tools: tools-rust tools-apt tools-py tools-npm tools-wbg

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

# ---------------------------------------------------------------- build
build: tools-rust tools-apt
	cargo build --release --target $(WASM_TGT)
	mkdir -p $(DIST)
	if command -v wasm-opt >/dev/null; then \
	  wasm-opt $(WASM_OPT_FLAGS) $(WASM_OUT) -o $(DIST_WASM); \
	else cp $(WASM_OUT) $(DIST_WASM); fi
	@ls -l $(DIST_WASM)

# ---------------------------------------------------------------- checks
fmt:
	cargo fmt

lint: tools-rust
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --lib --target $(WASM_TGT) -- -D warnings
	cargo clippy --lib --tests --target wasm32-unknown-unknown -- -D warnings

unit:
	cargo test

wasm-test: tools-rust tools-wbg
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  cargo test --target wasm32-unknown-unknown --test wasm_logic

e2e: build tools-py
	$(PYTEST) -q tests/e2e

# ---------------------------------------------------------------- chart and image
chart-lint: tools-py
	$(PY) tests/chart/helm.py lint charts/kube-oidc-discovery

chart-template: tools-py
	$(PY) tests/chart/helm.py template charts/kube-oidc-discovery $(if $(VALUES),-f $(VALUES))

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

# ---------------------------------------------------------------- everything
test: tools lint unit wasm-test build
	$(PYTEST) -q tests/e2e tests/chart tests/image

# ---------------------------------------------------------------- local run and benchmark
run: build tools-py
	$(PY) tests/harness/run_local.py

bench: build tools-apt tools-py
	cargo build --release --target $(WASM_TGT) --example floor
	$(PY) tests/bench/bench.py

# The filter's Wasm VM memory over a long run (refresh every 5 s), DURATION seconds; not part of
# make test. Exits 1 if it grows after the warm-up.
DURATION ?= 600
bench-memory: build tools-apt tools-py
	$(PY) tests/bench/memory.py --duration $(DURATION)

clean:
	cargo clean
	rm -rf $(DIST) .run
