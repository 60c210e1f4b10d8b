"""`make release` and `make release-push`, end to end: the real cargo-cyclonedx SBOM, the image
with its standard annotations, the SBOM attached as an OCI 1.1 artifact whose subject is the
image, the chart values pinning the image's digest (rendered by the chart), SHA-256 sums that
`sha256sum -c` accepts; pushed to Debian's docker-registry on 127.0.0.1 (no referrers API: the
tag-schema index finds the SBOM) and read back through the registry API as Istio and a
referrers client would. And what `tools/release.py` refuses."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tomllib
import urllib.request

import pytest
import yaml

import helm
import release
import versions
from ocicheck import MANIFEST, istio_extract, verify_image

pytestmark = pytest.mark.timeout(900)

REPO = versions.REPO
NAME = "kod/kube-oidc-discovery"
INDEX = "application/vnd.oci.image.index.v1+json"


def make(*args: str) -> str:
    r = subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, timeout=800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def released(tmp_path_factory, registry):
    out = tmp_path_factory.mktemp("release") / "release"
    image = f"{registry}/{NAME}"
    printed = make("release", f"RELEASE_DIR={out}", f"RELEASE_IMAGE={image}")
    return out, image, printed


def blob(layout, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def tagged(layout) -> dict[str, dict]:
    index = json.loads((layout / "index.json").read_bytes())
    return {d["annotations"]["org.opencontainers.image.ref.name"]: d for d in index["manifests"]}


def test_the_sums_cover_every_file(released, tmp_path):
    out, _, _ = released
    files = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    listed = sorted(line.split("  ", 1)[1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert listed == files
    r = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    copy = tmp_path / "release"
    shutil.copytree(out, copy)
    (copy / "values-image.yaml").write_text((copy / "values-image.yaml").read_text() + "#\n")
    r = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=copy, capture_output=True, text=True)
    assert r.returncode != 0 and "values-image.yaml: FAILED" in r.stdout


def test_the_image_carries_the_standard_annotations_and_the_module(released, wasm):
    out, _, printed = released
    v = versions.crate_version()
    desc = tagged(out / "oci")[v]
    manifest_bytes = blob(out / "oci", desc["digest"])
    assert verify_image(manifest_bytes, lambda d: blob(out / "oci", d)) == wasm
    ann = json.loads(manifest_bytes)["annotations"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert ann["org.opencontainers.image.version"] == v
    assert ann["org.opencontainers.image.revision"] in (head, head + "-dirty")
    assert ann["org.opencontainers.image.licenses"] == tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["license"]
    assert ann["org.opencontainers.image.source"] == yaml.safe_load(
        (REPO / "charts/kube-oidc-discovery/Chart.yaml").read_text())["home"]
    assert desc["digest"] in printed


def test_the_values_files_pin_the_image_and_the_charts_take_them(released):
    out, image, _ = released
    v = versions.crate_version()
    hex_ = tagged(out / "oci")[v]["digest"].split(":", 1)[1]
    values = yaml.safe_load((out / "values-image.yaml").read_text())
    assert values == {"image": {"url": f"oci://{image}:{v}", "sha256": hex_}}
    (plugin,) = [o for o in helm.render(values=values) if o["kind"] == "WasmPlugin"]
    assert (plugin["spec"]["url"], plugin["spec"]["sha256"]) == (values["image"]["url"], hex_)
    values = yaml.safe_load((out / "values-image-envoy-gateway.yaml").read_text())
    assert values == {"image": {"url": f"{image}:{v}", "sha256": hex_}}
    (policy,) = [o for o in helm.render(REPO / "charts/kube-oidc-discovery-envoy-gateway", values=values)
                 if o["kind"] == "EnvoyExtensionPolicy"]
    (code,) = [w["code"]["image"] for w in policy["spec"]["wasm"]]
    assert (code["url"], code["sha256"]) == (values["image"]["url"], hex_)


def test_the_sbom_lists_the_crates_the_filter_is_built_from(released):
    out, _, _ = released
    v = versions.crate_version()
    sbom = json.loads((out / f"kube-oidc-discovery-{v}.cdx.json").read_text())
    assert (sbom["bomFormat"], sbom["specVersion"]) == ("CycloneDX", "1.5")
    assert (sbom["metadata"]["component"]["name"], sbom["metadata"]["component"]["version"]) == (versions.CRATE, v)
    lock = {p["name"]: p["version"] for p in tomllib.loads((REPO / "Cargo.lock").read_text())["package"]}
    listed = {c["name"]: c for c in sbom["components"]}
    for crate in ("proxy-wasm", "serde", "serde_json", "log"):
        assert listed[crate]["version"] == lock[crate]
        assert listed[crate]["purl"] == f"pkg:cargo/{crate}@{lock[crate]}"
        assert listed[crate].get("licenses"), crate
    for dev_only in ("anyhow", "wasm-bindgen-test"):
        assert dev_only not in listed, f"{dev_only} is not in the filter"


def test_the_sbom_is_an_artifact_whose_subject_is_the_image(released):
    out, _, _ = released
    v = versions.crate_version()
    tags = tagged(out / "oci")
    image = tags[v]
    artifact = json.loads(blob(out / "oci", tags[f"{v}.sbom"]["digest"]))
    assert artifact["artifactType"] == "application/vnd.cyclonedx+json"
    assert artifact["subject"] == {k: image[k] for k in ("mediaType", "digest", "size")}
    (layer,) = artifact["layers"]
    assert blob(out / "oci", layer["digest"]) == (out / f"kube-oidc-discovery-{v}.cdx.json").read_bytes()
    referrers = json.loads(blob(out / "oci", tags[f"sha256-{image['digest'].split(':')[1]}"]["digest"]))
    assert referrers["manifests"] == [{k: tags[f"{v}.sbom"][k] for k in ("mediaType", "digest", "size", "artifactType")}]
    with tarfile.open(out / f"kube-oidc-discovery-{v}-oci.tar") as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
    assert names == {f"oci/{p.relative_to(out / 'oci')}" for p in (out / "oci").rglob("*") if p.is_file()}


def registry_get(registry: str, path: str, accept: str = MANIFEST) -> tuple[bytes, str]:
    req = urllib.request.Request(f"http://{registry}/v2/{NAME}/{path}", headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read(), r.headers.get("Docker-Content-Digest", "")


def test_release_push_puts_image_and_sbom_where_clients_find_them(released, registry, wasm):
    out, image, _ = released
    make("release-push", f"RELEASE_DIR={out}", f"RELEASE_IMAGE={image}", "RELEASE_PUSH_FLAGS=--plain-http")
    v = versions.crate_version()
    tags = tagged(out / "oci")
    manifest, digest = registry_get(registry, f"manifests/{v}")
    assert digest == tags[v]["digest"], "the registry's digest is the one in values-image.yaml"
    assert istio_extract(manifest, lambda d: registry_get(registry, f"blobs/{d}", "*/*")[0]) == wasm
    # a referrers client on a registry without the referrers API: the tag schema's index
    index, _ = registry_get(registry, f"manifests/sha256-{digest.split(':')[1]}", INDEX)
    (ref,) = json.loads(index)["manifests"]
    assert ref["artifactType"] == "application/vnd.cyclonedx+json"
    artifact, artifact_digest = registry_get(registry, f"manifests/{ref['digest']}")
    assert artifact_digest == ref["digest"] == tags[f"{v}.sbom"]["digest"]
    assert json.loads(artifact)["subject"]["digest"] == digest
    sbom, _ = registry_get(registry, f"blobs/{json.loads(artifact)['layers'][0]['digest']}", "*/*")
    assert sbom == (out / f"kube-oidc-discovery-{v}.cdx.json").read_bytes()


@pytest.fixture
def inputs(tmp_path, wasm_path):
    sbom = tmp_path / "sbom.json"
    sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "metadata": {"component": {
        "name": versions.CRATE, "version": versions.crate_version()}}}))
    return {"wasm_path": wasm_path, "sbom_path": sbom, "out": tmp_path / "out",
            "image": "registry.example.com/kod", "revision": "0" * 40}


@pytest.mark.parametrize("case", ["versions", "changelog", "sbom", "image-tag", "not-wasm"])
def test_release_refuses(inputs, monkeypatch, tmp_path, case):
    if case == "versions":
        monkeypatch.setattr(versions, "mismatches", lambda: {"charts/x/Chart.yaml version": "9.9.9"})
    elif case == "changelog":
        monkeypatch.setattr(release, "changelog_has", lambda v: False)
    elif case == "sbom":
        inputs["sbom_path"].write_text(json.dumps({"bomFormat": "CycloneDX", "metadata": {"component": {
            "name": "other", "version": "1.0.0"}}}))
    elif case == "image-tag":
        inputs["image"] += ":1.0"
    else:
        inputs["wasm_path"] = inputs["sbom_path"]
    with pytest.raises(release.ReleaseError):
        release.release(**inputs)
    assert not inputs["out"].exists()


def test_the_changelog_has_this_versions_entry():
    assert release.changelog_has(versions.crate_version())
    assert not release.changelog_has("0.0.0-never")


