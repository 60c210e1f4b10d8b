"""The release tests' fixtures (``registry``, ``skopeo_bin``, ``wasm``, ``wasm_bytes``) are
tests/conftest.py's; tools/ is on pytest.ini's pythonpath."""
