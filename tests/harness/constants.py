"""The names every test tier, `make run` and the benchmark share: the public host and paths of the
shipped configs (envoy/*.yaml), the filter's plugin and metric names, and the API server's.
Import them from here (``from harness.constants import HOST, JWKS``); a test file defines only
what is its own."""

from . import REPO_ROOT

# The module `make build` writes; every tier that runs the filter loads this file.
WASM = REPO_ROOT / "dist" / "kube_oidc_discovery.wasm"

# The public host of the shipped configs and the chart's examples (`hosts` of the plugin).
HOST = "oidc.example.com"
# Another application behind the same gateway: its requests never enter the filter.
OTHER_HOST = "app.example.com"

# The two documents: the paths the filter serves (single-issuer form) and the constant upstream paths.
DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/openid/v1/jwks"
DOCS = (DISCOVERY, JWKS)
# What the API server's routes produce (go-restful answers 406 to any other Accept).
MEDIA_TYPES = {DISCOVERY: "application/json", JWKS: "application/jwk-set+json"}
# How metric names and log lines call each document (src/metrics.rs: `<doc>`).
DOC_NAMES = {DISCOVERY: "discovery", JWKS: "jwks"}
# A path on the public host that is neither document: 404, never sent upstream.
NOT_FOUND_PATH = "/api/v1/secrets"

# The plugin's name in the shipped configs (Envoy prefixes its log lines with `wasm log <name>:`).
PLUGIN_NAME = "kube-oidc-discovery"
# The prefix of every metric (src/metrics.rs), as /stats/prometheus shows it.
METRIC_PREFIX = "kube_oidc_discovery"

# The name the API server's serving certificate carries and the shipped configs check (SNI, SAN).
API_SERVER_NAME = "kubernetes.default.svc"
# kube-apiserver's usual `--service-account-issuer`, the fake's and the real tier's default.
DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The path-prefixed issuers of envoy/multi-cluster.yaml.
PROD_ISSUER = "https://oidc.example.com/clusters/prod"
DEV_ISSUER = "https://oidc.example.com/clusters/dev"

# The shortest `refresh_interval_s` the filter accepts (src/config.rs): tests that wait for a
# refresh use it.
FASTEST_REFRESH_S = 5
# The audience the real tier's relying party (PyJWT) asks tokens for.
AUDIENCE = "vault"
