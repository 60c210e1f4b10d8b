"""A service-account token directory written the way the kubelet writes projected volumes
(AtomicWriter): the files live in a timestamped directory ``..2026_11_22_21_04_05.123456789``,
``..data`` is a symlink to it, and each visible file (``token``, ``ca.crt``, ``namespace``) is a
symlink ``..data/<name>``. An update writes a new timestamped directory, points a new symlink
``..data_tmp`` at it, renames ``..data_tmp`` over ``..data`` (one atomic step, seen by inotify as
a move into the directory) and removes the old directory.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path


class TokenDir:
    def __init__(self, path: Path | str):
        self.path = Path(path)

    @property
    def token_file(self) -> Path:
        return self.path / "token"

    def _stamp(self) -> str:
        now = _dt.datetime.now(_dt.timezone.utc)
        return now.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{now.microsecond * 1000 + os.getpid() % 1000:09d}"

    def write(self, files: dict[str, bytes | str]) -> Path:
        """Publishes ``files`` atomically (creating the directory on first use)."""
        self.path.mkdir(parents=True, exist_ok=True)
        data = self.path / "..data"
        old = data.resolve() if data.is_symlink() else None
        stamp = self._stamp()
        new = self.path / stamp
        while new.exists():
            stamp = self._stamp()
            new = self.path / stamp
        new.mkdir(mode=0o755)
        for name, content in files.items():
            p = new / name
            p.write_bytes(content.encode() if isinstance(content, str) else content)
            p.chmod(0o644)
        tmp = self.path / "..data_tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(stamp, tmp)
        os.rename(tmp, data)
        for name in files:
            link = self.path / name
            if not link.is_symlink():
                if link.exists():
                    link.unlink()
                os.symlink(f"..data/{name}", link)
        if old is not None and old != new.resolve() and old.exists():
            shutil.rmtree(old)
        return new

    def write_token(self, token: str, ca: bytes | None = None, namespace: str = "kube-oidc-discovery") -> None:
        """Writes the service-account files; ``ca`` is kept from the current copy if not given."""
        if ca is None:
            current = self.path / "ca.crt"
            ca = current.read_bytes() if current.exists() else b""
        self.write({"token": token, "ca.crt": ca, "namespace": namespace})

    def read_token(self) -> str:
        return self.token_file.read_text()
