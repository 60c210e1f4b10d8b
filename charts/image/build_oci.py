"""`make oci`: the filter as an OCI image layout that Istio's WasmPlugin pulls.

Istio's fetcher (istio/istio pkg/wasm/imagefetcher.go) treats any manifest that is not Docker's
schema 2 as the "compat" variant first (extractOCIStandardImage): the image's last layer must have
media type application/vnd.oci.image.layer.v1.tar+gzip and be a tar holding a file whose base name
is plugin.wasm. This image has exactly one such layer with plugin.wasm at the root, an OCI image
config, and the manifest annotation module.wasm.image/variant=compat that the solo-io "Wasm image
spec" (spec/spec-compat.md) recommends (Istio itself does not read it). index.json names the
manifest `latest`, so `skopeo copy oci:dist/oci:latest docker://REGISTRY/NAME:TAG` (`make push`)
finds it.

Reproducible byte for byte: fixed tar metadata (mtime SOURCE_DATE_EPOCH or 0, uid/gid 0, no user
names, mode 0644, ustar), gzip without a name or time stamp, JSON with sorted keys and no
whitespace. The output directory is written fresh each time (stale blobs go). Only the standard
library.

The manifest carries org.opencontainers.image.title; `make release` (tools/release.py) builds the
same image with the annotations source, version, revision and licenses added.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
VARIANT_KEY = "module.wasm.image/variant"
VARIANT = {VARIANT_KEY: "compat"}
FILE_NAME = "plugin.wasm"
REF_NAME = "latest"
TITLE = "kube-oidc-discovery"


class BuildError(Exception):
    pass


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_path(layout: Path, digest: str) -> Path:
    """Where an OCI layout keeps the blob of a sha256 ``digest``."""
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def write_blob(layout: Path, data: bytes) -> dict:
    """Writes ``data`` into the layout's blobs; returns its descriptor's digest and size."""
    digest = sha256_digest(data)
    blob_path(layout, digest).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def layer_tar(wasm: bytes, mtime: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(FILE_NAME)
        info.size, info.mtime, info.mode = len(wasm), mtime, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    # filename="" and mtime=0: the header holds neither a name nor a time stamp.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def image_blobs(wasm: bytes, mtime: int = 0,
                annotations: dict[str, str] | None = None) -> tuple[dict[str, bytes], bytes]:
    """The blobs (digest -> bytes: layer, config, manifest) and index.json of the image;
    ``annotations`` are added to the manifest's."""
    tar = layer_tar(wasm, mtime)
    layer = gzip_bytes(tar)
    config = canonical_json({
        # GOOS/GOARCH-style values of a WASI module; Istio reads neither.
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]},
    })
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": sha256_digest(layer), "size": len(layer)}],
        "annotations": {**(annotations or {}), **VARIANT, "org.opencontainers.image.title": TITLE},
    })
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{"mediaType": MANIFEST, "digest": sha256_digest(manifest), "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": REF_NAME}}],
    })
    return {sha256_digest(b): b for b in (layer, config, manifest)}, index


def _replaceable(out: Path) -> bool:
    """Only an OCI layout (a previous build) or an empty directory is replaced."""
    if not out.exists():
        return True
    if not out.is_dir() or out.is_symlink():
        return False
    return (out / "oci-layout").is_file() or not any(out.iterdir())


def build(wasm: bytes, out: Path, mtime: int = 0, annotations: dict[str, str] | None = None) -> dict[str, str]:
    """Writes the layout to ``out`` (replacing a previous one); returns the digests."""
    if not _replaceable(out):
        raise BuildError(f"{out} exists and is not an OCI layout: not replacing it")
    blobs, index = image_blobs(wasm, mtime, annotations)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside `out` and renamed into place: a reader never sees half a layout, and
    # nothing of a previous build (stale blobs) survives.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "blobs" / "sha256").mkdir(parents=True)
        for blob in blobs.values():
            write_blob(tmp, blob)
        (tmp / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        (tmp / "index.json").write_bytes(index)
        for p in [tmp, *tmp.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            out.rename(old / "layout")
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    manifest = json.loads(index)["manifests"][0]["digest"]
    layer = json.loads(blobs[manifest])["layers"][0]["digest"]
    return {"manifest": manifest, "layer": layer, "module": sha256_digest(wasm)}


def source_date_epoch() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise BuildError(f"SOURCE_DATE_EPOCH={raw!r} is not a non-negative integer")
    return int(raw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm", required=True, type=Path, help="the filter (dist/kube_oidc_discovery.wasm)")
    ap.add_argument("--out", required=True, type=Path, help="directory of the OCI layout (replaced)")
    args = ap.parse_args(argv)
    try:
        if not args.wasm.is_file():
            raise BuildError(f"{args.wasm} is missing: run `make build`")
        wasm = args.wasm.read_bytes()
        if wasm[:4] != b"\0asm":
            raise BuildError(f"{args.wasm} is not a Wasm module")
        d = build(wasm, args.out, source_date_epoch())
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    hex_ = d["manifest"].split(":", 1)[1]
    print(f"OCI layout {args.out} (tag {REF_NAME}); push it with `make push IMAGE=REGISTRY/NAME:TAG`")
    print(f"  image (manifest) digest  {d['manifest']}")
    print(f"  WasmPlugin sha256 for an oci:// url (chart: image.sha256)  {hex_}")
    print(f"  plugin.wasm sha256 (what an http(s):// url is checked against)  {d['module'].split(':', 1)[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
