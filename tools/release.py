"""`make release`: the release's artifacts in dist/release, from the built filter and the SBOM
`cargo cyclonedx` wrote, after checking that every place names one version (tools/versions.py)
and that CHANGELOG.md has its entry.

    dist/release/
      kube_oidc_discovery.wasm                  the filter
      kube-oidc-discovery-<v>.cdx.json          CycloneDX SBOM of the filter's crates
      oci/                                      OCI image layout: the image (tag <v>), the SBOM as an
                                                OCI 1.1 artifact whose subject is the image (tag
                                                <v>.sbom), and the referrers index of the tag
                                                schema (tag sha256-<image digest hex>)
      kube-oidc-discovery-<v>-oci.tar           that layout as one reproducible tar
      values-image.yaml                         the Istio chart's values pinning the image by its digest
      values-image-envoy-gateway.yaml           the same for the Envoy Gateway chart
      SHA256SUMS                                sha256sum -c format, of the files above

    python tools/release.py --wasm dist/kube_oidc_discovery.wasm --sbom SBOM.json \
        --image REGISTRY/NAME --revision GIT_SHA --out dist/release
    python tools/release.py push --out dist/release --image REGISTRY/NAME [--plain-http] [--skopeo-flag=...]
    python tools/release.py sign --out dist/release --image REGISTRY/NAME --key cosign.key [--plain-http]

`push` copies the image and the SBOM artifact with skopeo, byte for byte; a registry with the OCI
1.1 referrers API indexes the artifact by its subject, for one without it the referrers index is
pushed under the tag schema's tag (anonymously: see docs/release.md). `sign` signs the pushed
image's digest and attests its SBOM with a cosign key (docs/release.md: what it does not do).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import versions

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "charts" / "image"))
import build_oci  # noqa: E402

SBOM_TYPE = "application/vnd.cyclonedx+json"
EMPTY = "application/vnd.oci.empty.v1+json"
SOURCE = "https://github.com/kube-oidc-discovery/kube-oidc-discovery"
WASM_NAME = "kube_oidc_discovery.wasm"


class ReleaseError(Exception):
    pass


def changelog_has(version: str, path: Path = REPO / "CHANGELOG.md") -> bool:
    return bool(re.search(rf"^## \[{re.escape(version)}\]", path.read_text(), re.M)) if path.exists() else False


def check_sbom(sbom: bytes, version: str) -> dict:
    doc = json.loads(sbom)
    if doc.get("bomFormat") != "CycloneDX":
        raise ReleaseError("the SBOM is not CycloneDX JSON")
    component = doc.get("metadata", {}).get("component", {})
    if (component.get("name"), component.get("version")) != (versions.CRATE, version):
        raise ReleaseError(f"the SBOM describes {component.get('name')} {component.get('version')}, "
                           f"not {versions.CRATE} {version}")
    return doc


def sbom_artifact(layout: Path, image: dict, sbom: bytes, sbom_name: str) -> tuple[dict, dict]:
    """Adds the SBOM as an OCI 1.1 artifact manifest whose subject is ``image`` (a descriptor),
    and the referrers index of the tag schema; returns their descriptors."""
    config = build_oci.write_blob(layout, b"{}")
    layer = build_oci.write_blob(layout, sbom)
    manifest = build_oci.canonical_json({
        "schemaVersion": 2,
        "mediaType": build_oci.MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": {"mediaType": EMPTY, **config, "data": "e30="},
        "layers": [{"mediaType": SBOM_TYPE, **layer,
                    "annotations": {"org.opencontainers.image.title": sbom_name}}],
        "subject": {"mediaType": image["mediaType"], "digest": image["digest"], "size": image["size"]},
    })
    artifact = {"mediaType": build_oci.MANIFEST, **build_oci.write_blob(layout, manifest), "artifactType": SBOM_TYPE}
    referrers = build_oci.canonical_json({"schemaVersion": 2, "mediaType": build_oci.INDEX, "manifests": [artifact]})
    return artifact, {"mediaType": build_oci.INDEX, **build_oci.write_blob(layout, referrers)}


def tag(desc: dict, name: str) -> dict:
    return {**desc, "annotations": {"org.opencontainers.image.ref.name": name}}


def layout_tar(layout: Path) -> bytes:
    """The layout as a tar with fixed metadata (sorted, mtime 0, owner 0:0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for p in sorted(layout.rglob("*")):
            info = tarfile.TarInfo(str(Path("oci") / p.relative_to(layout)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if p.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = p.read_bytes()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def release(wasm_path: Path, sbom_path: Path, out: Path, image: str, revision: str) -> dict:
    bad = versions.mismatches()
    if bad:
        raise ReleaseError(f"not one version (tools/versions.py): the crate is {versions.crate_version()}, {bad}")
    version = versions.crate_version()
    if not changelog_has(version):
        raise ReleaseError(f"CHANGELOG.md has no entry `## [{version}]`")
    wasm = wasm_path.read_bytes()
    if wasm[:4] != b"\0asm":
        raise ReleaseError(f"{wasm_path} is not a Wasm module: run `make build`")
    sbom = sbom_path.read_bytes()
    check_sbom(sbom, version)
    if re.search(r":[^/]*$", image) or "@" in image:
        raise ReleaseError(f"--image {image}: give REGISTRY/NAME without a tag or digest")

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    license_ = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["license"]
    annotations = {"org.opencontainers.image.source": SOURCE, "org.opencontainers.image.version": version,
                   "org.opencontainers.image.revision": revision, "org.opencontainers.image.licenses": license_}
    layout = out / "oci"
    digests = build_oci.build(wasm, layout, build_oci.source_date_epoch(), annotations)
    index = json.loads((layout / "index.json").read_bytes())
    (image_desc,) = index["manifests"]
    image_desc = {k: v for k, v in image_desc.items() if k != "annotations"}
    sbom_name = f"kube-oidc-discovery-{version}.cdx.json"
    artifact, referrers = sbom_artifact(layout, image_desc, sbom, sbom_name)
    hex_ = image_desc["digest"].split(":", 1)[1]
    index["manifests"] = [tag(image_desc, version), tag(artifact, f"{version}.sbom"),
                          tag(referrers, f"sha256-{hex_}")]
    (layout / "index.json").write_bytes(build_oci.canonical_json(index))

    (out / WASM_NAME).write_bytes(wasm)
    (out / sbom_name).write_bytes(sbom)
    (out / f"kube-oidc-discovery-{version}-oci.tar").write_bytes(layout_tar(layout))
    for name, url, gateway in (("values-image.yaml", f"oci://{image}:{version}", "Istio"),
                               ("values-image-envoy-gateway.yaml", f"{image}:{version}", "Envoy Gateway")):
        (out / name).write_text(
            f"# kube-oidc-discovery {version}: the image of this release, pinned by its manifest digest\n"
            f"# (helm install ... -f {name}). {gateway} refuses any other image at this url.\n"
            f"image:\n  url: {url}\n  sha256: \"{hex_}\"\n")
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
                   for p in sorted(out.iterdir()) if p.is_file())
    (out / "SHA256SUMS").write_text(sums)
    return {"version": version, "image": digests["manifest"], "sbom": artifact["digest"],
            "referrers": referrers["digest"], "module": digests["module"]}


def _registry_api(image: str, plain_http: bool) -> tuple[str, str]:
    host, _, repo = image.partition("/")
    return f"{'http' if plain_http else 'https'}://{host}/v2/{repo}", repo


def has_referrers_api(image: str, digest: str, plain_http: bool) -> bool:
    api, _ = _registry_api(image, plain_http)
    try:
        with urllib.request.urlopen(f"{api}/referrers/{digest}", timeout=30) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False


def put_manifest(image: str, ref: str, data: bytes, media_type: str, plain_http: bool) -> str:
    """PUT /v2/<name>/manifests/<ref> (anonymous): the registry's digest of the stored bytes."""
    api, _ = _registry_api(image, plain_http)
    req = urllib.request.Request(f"{api}/manifests/{ref}", data=data, method="PUT",
                                 headers={"Content-Type": media_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.headers.get("Docker-Content-Digest", "")
    except urllib.error.HTTPError as e:
        raise ReleaseError(f"PUT {api}/manifests/{ref}: {e.code} {e.read()[:300]!r}") from e


def push(out: Path, image: str, plain_http: bool, flags: list[str]) -> None:
    """The image and the SBOM artifact with skopeo, byte for byte (--preserve-digests); then, if
    the registry has no referrers API, the referrers index of the tag schema over the registry
    API: skopeo 1.9 rewrites an index and drops its descriptors' artifactType."""
    layout = out / "oci"
    index = json.loads((layout / "index.json").read_bytes())
    tls = ["--dest-tls-verify=false"] if plain_http else []
    image_digest = None
    for desc in index["manifests"]:
        name = desc["annotations"]["org.opencontainers.image.ref.name"]
        if desc["mediaType"] == build_oci.INDEX:
            if has_referrers_api(image, image_digest, plain_http):
                print(f"{image}: the registry indexes the SBOM by its subject (referrers API)")
                continue
            data = build_oci.blob_path(layout, desc["digest"]).read_bytes()
            got = put_manifest(image, name, data, desc["mediaType"], plain_http)
            if got != desc["digest"]:
                raise ReleaseError(f"{image}:{name}: the registry stored {got}, not {desc['digest']}")
        else:
            cmd = ["skopeo", "copy", "--quiet", "--preserve-digests", *tls, *flags,
                   f"oci:{layout}:{name}", f"docker://{image}:{name}"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise ReleaseError(f"{' '.join(cmd)}: {r.stderr.strip()}")
            image_digest = image_digest or desc["digest"]
        print(f"pushed {image}:{name} ({desc['digest']})")


def cosign_bin() -> str:
    """`make tools-cosign`'s build (KOD_COSIGN_BIN, or its default place), else one on PATH."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kube-oidc-discovery" / "cosign" / "cosign"
    built = Path(os.environ.get("KOD_COSIGN_BIN") or cache)
    return str(built) if built.exists() else shutil.which("cosign") or "cosign"


def sign(out: Path, image: str, key: Path, plain_http: bool) -> str:
    """Signs the released image's digest and attests its SBOM (in-toto, predicate type CycloneDX)
    with a cosign key; no transparency log (Rekor is not reachable from here). Returns the
    signed reference. The key's password comes from COSIGN_PASSWORD."""
    version = versions.crate_version()
    index = json.loads((out / "oci" / "index.json").read_bytes())
    (digest,) = [d["digest"] for d in index["manifests"]
                 if d["annotations"]["org.opencontainers.image.ref.name"] == version]
    ref = f"{image}@{digest}"
    insecure = ["--allow-insecure-registry", "--allow-http-registry"] if plain_http else []
    common = ["--yes", "--key", str(key), "--tlog-upload=false", *insecure]
    sbom = out / f"kube-oidc-discovery-{version}.cdx.json"
    for cmd in ([cosign_bin(), "sign", *common, ref],
                [cosign_bin(), "attest", *common, "--type", "cyclonedx", "--predicate", str(sbom), ref]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise ReleaseError(f"{' '.join(cmd[:2])}: {r.stderr.strip()[-1000:]}")
    return ref


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "dist" / "release")
    ap.add_argument("--image", required=True, help="REGISTRY/NAME, without tag")
    try:
        if argv[:1] == ["sign"]:
            ap.add_argument("--key", type=Path, required=True, help="cosign private key (COSIGN_PASSWORD)")
            ap.add_argument("--plain-http", action="store_true", help="a registry without TLS")
            args = ap.parse_args(argv[1:])
            print(f"signed {sign(args.out, args.image, args.key, args.plain_http)} and attested its SBOM")
            return 0
        if argv[:1] == ["push"]:
            ap.add_argument("--plain-http", action="store_true", help="a registry without TLS")
            ap.add_argument("--skopeo-flag", action="append", default=[], help="e.g. --dest-creds=USER:PASSWORD")
            args = ap.parse_args(argv[1:])
            push(args.out, args.image, args.plain_http, args.skopeo_flag)
            return 0
        ap.add_argument("--wasm", type=Path, required=True)
        ap.add_argument("--sbom", type=Path, required=True)
        ap.add_argument("--revision", required=True, help="the git commit the release is built from")
        args = ap.parse_args(argv)
        d = release(args.wasm, args.sbom, args.out, args.image, args.revision)
    except (ReleaseError, build_oci.BuildError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    hex_ = d["image"].split(":", 1)[1]
    print(f"kube-oidc-discovery {d['version']} in {args.out}")
    print(f"  image {args.image}:{d['version']}  manifest digest {d['image']}")
    print(f"  chart: image.url oci://{args.image}:{d['version']}, image.sha256 {hex_} ({args.out}/values-image.yaml)")
    print(f"  SBOM artifact {d['sbom']} (subject: the image); referrers index tag sha256-{hex_}")
    print(f"  plugin.wasm sha256 {d['module'].split(':', 1)[1]}; checksums in {args.out}/SHA256SUMS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
