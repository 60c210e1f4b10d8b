"""The built filter exports only the proxy-wasm callbacks it implements (tools/wasm_exports.py),
and every callback the source implements is among them: a callback implemented but not exported
would silently never run."""

from __future__ import annotations

import re

import wasm_exports  # tools/wasm_exports.py
from harness import REPO_ROOT

# The proxy-wasm Rust SDK's trait methods and the export through which the host calls each.
SDK_CALLBACKS = {
    "on_vm_start": "proxy_on_vm_start",
    "on_configure": "proxy_on_configure",
    "on_tick": "proxy_on_tick",
    "on_queue_ready": "proxy_on_queue_ready",
    "on_done": "proxy_on_done",
    "on_log": "proxy_on_log",
    "on_http_call_response": "proxy_on_http_call_response",
    "on_grpc_call_response": "proxy_on_grpc_receive",
    "on_grpc_stream_initial_metadata": "proxy_on_grpc_receive_initial_metadata",
    "on_grpc_stream_message": "proxy_on_grpc_receive",
    "on_grpc_stream_trailing_metadata": "proxy_on_grpc_receive_trailing_metadata",
    "on_grpc_stream_close": "proxy_on_grpc_close",
    "on_foreign_function": "proxy_on_foreign_function",
    "create_http_context": "proxy_on_context_create",
    "create_stream_context": "proxy_on_context_create",
    "on_http_request_headers": "proxy_on_request_headers",
    "on_http_request_body": "proxy_on_request_body",
    "on_http_request_trailers": "proxy_on_request_trailers",
    "on_http_response_headers": "proxy_on_response_headers",
    "on_http_response_body": "proxy_on_response_body",
    "on_http_response_trailers": "proxy_on_response_trailers",
    "on_new_connection": "proxy_on_new_connection",
    "on_downstream_data": "proxy_on_downstream_data",
    "on_downstream_close": "proxy_on_downstream_connection_close",
    "on_upstream_data": "proxy_on_upstream_data",
    "on_upstream_close": "proxy_on_upstream_connection_close",
}
# Methods of the SDK's traits that the host does not call through an export of their own.
NOT_CALLBACKS = {"get_type"}


def implemented(source: str) -> set[str]:
    """The exports through which the host reaches what ``source`` implements of the SDK's traits
    (and `proxy_on_delete`, which drops a request's context and runs its `Drop`)."""
    bodies = re.findall(r"^impl (?:Context|RootContext|HttpContext|StreamContext) for \w+ \{\n(.*?)^\}",
                        source, re.S | re.M)
    methods = {m for body in bodies for m in re.findall(r"^    fn (\w+)\(", body, re.M)} - NOT_CALLBACKS
    unknown = methods - set(SDK_CALLBACKS)
    assert not unknown, f"add these SDK methods to SDK_CALLBACKS: {sorted(unknown)}"
    return {SDK_CALLBACKS[m] for m in methods} | {"proxy_on_delete", "proxy_on_memory_allocate"}


def callbacks(names: list[str]) -> set[str]:
    return {n for n in names if n.startswith(wasm_exports.CALLBACK_PREFIX)}


def test_every_callback_the_source_implements_is_kept():
    for path, keep in (("src/host/proxy_wasm.rs", wasm_exports.FILTER), ("tools/floor.rs", wasm_exports.FLOOR)):
        source = (REPO_ROOT / path).read_text()
        assert implemented(source) == set(keep), path


def test_the_implemented_callbacks_are_found_in_the_source():
    # the parse above must see the methods it is there to see
    source = (REPO_ROOT / "src/host/proxy_wasm.rs").read_text()
    assert {"proxy_on_request_headers", "proxy_on_tick", "proxy_on_http_call_response"} <= implemented(source)
    added = source + "\nimpl HttpContext for Other {\n    fn on_http_response_headers(&mut self) {}\n}\n"
    assert "proxy_on_response_headers" in implemented(added)


def test_the_built_filter_exports_only_its_callbacks(wasm):
    names = wasm_exports.exports(wasm.read_bytes())
    assert callbacks(names) == set(wasm_exports.FILTER)
    assert {"memory", "_initialize"} <= set(names)
    assert any(n.startswith("proxy_abi_version_") for n in names), names


def test_the_sdk_build_exports_callbacks_the_filter_does_not_implement():
    # what the strip removes, in the module cargo builds (make build made it)
    sdk = REPO_ROOT / "target" / "wasm32-wasip1" / "release" / "kube_oidc_discovery.wasm"
    dropped = callbacks(wasm_exports.exports(sdk.read_bytes())) - set(wasm_exports.FILTER)
    assert {"proxy_on_response_headers", "proxy_on_response_body", "proxy_on_log", "proxy_on_done"} <= dropped
