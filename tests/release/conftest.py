"""Fixtures of the release tests: tools/ on the path, the image tests' loopback registry."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent / "tools"))
sys.path.insert(0, str(TESTS / "image"))  # ocicheck, and the registry fixture's own imports

from image.conftest import registry, skopeo_bin, wasm, wasm_path  # noqa: E402,F401  (fixtures)
