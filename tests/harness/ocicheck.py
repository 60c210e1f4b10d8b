"""Checks of the filter's OCI image, shared by the image tests.

``verify_image`` is deliberately stricter than Istio: it accepts exactly the image `make oci`
means to build. ``istio_extract`` follows what Istio's fetcher does (istio/istio
pkg/wasm/imagefetcher.go, PrepareFetch / extractOCIStandardImage / extractWasmPluginBinary), so a
test can show that Istio would get the same module out of the image.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import posixpath
import tarfile
from pathlib import Path
from typing import Callable

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
VARIANT_KEY = "module.wasm.image/variant"
REF_NAME_KEY = "org.opencontainers.image.ref.name"

Blob = Callable[[str], bytes]


class Rejected(Exception):
    """The image is not the one `make oci` means to build."""


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise Rejected(msg)


def _fetch(blob: Blob, desc: dict, what: str) -> bytes:
    data = blob(desc["digest"])
    check(sha256(data) == desc["digest"], f"{what} blob {desc['digest']} does not match its digest")
    check(len(data) == desc["size"], f"{what} blob is {len(data)} bytes, its descriptor says {desc['size']}")
    return data


def read_layout(root: Path, ref_name: str = "latest") -> tuple[dict, Blob]:
    """The descriptor of the manifest tagged ``ref_name`` in an OCI layout, and a blob reader.
    The layout must hold exactly the blobs the image references (no stale ones)."""
    check(json.loads((root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}, "bad oci-layout")
    index = json.loads((root / "index.json").read_bytes())
    check(index.get("schemaVersion") == 2, "index.json: schemaVersion is not 2")
    tagged = [d for d in index.get("manifests", [])
              if d.get("annotations", {}).get(REF_NAME_KEY) == ref_name]
    check(len(tagged) == 1, f"index.json: {len(tagged)} manifests have {REF_NAME_KEY}={ref_name}")
    (desc,) = tagged

    def blob(digest: str) -> bytes:
        algo, _, hex_ = digest.partition(":")
        check(algo == "sha256" and len(hex_) == 64, f"unexpected digest {digest}")
        path = root / "blobs" / "sha256" / hex_
        check(path.is_file(), f"blob {digest} is missing from the layout")
        return path.read_bytes()

    manifest = json.loads(_fetch(blob, desc, "manifest"))
    wanted = {desc["digest"], manifest["config"]["digest"], *(ly["digest"] for ly in manifest["layers"])}
    present = {"sha256:" + p.name for p in (root / "blobs" / "sha256").iterdir()}
    check(present == wanted, f"layout blobs not referenced by the image: {sorted(present - wanted)}, "
                             f"missing: {sorted(wanted - present)}")
    return desc, blob


def verify_image(manifest_bytes: bytes, blob: Blob, *, mtime: int = 0) -> bytes:
    """Checks every part of the image and returns the module (plugin.wasm)."""
    manifest = json.loads(manifest_bytes)
    check(manifest.get("schemaVersion") == 2, "manifest schemaVersion is not 2")
    check(manifest.get("mediaType") == MANIFEST, f"manifest mediaType {manifest.get('mediaType')!r}, want {MANIFEST}")
    check(manifest.get("annotations", {}).get(VARIANT_KEY) == "compat",
          f"manifest lacks the annotation {VARIANT_KEY}=compat")

    check(manifest["config"].get("mediaType") == CONFIG,
          f"config mediaType {manifest['config'].get('mediaType')!r}, want {CONFIG}")
    config = json.loads(_fetch(blob, manifest["config"], "config"))

    layers = manifest.get("layers", [])
    check(len(layers) == 1, f"the image has {len(layers)} layers, want exactly one")
    check(layers[0].get("mediaType") == LAYER, f"layer mediaType {layers[0].get('mediaType')!r}, want {LAYER}")
    data = _fetch(blob, layers[0], "layer")

    # gzip header (RFC 1952): magic, deflate, flags (FNAME is 0x08), 4-byte mtime
    check(data[:3] == b"\x1f\x8b\x08", "the layer is not gzip")
    check(data[3] & 0x08 == 0, "the gzip header holds a file name")
    check(data[4:8] == b"\0\0\0\0", "the gzip header holds a time stamp")
    tar_bytes = gzip.decompress(data)
    check(config.get("rootfs") == {"type": "layers", "diff_ids": [sha256(tar_bytes)]},
          "config rootfs.diff_ids is not the digest of the uncompressed layer")

    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        members = tar.getmembers()
        check(len(members) == 1, f"the layer holds {[m.name for m in members]}, want exactly plugin.wasm")
        (m,) = members
        check(m.name == "plugin.wasm", f"the layer's file is {m.name!r}, want 'plugin.wasm' at the root")
        check(m.isreg(), "plugin.wasm is not a regular file")
        check(m.mode == 0o644, f"plugin.wasm has mode {oct(m.mode)}, want 0o644")
        check((m.uid, m.gid, m.uname, m.gname) == (0, 0, "", ""),
              f"plugin.wasm is owned by {(m.uid, m.gid, m.uname, m.gname)}, want (0, 0, '', '')")
        check(m.mtime == mtime, f"plugin.wasm has mtime {m.mtime}, want {mtime}")
        module = tar.extractfile(m).read()
    check(module[:4] == b"\0asm", "plugin.wasm is not a Wasm module")
    check(istio_extract(manifest_bytes, blob) == module, "Istio's way of reading the image finds another module")
    return module


def istio_extract(manifest_bytes: bytes, blob: Blob) -> bytes:
    """Istio's reading of a compat image: a Docker schema 2 manifest needs a Docker tar.gzip last
    layer, any other manifest an OCI tar+gzip last layer; the module is the first tar entry whose
    base name is plugin.wasm. (Istio's oci-variant fallback, two layers of Wasm artifact media
    types, is not modelled: this image is not one.)"""
    manifest = json.loads(manifest_bytes)
    layers = manifest.get("layers", [])
    check(len(layers) > 0, "number of layers must be greater than zero")
    want = DOCKER_LAYER if manifest.get("mediaType") == DOCKER_MANIFEST else LAYER
    check(layers[-1].get("mediaType") == want, f"invalid media type {layers[-1].get('mediaType')} (expect {want})")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(_fetch(blob, layers[-1], "layer"))), mode="r:") as tar:
        for m in tar:
            if posixpath.basename(m.name) == "plugin.wasm":
                f = tar.extractfile(m)
                check(f is not None, "plugin.wasm has no content")
                return f.read()
    raise Rejected("plugin.wasm not found in the archive")
