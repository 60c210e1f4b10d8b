"""A fetched discovery document is checked against the configured issuer, in real Envoy: a
swapped upstream (dev's cluster reaching an API server that answers for prod) is never served
under dev's paths, neither its discovery document nor its key set, while the other issuers are
served throughout; the single-issuer form checks only when `issuer` is configured."""

from __future__ import annotations

import json
import time

import pytest

from harness.checks import ERROR_BODIES, plugin_log_lines, poll
from harness.issuers import host_of, public_path
from harness.constants import DEFAULT_ISSUER, DISCOVERY, JWKS, PROD_ISSUER
from harness.constants import METRIC_PREFIX as P

pytestmark = pytest.mark.timeout(120)


def get(f, name, doc):
    return f.get(public_path(name, doc), host=host_of(name))


def kids(body: bytes) -> set[str]:
    return {k["kid"] for k in json.loads(body)["keys"]}


def answer_for_prod(clusters):
    """dev's API server answers as prod's would: prod's issuer, prod's keys. Returns what puts
    dev's own back."""
    dev, prod = clusters["dev"], clusters["prod"]
    own = dev.fake.keys
    dev.fake.issuer = prod.issuer
    dev.fake.set_keys(prod.fake.keys)

    def restore():
        dev.fake.issuer = dev.issuer
        dev.fake.set_keys(own)
    return restore


def test_a_swapped_upstream_is_never_served(fleet):
    restore = []
    f, clusters = fleet(before_envoy=lambda c: restore.append(answer_for_prod(c)),
                        refresh_interval_s=5, timeout_ms=1000)
    dev, prod = clusters["dev"], clusters["prod"]
    prod_kids = kids(prod.fake.jwks_body())
    poll(lambda: f.metric(f"{P}.dev.upstream.discovery.issuer_mismatch") >= 1, 10, what="mismatch")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4:
        for doc in (DISCOVERY, JWKS):
            r = get(f, "dev", doc)
            assert (r.status, r.body) == (502, ERROR_BODIES[502]), (doc, r.status, r.text[:300])
        assert get(f, "prod", JWKS).status == 200
        time.sleep(0.2)
    assert f.metric(f"{P}.dev.upstream.jwks.issuer_mismatch") >= 1, "the key set was refused too"
    assert f.metric(f"{P}.dev.upstream.discovery.ok") == 0
    assert f.metric(f"{P}.prod.upstream.discovery.issuer_mismatch") == 0
    warns = [ln for ln in plugin_log_lines(f.envoy.log_text())
             if "issuer dev: fetching discovery" in ln]
    assert warns, "no warn line"
    assert all("[warning]" in ln and f'issuer "{PROD_ISSUER}" is not the configured issuer "{dev.issuer}"' in ln
               for ln in warns), warns
    # the cluster reaches dev's own API server again: served within the backoff
    restore[0]()
    poll(lambda: get(f, "dev", JWKS).status == 200, 10, what="dev recovered")
    r = get(f, "dev", JWKS)
    assert r.body == dev.fake.jwks_body() and not kids(r.body) & prod_kids
    assert json.loads(get(f, "dev", DISCOVERY).body)["issuer"] == dev.issuer


def test_a_swap_after_start_withdraws_the_key_set_and_keeps_the_checked_discovery_document(fleet):
    f, clusters = fleet(refresh_interval_s=5, timeout_ms=1000)
    poll(lambda: get(f, "dev", JWKS).status == 200, 10, what="dev warm")
    good_discovery = get(f, "dev", DISCOVERY).body
    answer_for_prod(clusters)
    poll(lambda: f.metric(f"{P}.dev.upstream.discovery.issuer_mismatch") >= 1, 10, what="mismatch")
    for _ in range(20):
        r = get(f, "dev", JWKS)
        assert (r.status, r.body) == (502, ERROR_BODIES[502]), r.text[:300]
        r = get(f, "dev", DISCOVERY)
        assert (r.status, r.body) == (200, good_discovery), "the last good, checked copy"
        time.sleep(0.2)


@pytest.mark.parametrize("suffix,status", [("", 200), ("/", 502)])
def test_the_single_issuer_form_checks_a_configured_issuer(make_stack, suffix, status):
    s = make_stack("pod.yaml", plugin_changes={"issuer": DEFAULT_ISSUER + suffix})
    r = s.get(DISCOVERY)  # a cold request waits for the prefetch, or gets its result
    assert r.status == status, r.text
    assert s.metric(f"{P}.upstream.discovery.issuer_mismatch") == (status == 502)
