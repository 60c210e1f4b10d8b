"""`make oci`: the OCI image of the filter is reproducible, pushes to a registry with skopeo
(`make push`), and what comes back is what Istio's compat-variant fetcher accepts, holding
exactly the module `make build` wrote."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import urllib.request
from pathlib import Path

import pytest

import build_oci

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TIMEOUT = 120


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def skopeo(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, f"skopeo {' '.join(args)}:\n{r.stderr}"
    return r


def make_oci(wasm_path: Path, out: Path) -> None:
    r = subprocess.run(["python3", str(Path(build_oci.__file__)), "--wasm", str(wasm_path), "--out", str(out)],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr


def compat_module(manifest: dict, blob) -> bytes:
    """What Istio's fetcher does with a non-Docker manifest (extractOCIStandardImage): the last
    layer must be an OCI tar+gzip layer; the file whose base name is plugin.wasm is the module.
    Stricter than Istio: exactly one layer holding exactly one regular file."""
    assert manifest["mediaType"] == MANIFEST
    assert manifest["config"]["mediaType"] == build_oci.CONFIG
    layers = manifest["layers"]
    assert [ly["mediaType"] for ly in layers] == [build_oci.LAYER]
    data = blob(layers[0]["digest"])
    assert sha256(data) == layers[0]["digest"] and len(data) == layers[0]["size"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
        members = tar.getmembers()
        assert [(m.name, m.isreg()) for m in members] == [("plugin.wasm", True)]
        return tar.extractfile(members[0]).read()


def layout_reader(root: Path):
    index = json.loads((root / "index.json").read_bytes())
    (desc,) = index["manifests"]

    def blob(digest: str) -> bytes:
        data = (root / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
        assert sha256(data) == digest, f"blob {digest} does not match its digest"
        return data

    return index, desc, blob


def test_build_is_reproducible(tmp_path, wasm):
    src = tmp_path / "plugin.wasm"
    src.write_bytes(wasm)
    make_oci(src, tmp_path / "a")
    make_oci(src, tmp_path / "b")
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert set(a) == {"oci-layout", "index.json", *(f"blobs/sha256/{d}" for d in
                      [k.split("/")[-1] for k in a if k.startswith("blobs/")])}
    assert len([k for k in a if k.startswith("blobs/")]) == 3  # layer, config, manifest
    assert a == b
    # a different module gives a different image: the digests really cover the content
    src.write_bytes(wasm + b"\0")
    make_oci(src, tmp_path / "c")
    assert files(tmp_path / "c")["index.json"] != a["index.json"]


def test_layout_is_the_compat_variant_holding_the_module(tmp_path, wasm):
    build_oci.build(wasm, tmp_path / "oci")
    index, desc, blob = layout_reader(tmp_path / "oci")
    assert desc["mediaType"] == MANIFEST
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    manifest_bytes = blob(desc["digest"])
    manifest = json.loads(manifest_bytes)
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert compat_module(manifest, blob) == wasm
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [sha256(gzip.decompress(blob(manifest["layers"][0]["digest"])))]


def test_a_tampered_layout_is_rejected(tmp_path, wasm):
    build_oci.build(wasm, tmp_path / "oci")
    _, desc, blob = layout_reader(tmp_path / "oci")
    manifest = json.loads(blob(desc["digest"]))
    layer = tmp_path / "oci" / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":", 1)[1]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="does not match its digest"):
        compat_module(manifest, blob)
    r = subprocess.run(["skopeo", "copy", f"oci:{tmp_path / 'oci'}:latest", f"oci:{tmp_path / 'copy'}:latest"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode != 0, "skopeo copied a layout whose layer does not match its digest"


def test_push_and_pull_through_a_registry(tmp_path, wasm, registry):
    digests = build_oci.build(wasm, tmp_path / "oci")
    ref = f"{registry}/kube-oidc-discovery:test"
    # what `make push IMAGE=...` runs
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'oci'}:latest", f"docker://{ref}")

    # the registry's API, as Istio's fetcher reads it
    def get(path: str, accept: str | None = None) -> tuple[bytes, dict]:
        req = urllib.request.Request(f"http://{registry}/v2/kube-oidc-discovery/{path}",
                                     headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read(), dict(r.headers)

    manifest_bytes, headers = get("manifests/test", MANIFEST)
    assert headers["Content-Type"] == MANIFEST
    assert headers["Docker-Content-Digest"] == digests["manifest"], "the registry holds other bytes"
    assert sha256(manifest_bytes) == digests["manifest"]
    manifest = json.loads(manifest_bytes)
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    module = compat_module(manifest, lambda d: get(f"blobs/{d}")[0])
    assert sha256(module) == sha256(wasm)

    # and skopeo pulls back the same image
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'pulled'}:latest")
    _, desc, blob = layout_reader(tmp_path / "pulled")
    assert desc["digest"] == digests["manifest"]
    assert compat_module(json.loads(blob(desc["digest"])), blob) == wasm
    inspect = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}").stdout)
    assert inspect["Digest"] == digests["manifest"]
