//! The host: the proxy-wasm glue, and for native tests a fake of what it offers.

#[cfg(test)]
pub mod fake;
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub mod proxy_wasm;
