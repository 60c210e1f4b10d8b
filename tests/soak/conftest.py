"""Fixtures of the soak: those of the e2e tests (the real filter in real Envoy, the fake
kube-apiserver, the application backend)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e.conftest import backend, make_stack, pki, wasm  # noqa: E402,F401  (fixtures shared with e2e)
