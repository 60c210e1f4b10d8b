"""Debian's docker-registry on 127.0.0.1 (storage in a work directory, no auth), plain HTTP or
HTTPS with a given certificate, started on a free port and stopped by PID."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from harness import child

INSTALL_HINT = "run `make tools-apt` (apt-get install -y docker-registry skopeo)"


def binary() -> str | None:
    name = "docker-registry"
    return shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)


class Registry:
    """``with Registry(work) as r: r.addr`` ("127.0.0.1:PORT"). ``tls=(cert, key, ca)``: HTTPS
    with that certificate (it must name 127.0.0.1), checked against ``ca`` while waiting for it."""

    def __init__(self, work: Path, tls: tuple[Path, Path, Path] | None = None):
        self.work = Path(work)
        self.tls = tls
        self.addr = ""
        self._procs: list[subprocess.Popen] = []

    def _start(self, exe: str) -> tuple[subprocess.Popen, str]:
        port = child.free_port()
        data = self.work / f"data-{port}"
        cfg = self.work / f"config-{port}.yml"
        tls = f", tls: {{certificate: '{self.tls[0]}', key: '{self.tls[1]}'}}" if self.tls else ""
        cfg.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: '{data}'}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '127.0.0.1:{port}'{tls}}}\n"
        )
        # the registry would read REGISTRY_* variables over its config file
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        return child.spawn([exe, "serve", cfg], self.work / f"registry-{port}.log", env=env), f"127.0.0.1:{port}"

    def _up(self, proc: subprocess.Popen, addr: str, seconds: float) -> bool:
        scheme = "https" if self.tls else "http"
        ctx = ssl.create_default_context(cafile=str(self.tls[2])) if self.tls else None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{scheme}://{addr}/v2/", timeout=2, context=ctx) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def start(self) -> "Registry":
        exe = binary()
        if not exe:
            raise RuntimeError(f"docker-registry is not installed: {INSTALL_HINT}")
        self.work.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # another process may take the free port before the registry binds it
            proc, addr = self._start(exe)
            self._procs.append(proc)
            if self._up(proc, addr, 20):
                self.addr = addr
                return self
            child.stop(proc)
        logs = "\n".join(p.read_text(errors="replace") for p in sorted(self.work.glob("registry-*.log")))
        raise RuntimeError(f"docker-registry did not answer on /v2/:\n{logs}")

    def stop(self) -> None:
        for proc in self._procs:
            child.stop(proc)

    def __enter__(self) -> "Registry":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def https_registry(workdir: Path) -> Registry:
    """A Registry (not started: ``with https_registry(d) as r``) on 127.0.0.1 over HTTPS, its
    certificate from a CA of its own, whose file is ``r.ca``, alone in its directory (skopeo's
    --dest-cert-dir reads *.crt as CAs, *.key as client keys). Envoy Gateway's image fetcher
    allows no plain HTTP (v1.9.1 exposes no setting for it)."""
    from cryptography.hazmat.primitives import serialization

    from harness import pki

    ca = pki.make_ca("registry CA")
    cert, key = pki.make_leaf(ca, "registry", ["localhost"], ["127.0.0.1"])
    (workdir / "trust").mkdir(parents=True)
    paths = {"ca.crt": workdir / "trust" / "ca.crt", "tls.crt": workdir / "tls.crt", "tls.key": workdir / "tls.key"}
    paths["ca.crt"].write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    paths["tls.crt"].write_bytes(cert)
    paths["tls.key"].write_bytes(key)
    r = Registry(workdir / "registry", tls=(paths["tls.crt"], paths["tls.key"], paths["ca.crt"]))
    r.ca = paths["ca.crt"]
    return r


def push_filter_image(registry: Registry, wasm: Path, repo: str, workdir: Path) -> dict:
    """The filter's OCI image (charts/image/build_oci.py, as `make oci`) pushed to ``registry``
    (https_registry's) with skopeo: {"url": registry/repo:test, "sha256": manifest digest hex}."""
    import build_oci  # charts/image/build_oci.py

    out = workdir / "layout"
    digests = build_oci.build(wasm.read_bytes(), out)
    url = f"{registry.addr}/{repo}:test"
    r = subprocess.run(["skopeo", "copy", "--dest-cert-dir", str(registry.ca.parent), f"oci:{out}:latest",
                        f"docker://{url}"], capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise RuntimeError(f"skopeo copy: {r.stderr}")
    return {"url": url, "sha256": digests["manifest"].split(":", 1)[1]}
