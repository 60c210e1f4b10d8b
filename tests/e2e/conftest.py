"""The end-to-end tests' fixtures are tests/conftest.py's (``make_stack``; ``fleet`` and
``cluster_pkis`` for the `issuers` form, which tests/monitoring uses too)."""
