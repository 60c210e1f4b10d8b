//! The host seam: the few host calls the plugin makes. Every decision (what to answer, when to
//! wait, fetch, settle waiters or change the tick) is written against [`Host`], so it runs
//! natively in tests against `fake`, a recording fake, and in Envoy over [`proxy_wasm`], the
//! thin layer that only forwards.

use crate::answer::Answer;
use std::fmt;
use std::time::Duration;

#[cfg(test)]
pub mod fake;
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub mod proxy_wasm;

/// What proxy-wasm shared data offers: get with a CAS token, set guarded by one. One store per
/// Envoy process, seen by every VM; what the plugin keeps there is [`crate::shared`]'s.
pub trait SharedStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// `cas: None` writes unconditionally; `Some(c)` fails with [`CasMismatch`] if the key changed.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch>;
}

/// A compare-and-swap write lost: the key changed since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasMismatch;

/// What the plugin asks of its host, besides shared data ([`SharedStore`]: one store per Envoy
/// process, seen by every VM).
pub trait Host: SharedStore {
    /// Wall-clock time in milliseconds since the Unix epoch (0 when the host cannot tell).
    fn now_ms(&self) -> u64;
    /// Answers the effective context's request with a local reply.
    fn send(&self, answer: &Answer<'_>);
    /// Starts an HTTP call to `cluster`; its response arrives with the returned token.
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// Makes `context_id` the context later calls act on; fails when that request is gone.
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError>;
    fn set_tick_period(&self, period: Duration);
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError>;
    fn increment_metric(&self, id: u32);
    fn record_metric(&self, id: u32, value: u64);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// What the host does with a request after the plugin saw its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// On through the filter chain.
    Continue,
    /// Held: the plugin answers it, now or later.
    Pause,
}

/// A host call the host refused, with the status it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
