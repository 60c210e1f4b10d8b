"""`make release-sign`: cosign (built from its Go module, `make tools-cosign`) signs the pushed
image's digest and attests its SBOM with a key pair, without a transparency log; `cosign verify`
and `cosign verify-attestation` accept them with the public key, refuse another key, and find no
signature for an image that was not signed. Against Debian's docker-registry on 127.0.0.1.
(Istio and Envoy Gateway check no signature: docs/release.md.)"""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest

import release
import versions

pytestmark = pytest.mark.timeout(600)

REPO = versions.REPO
NAME = "kod/signed"


def cosign(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COSIGN_PASSWORD": ""}
    return subprocess.run([release.cosign_bin(), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def make(*args: str) -> None:
    r = subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, timeout=500,
                       env={**os.environ, "COSIGN_PASSWORD": ""})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two key pairs: the release's and someone else's."""
    out = {}
    for who in ("release", "other"):
        d = tmp_path_factory.mktemp(who)
        r = cosign("generate-key-pair", cwd=d)
        assert r.returncode == 0, r.stderr
        out[who] = (d / "cosign.key", d / "cosign.pub")
    return out


@pytest.fixture(scope="module")
def signed(tmp_path_factory, registry, keys):
    out = tmp_path_factory.mktemp("release") / "release"
    image = f"{registry}/{NAME}"
    common = [f"RELEASE_DIR={out}", f"RELEASE_IMAGE={image}", "RELEASE_PUSH_FLAGS=--plain-http"]
    make("release", *common)
    make("release-push", *common)
    make("release-sign", *common, f"COSIGN_KEY={keys['release'][0]}")
    index = json.loads((out / "oci" / "index.json").read_bytes())
    (digest,) = [d["digest"] for d in index["manifests"]
                 if d["annotations"]["org.opencontainers.image.ref.name"] == versions.crate_version()]
    return out, f"{image}@{digest}"


VERIFY = ["--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry"]


def test_the_signature_verifies_with_the_release_key_only(signed, keys):
    _, ref = signed
    r = cosign("verify", "--key", str(keys["release"][1]), *VERIFY, ref)
    assert r.returncode == 0, r.stderr
    (claim,) = json.loads(r.stdout)
    assert claim["critical"]["image"]["docker-manifest-digest"] == ref.split("@", 1)[1]
    r = cosign("verify", "--key", str(keys["other"][1]), *VERIFY, ref)
    assert r.returncode != 0 and "no matching signatures" in r.stderr.lower(), r.stderr


def test_the_sbom_attestation_carries_the_released_sbom(signed, keys):
    out, ref = signed
    r = cosign("verify-attestation", "--key", str(keys["release"][1]), "--type", "cyclonedx", *VERIFY, ref)
    assert r.returncode == 0, r.stderr
    statement = json.loads(base64.b64decode(json.loads(r.stdout.splitlines()[0])["payload"]))
    assert statement["predicateType"] == "https://cyclonedx.org/bom"
    assert statement["subject"][0]["digest"]["sha256"] == ref.split(":")[-1]
    sbom = json.loads((out / f"kube-oidc-discovery-{versions.crate_version()}.cdx.json").read_text())
    assert statement["predicate"] == sbom


def test_an_image_nobody_signed_does_not_verify(signed, keys, registry, skopeo_bin, tmp_path, wasm):
    import build_oci
    digests = build_oci.build(wasm + b"\0", tmp_path / "oci")  # another module: another digest
    r = subprocess.run([skopeo_bin, "copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'oci'}:latest",
                        f"docker://{registry}/{NAME}:unsigned"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = cosign("verify", "--key", str(keys["release"][1]), *VERIFY, f"{registry}/{NAME}@{digests['manifest']}")
    assert r.returncode != 0, "an unsigned image verified"
