//! kube-oidc-discovery: a proxy-wasm filter that publishes a Kubernetes cluster's OIDC discovery
//! documents (`/.well-known/openid-configuration`, `/openid/v1/jwks`) from inside Envoy, while the
//! API server itself stays private.
//!
//! The logic never touches the host ABI and is all tested natively. Pure modules: [`config`]
//! (with [`issuer_url`]), [`classify`], [`document`], [`upstream`], [`answer`], [`policy`],
//! [`shared`], [`clock`], [`metrics`], [`startup`]. The host decisions are [`plugin`]'s, a
//! module tree whose children split one plugin's methods by concern; they make their host calls
//! through [`host::Host`] (a recording fake in tests). [`classify`], [`answer`] and [`upstream`]
//! also run as wasm (`tests/wasm_logic.rs`). The proxy-wasm glue is `host::proxy_wasm`, compiled
//! wherever the proxy-wasm crate is (not on wasm32-unknown-unknown, where only the logic is
//! built for wasm-bindgen tests).

pub mod answer;
pub mod classify;
pub mod clock;
pub mod config;
pub mod document;
pub mod host;
pub mod issuer_url;
pub mod metrics;
pub mod plugin;
pub mod policy;
pub mod shared;
pub mod startup;
pub mod upstream;

#[cfg(target_os = "wasi")]
proxy_wasm::main! {{
    startup::set_panic_hook(|line| {
        let _ = proxy_wasm::hostcalls::log(proxy_wasm::types::LogLevel::Critical, line);
    });
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(host::proxy_wasm::Root::new(id))
    });
}}
