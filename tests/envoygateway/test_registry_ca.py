"""A private registry: its CA is in no trust store Envoy Gateway has. Here Envoy Gateway runs with
the host's own system bundle only (not the registry's CA, which the other tests give it through
SSL_CERT_FILE). Without the chart's `image.caCertificateRef` the pull fails on the registry's
certificate, the policy is not Accepted and, `failOpen` being the default, the route forwards
the two paths to the API server unfiltered: the API server's own discovery document, not the
filter's. With `image.caCertificateRef` naming a ConfigMap, or a Secret, that holds the
registry's CA (Envoy Gateway's `image.tls.caCertificateRef`), the same Envoy Gateway pulls the
image and the filter serves both documents."""

from __future__ import annotations

import pytest

import xds
from names import NAMESPACE, ROUTE, TOKEN
from harness.checks import served_discovery
from harness.constants import DISCOVERY, DOCS, HOST, JWKS
from test_serving import JWKS_URI, condition

EG_ENV = "registry-ca"
# a ConfigMap and a Secret of this name, each with the registry's CA
CA_NAME = "registry-ca"


def _start(envs, start_eg, fake, tls_registry, key: str, values: dict):
    return envs.get(key, lambda: start_eg(
        {"hosts": [HOST], **values},
        api_server=fake.port,
        secrets={(NAMESPACE, f"{ROUTE}-credential"): {"credential": f"Bearer {TOKEN}"},
                 (NAMESPACE, CA_NAME): {"ca.crt": tls_registry.ca.read_text()}},
        configmaps={(NAMESPACE, CA_NAME): {"ca.crt": tls_registry.ca.read_text()}},
        fakes={"local": fake}, wait=(HOST, JWKS), trust_registry=False))


@pytest.fixture
def without_ca(envs, start_eg, fake, tls_registry):
    return _start(envs, start_eg, fake, tls_registry, f"{EG_ENV}/none", {})


@pytest.fixture(params=["ConfigMap", "Secret"])
def with_ca(request, envs, start_eg, fake, tls_registry):
    return _start(envs, start_eg, fake, tls_registry, f"{EG_ENV}/{request.param}",
                  {"image": {"caCertificateRef": {"kind": request.param, "name": CA_NAME}}})


def _policy(env) -> dict:
    (anc,) = env.eg.statuses()[("EnvoyExtensionPolicy", f"{NAMESPACE}/{ROUTE}")]["ancestors"]
    return condition(anc, "Accepted")


def test_without_the_ca_the_pull_fails_on_the_registrys_certificate(without_ca):
    (policy,) = without_ca.chart("EnvoyExtensionPolicy")
    assert "tls" not in policy["spec"]["wasm"][0]["code"]["image"]
    c = _policy(without_ca)
    assert c["status"] == "False", c
    assert "certificate signed by unknown authority" in c["message"], c
    assert xds.wasm_filters(without_ca.eg.config_dump()) == [], "the filter is in the listener after all"


def test_without_the_ca_fail_open_serves_the_api_servers_documents_unfiltered(without_ca, fake):
    for path in DOCS:
        r = without_ca.get(path, HOST)
        assert r.status == 200, (path, r.status, r.body[:200])
        assert r.body == fake.document(path)[0], path
        assert not r.header("etag"), r.headers  # the filter's, which it never ran to add
    # the discovery document names the API server's own jwks_uri, not the public one
    assert without_ca.get(DISCOVERY, HOST).body != served_discovery(fake, JWKS_URI)


def test_with_the_ca_the_image_is_pulled_and_the_filter_serves(with_ca, fake):
    (policy,) = with_ca.chart("EnvoyExtensionPolicy")
    ref = policy["spec"]["wasm"][0]["code"]["image"]["tls"]["caCertificateRef"]
    assert ref["group"] == "" and ref["name"] == CA_NAME and ref["kind"] in ("ConfigMap", "Secret"), ref
    c = _policy(with_ca)
    assert c["status"] == "True", c
    assert len(xds.wasm_filters(with_ca.eg.config_dump())) == 1
    for path in DOCS:
        r = with_ca.get(path, HOST)
        assert r.status == 200, (path, r.status, r.body[:200])
        want = served_discovery(fake, JWKS_URI) if path == DISCOVERY else fake.jwks_body()
        assert r.body == want, path
        assert r.header("etag"), r.headers
