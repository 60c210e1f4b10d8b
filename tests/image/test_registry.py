"""`make push` against a real registry (Debian's docker-registry on 127.0.0.1): skopeo pushes the
layout unchanged, Istio's way of pulling (the registry's HTTP API) gets plugin.wasm byte for byte
`dist/kube_oidc_discovery.wasm`, and the registry's digest is the one `make oci` printed.
(Replaces the registry part of the former test_image.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

import build_oci
from harness import REPO_ROOT
from harness.ocicheck import CONFIG, LAYER, MANIFEST, istio_extract, read_layout, sha256, verify_image

pytestmark = pytest.mark.timeout(180)
TIMEOUT = 60
REPO = "kube-oidc-discovery"
# what go-containerregistry (Istio's fetcher) sends when it asks for an image
ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json", MANIFEST,
    "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json",
])


def skopeo(bin_: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([bin_, *args], capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    if check:
        assert r.returncode == 0, f"skopeo {' '.join(args)} failed:\n{r.stderr}"
    return r


def get(registry: str, path: str, *, accept: str | None = None, method: str = "GET") -> tuple[bytes, dict]:
    req = urllib.request.Request(f"http://{registry}/v2/{REPO}/{path}", method=method,
                                 headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read(), {k.lower(): v for k, v in r.headers.items()}


def status(registry: str, path: str) -> int:
    try:
        get(registry, path, accept=ACCEPT, method="HEAD")
        return 200
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, wasm_bytes, registry, skopeo_bin):
    """The layout `make oci` writes, pushed with `make push`'s command to REPO:test."""
    out = tmp_path_factory.mktemp("push") / "oci"
    digests = build_oci.build(wasm_bytes, out)
    ref = f"{registry}/{REPO}:test"
    skopeo(skopeo_bin, "copy", "--dest-tls-verify=false", f"oci:{out}:latest", f"docker://{ref}")
    return out, digests, ref


def test_istio_pulls_plugin_wasm_back(pushed, registry, wasm):
    out, digests, _ = pushed
    manifest_bytes, headers = get(registry, "manifests/test", accept=ACCEPT)
    assert headers["content-type"] == MANIFEST
    assert headers["docker-content-digest"] == digests["manifest"] == sha256(manifest_bytes)
    desc, local_blob = read_layout(out)
    assert manifest_bytes == local_blob(desc["digest"]), "skopeo rewrote the manifest on push"
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == MANIFEST
    assert manifest["config"]["mediaType"] == CONFIG
    assert [ly["mediaType"] for ly in manifest["layers"]] == [LAYER]
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"

    def blob(digest: str) -> bytes:
        return get(registry, f"blobs/{digest}")[0]

    module = verify_image(manifest_bytes, blob)  # exactly one regular file plugin.wasm, digests, ...
    assert sha256(module) == sha256(wasm.read_bytes()), "the pulled plugin.wasm is not dist's module"
    assert istio_extract(manifest_bytes, blob) == module
    # pinning by digest (url ...@sha256:HEX, or WasmPlugin sha256 = HEX) finds the same image
    assert status(registry, f"manifests/{digests['manifest']}") == 200


def test_skopeo_pulls_the_same_image(pushed, registry, skopeo_bin, tmp_path, wasm_bytes):
    out, digests, ref = pushed
    inspect = json.loads(skopeo(skopeo_bin, "inspect", "--tls-verify=false", f"docker://{ref}").stdout)
    assert inspect["Digest"] == digests["manifest"]
    pulled = tmp_path / "pulled"
    skopeo(skopeo_bin, "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{pulled}:latest")
    desc, blob = read_layout(pulled)
    assert desc["digest"] == digests["manifest"]
    assert verify_image(blob(desc["digest"]), blob) == wasm_bytes
    local = {p.name: p.read_bytes() for p in (out / "blobs" / "sha256").iterdir()}
    assert {p.name: p.read_bytes() for p in (pulled / "blobs" / "sha256").iterdir()} == local


def test_a_rebuild_pushes_to_the_same_digest(pushed, registry, skopeo_bin, tmp_path, wasm):
    _, digests, _ = pushed
    out = tmp_path / "oci"
    r = subprocess.run([sys.executable, build_oci.__file__, "--wasm", str(wasm),
                        "--out", str(out)], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    skopeo(skopeo_bin, "copy", "--dest-tls-verify=false", f"oci:{out}:latest", f"docker://{registry}/{REPO}:again")
    assert get(registry, "manifests/again", accept=ACCEPT)[1]["docker-content-digest"] == digests["manifest"]


def test_skopeo_refuses_a_tampered_layout(registry, skopeo_bin, tmp_path, wasm_bytes):
    # A module of its own: skopeo remembers where it pushed a blob (its blob-info cache) and
    # mounts a known digest from the other repository instead of reading the layer again, so a
    # spoiled copy of the layer pushed above would go unnoticed by this check.
    out = tmp_path / "oci"
    build_oci.build(wasm_bytes + b"\0", out)
    desc, blob = read_layout(out)
    layer = out / "blobs" / "sha256" / json.loads(blob(desc["digest"]))["layers"][0]["digest"].split(":")[1]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    r = skopeo(skopeo_bin, "copy", "--dest-tls-verify=false", f"oci:{out}:latest",
               f"docker://{registry}/{REPO}:tampered", check=False)
    assert r.returncode != 0, "skopeo pushed a layer that does not match its digest"
    assert "digest did not match" in r.stderr.lower(), r.stderr
    assert status(registry, "manifests/tampered") == 404


def test_make_push_pushes_the_image_make_oci_builds(registry, wasm_bytes, tmp_path):
    """The Makefile target itself: `make push` (which runs `make oci`) to the loopback registry."""
    ref = f"{registry}/{REPO}:make-push"
    r = subprocess.run(["make", "-s", "push", f"IMAGE={ref}", "PUSH_FLAGS=--dest-tls-verify=false"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    local = build_oci.build(wasm_bytes, tmp_path / "oci")
    _, headers = get(registry, "manifests/make-push", accept=ACCEPT)
    assert headers["docker-content-digest"] == local["manifest"]
