"""`make oci` offline: the layout is reproducible, written fresh, and is the compat-variant image
holding exactly the module `make build` wrote; the checks reject each kind of wrong image."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import build_oci
from harness.ocicheck import (CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, LAYER, MANIFEST, Rejected, istio_extract,
                      read_layout, sha256, verify_image)

pytestmark = pytest.mark.timeout(120)
TIMEOUT = 60
SCRIPT = Path(build_oci.__file__).resolve()


def make_oci(wasm: Path, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """What `make oci` runs (with the interpreter running the tests, i.e. .venv/bin/python)."""
    return subprocess.run([sys.executable, str(SCRIPT), "--wasm", str(wasm), "--out", str(out)],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, "SOURCE_DATE_EPOCH": "", **(env or {})})


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"build_oci.py failed:\n{r.stdout}{r.stderr}"
    return r


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def verify_layout(root: Path, mtime: int = 0) -> bytes:
    desc, blob = read_layout(root)
    return verify_image(blob(desc["digest"]), blob, mtime=mtime)


# ---------------------------------------------------------------- the build


def test_two_builds_are_byte_identical(tmp_path, wasm, wasm_bytes):
    r = ok(make_oci(wasm, tmp_path / "a"))
    ok(make_oci(wasm, tmp_path / "b"))
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert a == b
    assert sorted(k for k in a if not k.startswith("blobs/")) == ["index.json", "oci-layout"]
    for name, data in a.items():  # blobs are named by their digest: layer, config, manifest
        if name.startswith("blobs/"):
            assert name == "blobs/sha256/" + sha256(data).split(":")[1]
    assert len(a) == 5
    assert verify_layout(tmp_path / "a") == wasm_bytes
    desc, _ = read_layout(tmp_path / "a")
    assert desc["digest"].split(":")[1] in r.stdout  # the digest to pin is printed
    assert sha256(wasm_bytes).split(":")[1] in r.stdout


def test_the_digests_cover_the_module(tmp_path, wasm_bytes):
    src = tmp_path / "other.wasm"
    src.write_bytes(wasm_bytes + b"\0")  # a custom section's worth of difference
    build_oci.build(wasm_bytes, tmp_path / "a")
    ok(make_oci(src, tmp_path / "b"))
    assert read_layout(tmp_path / "a")[0]["digest"] != read_layout(tmp_path / "b")[0]["digest"]


def test_source_date_epoch_sets_the_file_time(tmp_path, wasm, wasm_bytes):
    ok(make_oci(wasm, tmp_path / "zero"))
    ok(make_oci(wasm, tmp_path / "a", {"SOURCE_DATE_EPOCH": "1700000000"}))
    ok(make_oci(wasm, tmp_path / "b", {"SOURCE_DATE_EPOCH": "1700000000"}))
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert verify_layout(tmp_path / "a", mtime=1700000000) == wasm_bytes
    with pytest.raises(Rejected, match="mtime 1700000000"):
        verify_layout(tmp_path / "a")  # mtime 0 expected
    assert read_layout(tmp_path / "a")[0]["digest"] != read_layout(tmp_path / "zero")[0]["digest"]
    r = make_oci(wasm, tmp_path / "c", {"SOURCE_DATE_EPOCH": "yesterday"})
    assert r.returncode == 1 and "SOURCE_DATE_EPOCH" in r.stderr and not (tmp_path / "c").exists()


def test_a_rebuild_leaves_no_stale_blobs(tmp_path, wasm, wasm_bytes):
    out = tmp_path / "oci"
    build_oci.build(wasm_bytes + b"\0", out)
    (out / "blobs" / "sha256" / ("0" * 64)).write_bytes(b"stale")
    before = set(files(out))
    ok(make_oci(wasm, out))
    after = files(out)
    assert not (before - {"index.json", "oci-layout"}) & set(after)
    assert verify_layout(out) == wasm_bytes  # read_layout rejects unreferenced blobs
    assert [p.name for p in tmp_path.iterdir()] == ["oci"]  # no temp dirs left beside it


def test_it_replaces_only_a_layout_or_an_empty_dir(tmp_path, wasm):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = make_oci(wasm, out)
    assert r.returncode == 1 and "not an OCI layout" in r.stderr
    assert files(out) == {"keep.txt": b"mine"}
    (out / "keep.txt").unlink()
    ok(make_oci(wasm, out))


def test_a_missing_or_foreign_module_fails_loudly(tmp_path):
    r = make_oci(tmp_path / "nope.wasm", tmp_path / "oci")
    assert r.returncode == 1 and "make build" in r.stderr
    (tmp_path / "x.wasm").write_bytes(b"#!/bin/sh\n")
    r = make_oci(tmp_path / "x.wasm", tmp_path / "oci")
    assert r.returncode == 1 and "not a Wasm module" in r.stderr
    assert not (tmp_path / "oci").exists()


def test_the_image_is_the_compat_variant(tmp_path, wasm_bytes):
    build_oci.build(wasm_bytes, tmp_path / "oci")
    desc, blob = read_layout(tmp_path / "oci")
    assert desc["mediaType"] == MANIFEST
    manifest_bytes = blob(desc["digest"])
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == MANIFEST
    assert manifest["config"]["mediaType"] == CONFIG
    assert [ly["mediaType"] for ly in manifest["layers"]] == [LAYER]
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert manifest_bytes == json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    assert verify_image(manifest_bytes, blob) == wasm_bytes
    assert istio_extract(manifest_bytes, blob) == wasm_bytes


# ---------------------------------------------------------------- each check can fail


def entry(name: str, data: bytes = b"", **attrs) -> tuple[tarfile.TarInfo, bytes]:
    """A tar member as `make oci` writes it, with ``attrs`` changed."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    for k, v in attrs.items():
        setattr(info, k, v)
    if not info.isreg():
        info.size, data = 0, b""
    return info, data


def tar_of(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def gzip_named(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="plugin.tar", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def rewrite(root: Path, *, tar: bytes | None = None, layer: bytes | None = None, manifest=None,
            config=None, index=None) -> None:
    """Changes a built layout and keeps it self-consistent (digests, sizes, diff_ids, no
    unreferenced blobs), so that only the intended defect remains."""
    blobs = root / "blobs" / "sha256"
    idx = json.loads((root / "index.json").read_bytes())
    m = json.loads((blobs / idx["manifests"][0]["digest"].split(":")[1]).read_bytes())
    cfg = json.loads((blobs / m["config"]["digest"].split(":")[1]).read_bytes())
    if tar is not None or layer is not None:
        layer = layer if layer is not None else build_oci.gzip_bytes(tar)
        (blobs / sha256(layer).split(":")[1]).write_bytes(layer)
        m["layers"][-1].update(digest=sha256(layer), size=len(layer))
        tar = gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer
        cfg["rootfs"]["diff_ids"][-1] = sha256(tar)
    if config:
        config(cfg)
    cfg_bytes = build_oci.canonical_json(cfg)
    (blobs / sha256(cfg_bytes).split(":")[1]).write_bytes(cfg_bytes)
    m["config"].update(digest=sha256(cfg_bytes), size=len(cfg_bytes))
    if manifest:
        manifest(m)
    m_bytes = build_oci.canonical_json(m)
    (blobs / sha256(m_bytes).split(":")[1]).write_bytes(m_bytes)
    idx["manifests"][0].update(digest=sha256(m_bytes), size=len(m_bytes))
    if index:
        index(idx)
    (root / "index.json").write_bytes(build_oci.canonical_json(idx))
    wanted = {idx["manifests"][0]["digest"], m["config"]["digest"], *(ly["digest"] for ly in m["layers"])}
    for p in blobs.iterdir():
        if "sha256:" + p.name not in wanted:
            p.unlink()


def _tampered(root: Path) -> None:
    desc, blob = read_layout(root)
    digest = json.loads(blob(desc["digest"]))["layers"][0]["digest"]
    path = root / "blobs" / "sha256" / digest.split(":")[1]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _add_layer(root: Path) -> None:
    extra = build_oci.gzip_bytes(tar_of(entry("README", b"x")))
    (root / "blobs" / "sha256" / sha256(extra).split(":")[1]).write_bytes(extra)
    rewrite(root,
            manifest=lambda m: m["layers"].insert(0, {"mediaType": LAYER, "digest": sha256(extra),
                                                      "size": len(extra)}),
            config=lambda c: c["rootfs"]["diff_ids"].insert(0, sha256(gzip.decompress(extra))))


def _layer_tar(*entries):
    return lambda root, wasm: rewrite(root, tar=tar_of(*(e(wasm) for e in entries)))


def _manifest(change):
    return lambda root, wasm: rewrite(root, manifest=change)


PLUGIN = lambda wasm: entry("plugin.wasm", wasm)  # noqa: E731

# case: (how the built layout is spoiled, what the rejection says)
CASES = {
    "tampered layer blob": (lambda root, wasm: _tampered(root), "does not match its digest"),
    "stale blob": (lambda root, wasm: (root / "blobs" / "sha256" / ("0" * 64)).write_bytes(b"x"),
                   "not referenced by the image"),
    "no latest tag": (lambda root, wasm: rewrite(root, index=lambda i: i["manifests"][0]["annotations"].update(
        {"org.opencontainers.image.ref.name": "v1"})), "ref.name=latest"),
    "Docker manifest media type": (_manifest(lambda m: m.update(mediaType=DOCKER_MANIFEST)), "manifest mediaType"),
    "no variant annotation": (_manifest(lambda m: m.pop("annotations")), "module.wasm.image/variant=compat"),
    "config media type": (_manifest(lambda m: m["config"].update(
        mediaType="application/vnd.module.wasm.config.v1+json")), "config mediaType"),
    "Docker layer media type": (_manifest(lambda m: m["layers"][0].update(mediaType=DOCKER_LAYER)),
                                "layer mediaType"),
    "wrong layer size": (_manifest(lambda m: m["layers"][0].update(size=m["layers"][0]["size"] + 1)),
                         "descriptor says"),
    "two layers": (lambda root, wasm: _add_layer(root), "2 layers"),
    "wrong diff_ids": (lambda root, wasm: rewrite(root, config=lambda c: c["rootfs"].update(diff_ids=[sha256(b"")])),
                       "diff_ids"),
    "plain tar layer": (lambda root, wasm: rewrite(root, layer=tar_of(PLUGIN(wasm))), "not gzip"),
    "gzip with a name": (lambda root, wasm: rewrite(root, layer=gzip_named(tar_of(PLUGIN(wasm)))),
                         "holds a file name"),
    "gzip with a time stamp": (lambda root, wasm: rewrite(root, layer=gzip.compress(tar_of(PLUGIN(wasm)),
                                                                                     mtime=1700000000)),
                               "time stamp"),
    "two files": (_layer_tar(PLUGIN, lambda w: entry("runtime-config.json", b"{}")), "want exactly plugin.wasm"),
    "no plugin.wasm": (_layer_tar(lambda w: entry("module.wasm", w)), "want 'plugin.wasm'"),
    "plugin.wasm in a directory": (_layer_tar(lambda w: entry("wasm/plugin.wasm", w)), "want 'plugin.wasm'"),
    "plugin.wasm is a symlink": (_layer_tar(lambda w: entry("plugin.wasm", type=tarfile.SYMTYPE,
                                                            linkname="x.wasm")), "not a regular file"),
    "executable mode": (_layer_tar(lambda w: entry("plugin.wasm", w, mode=0o755)), "mode 0o755"),
    "owned by a user": (_layer_tar(lambda w: entry("plugin.wasm", w, uid=1000, uname="dev")), "owned by"),
    "file time": (_layer_tar(lambda w: entry("plugin.wasm", w, mtime=1)), "mtime 1"),
    "not a Wasm module": (_layer_tar(lambda w: entry("plugin.wasm", b"MZ" + w[2:])), "not a Wasm module"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_checks_reject(tmp_path, wasm_bytes, case):
    mutate, message = CASES[case]
    root = tmp_path / "oci"
    build_oci.build(wasm_bytes, root)
    verify_layout(root)  # the untouched image passes
    mutate(root, wasm_bytes)
    with pytest.raises(Rejected, match=message):
        verify_layout(root)


def test_istio_reading_accepts_and_rejects_what_istio_does(tmp_path, wasm_bytes):
    """Istio is more lenient than verify_image (plugin.wasm anywhere, other files beside it) but
    needs the last layer's media type to match the manifest's kind and a file named plugin.wasm."""
    root = tmp_path / "oci"

    def read():
        desc, blob = read_layout(root)
        return istio_extract(blob(desc["digest"]), blob)

    build_oci.build(wasm_bytes, root)
    rewrite(root, tar=tar_of(entry("runtime-config.json", b"{}"), entry("./wasm/plugin.wasm", wasm_bytes)))
    assert read() == wasm_bytes
    rewrite(root, manifest=lambda m: m["layers"][0].update(mediaType=DOCKER_LAYER))
    with pytest.raises(Rejected, match="invalid media type"):
        read()
    rewrite(root, manifest=lambda m: m.update(mediaType=DOCKER_MANIFEST))
    assert read() == wasm_bytes  # a Docker-built image
    rewrite(root, tar=tar_of(entry("module.wasm", wasm_bytes)))
    with pytest.raises(Rejected, match="plugin.wasm not found"):
        read()


def test_the_dockerfile_makes_one_layer_of_plugin_wasm():
    """No Docker here: the Dockerfile must stay FROM scratch plus a single COPY of plugin.wasm
    (Istio reads only the last layer), and the build context must hold nothing else."""
    here = SCRIPT.parent
    steps = [ln.split() for ln in (here / "Dockerfile").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert steps == [["FROM", "scratch"], ["COPY", "plugin.wasm", "./"]]
    ignore = [ln for ln in (here / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert ignore == ["*", "!plugin.wasm"]
