"""The image tests' fixtures (the module's bytes, skopeo, a registry) are tests/conftest.py's:
the release tests use them too."""
