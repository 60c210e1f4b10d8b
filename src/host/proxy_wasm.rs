//! The thin layer over proxy-wasm: [`Host`] implemented with the ABI's host calls, and the root
//! and HTTP contexts, which only read what the host offers and hand it to [`Plugin`]. No decision
//! is made here.

use super::{Action, CasMismatch, Host, HostError, MetricKind, SharedStore};
use crate::answer::Answer;
use crate::clock;
use crate::plugin::Plugin;
use crate::upstream::ResponseHead;
use log::error;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{self, BufferType, ContextType, MapType, MetricType};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// The host of a proxy-wasm VM (Envoy).
pub struct ProxyWasm;

impl SharedStore for ProxyWasm {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        // An empty value comes back as no bytes, with its CAS: the key exists.
        match hostcalls::get_shared_data(key) {
            Ok((bytes, Some(cas))) => Some((bytes.unwrap_or_default(), cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| CasMismatch)
    }
}

fn refused(status: types::Status) -> HostError {
    HostError(format!("{status:?}"))
}

impl Host for ProxyWasm {
    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, clock::millis)
    }

    fn send(&self, answer: &Answer<'_>) {
        let headers: Vec<(&str, &str)> = answer
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_ref()))
            .collect();
        let _ = hostcalls::send_http_response(answer.status, headers, answer.body);
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), None, vec![], timeout)
            .map_err(refused)
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        hostcalls::set_effective_context(context_id).map_err(refused)
    }

    fn set_tick_period(&self, period: Duration) {
        let _ = hostcalls::set_tick_period(period);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(kind, name).map_err(refused)
    }

    fn increment_metric(&self, id: u32) {
        let _ = hostcalls::increment_metric(id, 1);
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// The root context: lives as long as the VM; holds the plugin once configured.
pub struct Root {
    id: u32,
    plugin: Option<Rc<Plugin<ProxyWasm>>>,
}

impl Root {
    pub fn new(id: u32) -> Root {
        Root { id, plugin: None }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(plugin) = &self.plugin else { return };
        let header = |name: &str| {
            hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name)
                .ok()
                .flatten()
        };
        let head = || ResponseHead {
            status: header(":status"),
            content_type: header("content-type"),
            cache_control: header("cache-control"),
            body_size,
        };
        let body = |max: usize| {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, max.min(body_size))
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        plugin.on_call_response(token, head, body);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Plugin::start(ProxyWasm, self.id, &config, |var| std::env::var(var).ok()) {
            Ok(plugin) => {
                self.plugin = Some(Rc::new(plugin));
                true
            }
            Err(e) => {
                error!("{e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(plugin) = &self.plugin {
            plugin.on_tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id: context_id,
            plugin: self.plugin.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One client request.
struct Http {
    id: u32,
    plugin: Option<Rc<Plugin<ProxyWasm>>>,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> types::Action {
        let Some(plugin) = &self.plugin else {
            return types::Action::Continue;
        };
        let header = |name: &str| {
            hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
                .ok()
                .flatten()
        };
        match plugin.on_request_headers(self.id, header) {
            Action::Continue => types::Action::Continue,
            Action::Pause => types::Action::Pause,
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(plugin) = &self.plugin {
            plugin.on_request_gone(self.id);
        }
    }
}
