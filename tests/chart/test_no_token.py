"""The chart's token mode `none` (chart README, "No token: anonymous discovery"): no account, no
token Secret, no credential anywhere on the gateway; the discovery role bound to the anonymous
group instead; NOTES.txt and the README print the API server's AuthenticationConfiguration, the
one part no chart can make, and it is the one the real-API-server tests run
(harness.kube.ANONYMOUS_DISCOVERY_AUTHENTICATION_CONFIG). What every variant gets (lint,
validity, the filter's parser) is in test_chart.py, whose VARIANTS include these."""

from __future__ import annotations

import re

import pytest

import helm
from harness.kube import ANONYMOUS_DISCOVERY_AUTHENTICATION_CONFIG, printed_authentication_configuration
from test_chart import DISCOVERY_ROLE, README, VARIANTS, by_kind, one

ANONYMOUS_GROUP = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}
CREDENTIAL_KINDS = {"ServiceAccount", "Secret", "ConfigMap"}


@pytest.mark.parametrize("variant", ["none", "issuers-none"])
def test_no_credential_account_or_secret_anywhere(variant):
    objs = helm.render(values=VARIANTS[variant])
    assert not CREDENTIAL_KINDS & set(by_kind(objs))
    assert not [ef for ef in by_kind(objs)["EnvoyFilter"] if ef["metadata"]["name"].endswith("-credential")]
    wp = one(objs, "WasmPlugin")["spec"]
    pc = wp["pluginConfig"]
    if variant == "none":
        assert "token_env" not in pc and "vmConfig" not in wp
    else:  # the one static entry (edge) alone has a token, from its own variable
        assert {e["name"] for e in pc["issuers"] if "token_env" in e} == {"edge"}
        assert [e["name"] for e in wp["vmConfig"]["env"]] == ["KUBE_OIDC_TOKEN_EDGE"]


@pytest.mark.parametrize("variant", ["none", "issuers-none"])
def test_the_discovery_role_is_bound_to_the_anonymous_group_only(variant):
    objs = helm.render(values=VARIANTS[variant])
    (crb,) = by_kind(objs)["ClusterRoleBinding"]
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": DISCOVERY_ROLE}
    assert crb["subjects"] == [ANONYMOUS_GROUP]
    assert not {"Role", "ClusterRole", "RoleBinding"} & set(by_kind(objs))
    # the same object as the token modes' binding: a change of mode updates it in place
    assert crb["metadata"]["name"] == one(helm.render(), "ClusterRoleBinding")["metadata"]["name"]


def test_only_other_clusters_in_mode_none_bind_nothing_here():
    values = {**VARIANTS["issuers-none"], "issuers": VARIANTS["issuers-none"]["issuers"][1:]}
    assert "ClusterRoleBinding" not in by_kind(helm.render(values=values))
    text = helm.notes(values=values)
    assert "this release did" not in text
    assert "in prod, create it there" in text


@pytest.mark.parametrize("variant", ["none", "issuers-none"])
def test_notes_print_the_api_servers_authentication_configuration(variant):
    values = VARIANTS[variant]
    text = helm.notes(values=values)
    assert printed_authentication_configuration(text) == ANONYMOUS_DISCOVERY_AUTHENTICATION_CONFIG
    assert "remove --anonymous-auth" in text
    crb = one(helm.render(values=values), "ClusterRoleBinding")["metadata"]["name"]
    assert re.search(rf"this release did, in this cluster \(ClusterRoleBinding\s+{crb}\)", text), text
    if variant == "none":
        assert "patch deployment" not in text and "create secret" not in text
        return
    # prod (mode none): its CA Secret only, and the binding to make in that cluster; edge (static):
    # its CA and token Secrets, and the gateway's env var
    assert "create secret generic kod-kube-oidc-discovery-prod-ca " in text
    assert "kod-kube-oidc-discovery-prod-token" not in text
    assert "create secret generic kod-kube-oidc-discovery-edge-token " in text
    assert "in prod, create it there" in text
    assert '"name":"KUBE_OIDC_TOKEN_EDGE"' in text and '"name":"KUBE_OIDC_TOKEN"' not in text


def test_notes_of_the_token_modes_print_no_authentication_configuration():
    for values in ({}, VARIANTS["rotating"], VARIANTS["issuers"]):
        assert "AuthenticationConfiguration" not in helm.notes(values=values)


def test_readme_prints_the_authentication_configuration_the_suite_runs():
    section = README.read_text().split("### No token: anonymous discovery", 1)[1].split("\n## ", 1)[0]
    assert printed_authentication_configuration(section) == ANONYMOUS_DISCOVERY_AUTHENTICATION_CONFIG
