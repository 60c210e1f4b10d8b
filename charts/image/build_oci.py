"""`make oci`: the filter as an OCI image layout that Istio's WasmPlugin pulls.

Istio's "compat" variant (istio/istio pkg/wasm/imagefetcher.go, extractOCIStandardImage): the
image's last layer has media type application/vnd.oci.image.layer.v1.tar+gzip and is a tar
holding a file named plugin.wasm. The manifest carries the annotation
module.wasm.image/variant=compat, and index.json names it `latest`, so that
`skopeo copy oci:dist/oci:latest docker://REGISTRY/NAME:TAG` (`make push`) finds it.

Reproducible byte for byte: fixed tar metadata (mtime SOURCE_DATE_EPOCH or 0, uid/gid 0, no
user names, mode 0644, ustar), gzip without a name or time stamp, JSON with sorted keys and no
whitespace. Only the standard library.
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
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
VARIANT = {"module.wasm.image/variant": "compat"}
FILE_NAME = "plugin.wasm"
REF_NAME = "latest"


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


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
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def build(wasm: bytes, out: Path, mtime: int = 0) -> dict[str, str]:
    """Writes the layout to ``out`` (replacing it); returns the digests."""
    tar = layer_tar(wasm, mtime)
    layer = gzip_bytes(tar)
    config = _json({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]},
    })
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": _digest(layer), "size": len(layer)}],
        "annotations": {**VARIANT, "org.opencontainers.image.title": "kube-oidc-discovery"},
    })
    index = _json({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{"mediaType": MANIFEST, "digest": _digest(manifest), "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": REF_NAME}}],
    })
    if out.exists():
        shutil.rmtree(out)
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (layer, config, manifest):
        (blobs / _digest(blob).split(":", 1)[1]).write_bytes(blob)
    (out / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_bytes(index)
    return {"manifest": _digest(manifest), "layer": _digest(layer), "config": _digest(config),
            "module": _digest(wasm)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm", required=True, type=Path, help="the filter (dist/kube_oidc_discovery.wasm)")
    ap.add_argument("--out", required=True, type=Path, help="directory of the OCI layout (replaced)")
    args = ap.parse_args(argv)
    if not args.wasm.is_file():
        print(f"error: {args.wasm} is missing: run `make build`", file=sys.stderr)
        return 1
    wasm = args.wasm.read_bytes()
    if wasm[:4] != b"\0asm":
        print(f"error: {args.wasm} is not a Wasm module", file=sys.stderr)
        return 1
    d = build(wasm, args.out, int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    print(f"OCI layout {args.out} (tag {REF_NAME})")
    print(f"  manifest digest  {d['manifest']}   (pin the image: url ...@{d['manifest']})")
    print(f"  plugin.wasm      {d['module']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
