//! Host glue: the proxy-wasm root and HTTP contexts. Thin by design: every decision is made in
//! the pure modules; this file only reads what the host offers and carries out the answer.
//!
//! Upstream calls are always made by the root context, which lives as long as the VM: a client
//! that disconnects never cancels a fetch other requests are waiting for. A request that finds no
//! usable copy registers as a waiter and shortens the root's tick so that the fetch starts at
//! once; the waiters of the fetching VM are answered from its response, those of other worker VMs
//! from the shared copy on their next (fast) tick.

use crate::answer::{self, Answer, Outcome};
use crate::cache::{
    self, CasMismatch, Cold, Freshness, Keys, LocalCopy, Shared, SharedStore, StoredCopy,
};
use crate::classify::{self, Route};
use crate::config::Config;
use crate::document::Document;
use crate::metrics;
use crate::startup;
use crate::upstream::{self, FetchError, FetchResult, UpstreamAnswer};
use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType, Status};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// Tick while nothing waits: refresh times and backoff are whole seconds.
const IDLE_TICK: Duration = Duration::from_millis(1000);
/// Tick while requests wait for a fetch made by another worker VM.
const WAIT_TICK: Duration = Duration::from_millis(20);
/// Tick that starts a fetch right after a request found no copy (or after plugin start).
const KICK_TICK: Duration = Duration::from_millis(1);
/// Most waiters answered in one tick. Envoy defers a local reply sent from the tick until the tick
/// returns and runs the deferred replies nested in one another's filter callbacks, so stack use
/// grows with the batch: ~500 in one tick overflowed V8's stack in the cold-burst e2e test.
const SETTLE_BATCH: usize = 32;
/// A lease outlives the call it covers by this much, then another VM may fetch.
const LEASE_MARGIN: Duration = Duration::from_millis(1000);

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, cache::millis)
}

/// Proxy-wasm shared data: one store per VM id, shared by every worker of the Envoy process.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| CasMismatch)
    }
}

const SHARED: Shared<'static, HostStore> = Shared { store: &HostStore };

/// Metric ids, defined once per VM (Envoy maps equal names to one process-wide stat).
struct Metrics {
    requests: Vec<Vec<u32>>,
    fetches: Vec<Vec<u32>>,
    latency: Vec<u32>,
    age: Vec<u32>,
    not_found: u32,
    method_not_allowed: u32,
}

impl Metrics {
    fn define() -> Result<Metrics, Status> {
        let def = |t: MetricType, name: String| hostcalls::define_metric(t, &name);
        let per_doc =
            |f: &dyn Fn(Document) -> Result<Vec<u32>, Status>| -> Result<Vec<Vec<u32>>, Status> {
                Document::ALL.into_iter().map(f).collect()
            };
        Ok(Metrics {
            requests: per_doc(&|d| {
                Outcome::ALL
                    .iter()
                    .map(|o| def(MetricType::Counter, metrics::requests(d, *o)))
                    .collect()
            })?,
            fetches: per_doc(&|d| {
                FetchResult::ALL
                    .iter()
                    .map(|r| def(MetricType::Counter, metrics::fetches(d, *r)))
                    .collect()
            })?,
            latency: Document::ALL
                .into_iter()
                .map(|d| def(MetricType::Histogram, metrics::fetch_latency(d)))
                .collect::<Result<_, _>>()?,
            age: Document::ALL
                .into_iter()
                .map(|d| def(MetricType::Gauge, metrics::copy_age(d)))
                .collect::<Result<_, _>>()?,
            not_found: def(MetricType::Counter, metrics::not_found())?,
            method_not_allowed: def(MetricType::Counter, metrics::method_not_allowed())?,
        })
    }

    fn count(id: Option<&u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    fn request(&self, doc: Document, outcome: Outcome) {
        Self::count(
            self.requests
                .get(doc.index())
                .and_then(|v| v.get(outcome.index())),
        );
    }

    fn fetch(&self, doc: Document, result: FetchResult) {
        Self::count(
            self.fetches
                .get(doc.index())
                .and_then(|v| v.get(result.index())),
        );
    }

    fn record(id: Option<&u32>, value: u64) {
        if let Some(id) = id {
            let _ = hostcalls::record_metric(*id, value);
        }
    }
}

/// What the copy could do for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Served,
    /// A copy exists but is older than refresh interval + max_stale.
    Expired,
    Missing,
}

/// A request waiting for a fetch.
struct Waiter {
    context_id: u32,
    doc: Document,
    if_none_match: Option<String>,
    deadline_ms: u64,
}

/// What the root context and the HTTP contexts of one VM share.
struct Vm {
    root_id: u32,
    cfg: Config,
    keys: Vec<Keys>,
    metrics: Metrics,
    local: RefCell<Vec<LocalCopy>>,
    waiters: RefCell<Vec<Waiter>>,
    tick: Cell<Duration>,
}

impl Vm {
    fn keys(&self, doc: Document) -> Option<&Keys> {
        self.keys.get(doc.index())
    }

    fn set_tick(&self, period: Duration) {
        if self.tick.replace(period) != period {
            let _ = hostcalls::set_tick_period(period);
        }
    }

    /// Answers from the copy if there is a usable one.
    fn answer_from_copy(&self, doc: Document, now: u64, if_none_match: Option<&str>) -> Lookup {
        let (Some(keys), Ok(mut local)) = (self.keys(doc), self.local.try_borrow_mut()) else {
            return Lookup::Missing;
        };
        let Some(copy) = local
            .get_mut(doc.index())
            .and_then(|l| l.current(&SHARED, keys))
        else {
            return Lookup::Missing;
        };
        let freshness = cache::freshness(&self.cfg, copy.fetched_at_ms, now);
        if freshness == Freshness::Expired {
            return Lookup::Expired;
        }
        let (answer, outcome) = answer::document(copy, freshness, now, if_none_match);
        send(&answer);
        self.metrics.request(doc, outcome);
        Lookup::Served
    }

    /// Answers a request the copy could not serve, or returns false if it must wait for a fetch.
    fn answer_cold(&self, doc: Document, lookup: Lookup, now: u64, deadline_ms: u64) -> bool {
        let schedule = self
            .keys(doc)
            .map(|k| SHARED.schedule(k).0)
            .unwrap_or_default();
        match cache::cold(&schedule, now, lookup == Lookup::Expired, deadline_ms) {
            Cold::Fail(status) => self.answer_error(doc, status),
            Cold::Wait => return false,
        }
        true
    }

    fn answer_error(&self, doc: Document, status: u16) {
        send(&answer::error(u32::from(status)));
        self.metrics.request(doc, Outcome::UpstreamError);
    }

    /// Answers up to [`SETTLE_BATCH`] waiters whose fate is known: a usable copy, a failed fetch
    /// now backed off, or their deadline. Returns true when more may be answerable right away.
    /// Runs in the root context; leaves the root as the effective context.
    fn settle_waiters(&self, now: u64) -> bool {
        let waiting = match self.waiters.try_borrow_mut() {
            Ok(mut w) if !w.is_empty() => std::mem::take(&mut *w),
            _ => return false,
        };
        let mut still = Vec::new();
        let mut answered = 0;
        let mut cut_short = false;
        for w in waiting {
            if answered >= SETTLE_BATCH {
                cut_short = true;
                still.push(w);
                continue;
            }
            if hostcalls::set_effective_context(w.context_id).is_err() {
                continue; // the request is gone
            }
            let lookup = self.answer_from_copy(w.doc, now, w.if_none_match.as_deref());
            if lookup == Lookup::Served || self.answer_cold(w.doc, lookup, now, w.deadline_ms) {
                answered += 1;
            } else {
                still.push(w);
            }
        }
        let _ = hostcalls::set_effective_context(self.root_id);
        if let Ok(mut w) = self.waiters.try_borrow_mut() {
            w.extend(still);
        }
        cut_short
    }
}

fn send(answer: &Answer<'_>) {
    let headers: Vec<(&str, &str)> = answer
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_ref()))
        .collect();
    let _ = hostcalls::send_http_response(answer.status, headers, answer.body);
}

/// The root context: configuration, the refresh tick, and every upstream call.
pub struct Root {
    id: u32,
    vm: Option<Rc<Vm>>,
    inflight: HashMap<u32, (Document, u64)>,
}

impl Root {
    pub fn new(id: u32) -> Root {
        Root {
            id,
            vm: None,
            inflight: HashMap::new(),
        }
    }

    fn fetch(&mut self, vm: &Vm, doc: Document, now: u64) {
        let headers = upstream::request_headers(&vm.cfg, doc);
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match hostcalls::dispatch_http_call(&vm.cfg.cluster, pairs, None, vec![], vm.cfg.timeout) {
            Ok(token) => {
                self.inflight.insert(token, (doc, now));
            }
            Err(_) => self.complete(vm, doc, now, Err(FetchError::Dispatch), ""),
        }
    }

    /// Records a fetch's result in shared data and answers the waiters that can now be answered.
    fn complete(
        &self,
        vm: &Vm,
        doc: Document,
        now: u64,
        result: Result<StoredCopy, FetchError>,
        excerpt: &str,
    ) {
        let Some(keys) = vm.keys(doc) else { return };
        match result {
            Ok(copy) => {
                vm.metrics.fetch(doc, FetchResult::Ok);
                debug!(
                    "kube-oidc-discovery: fetched {doc} ({} bytes, etag {})",
                    copy.body.len(),
                    copy.etag
                );
                SHARED.store_copy(keys, &copy);
                let interval = vm.cfg.refresh_interval;
                SHARED.finish(keys, now, Ok(()), |_| interval);
            }
            Err(e) => {
                vm.metrics.fetch(doc, e.result());
                warn!(
                    "kube-oidc-discovery: fetching {doc} from cluster {:?} failed: {e}{}{excerpt}",
                    vm.cfg.cluster,
                    if excerpt.is_empty() {
                        ""
                    } else {
                        "; upstream body: "
                    }
                );
                let jitter = cache::fnv1a64(&[&now.to_le_bytes(), &self.id.to_le_bytes()]);
                let interval = vm.cfg.refresh_interval;
                SHARED.finish(keys, now, Err(e.client_status()), |f| {
                    cache::backoff(f, interval, jitter)
                });
            }
        }
        vm.settle_waiters(now);
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
        let (Some(vm), Some((doc, started))) = (self.vm.clone(), self.inflight.remove(&token))
        else {
            return;
        };
        let now = now_ms();
        Metrics::record(
            vm.metrics.latency.get(doc.index()),
            now.saturating_sub(started),
        );
        let header = |name: &str| {
            hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name)
                .ok()
                .flatten()
        };
        let (status, content_type, cache_control) = (
            header(":status"),
            header("content-type"),
            header("cache-control"),
        );
        let answer = UpstreamAnswer {
            status: status.as_deref(),
            content_type: content_type.as_deref(),
            cache_control: cache_control.as_deref(),
            body_size,
        };
        let body = |max: usize| {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, max.min(body_size))
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let (result, excerpt) =
            match upstream::accept(doc, &answer, body, vm.cfg.jwks_uri.as_deref()) {
                Ok(fetched) => (Ok(StoredCopy::new(fetched, now)), String::new()),
                Err(refused) => (Err(refused.error), refused.excerpt),
            };
        self.complete(&vm, doc, now, result, &excerpt);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let cfg = match Config::from_json(&bytes, |var| std::env::var(var).ok()) {
            Ok(cfg) => cfg,
            Err(e) => {
                error!("kube-oidc-discovery: {e}");
                return false;
            }
        };
        let metrics = match Metrics::define() {
            Ok(m) => m,
            Err(status) => {
                error!("kube-oidc-discovery: cannot define metrics: {status:?}");
                return false;
            }
        };
        let keys: Vec<Keys> = Document::ALL
            .into_iter()
            .map(|d| Keys::new(&cfg, d))
            .collect();
        for k in &keys {
            SHARED.ensure_schedule(k);
        }
        self.vm = Some(Rc::new(Vm {
            root_id: self.id,
            cfg,
            keys,
            metrics,
            local: RefCell::new(Document::ALL.iter().map(|_| LocalCopy::default()).collect()),
            waiters: RefCell::new(Vec::new()),
            tick: Cell::new(Duration::ZERO),
        }));
        // The first tick prefetches both documents (whichever VM of the process takes the lease).
        if let Some(vm) = &self.vm {
            vm.set_tick(KICK_TICK);
            if startup::first_to_start(&HostStore, &vm.cfg, now_ms()) {
                info!("{}", startup::start_line(&vm.cfg));
            }
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(vm) = self.vm.clone() else { return };
        let now = now_ms();
        let lease = vm.cfg.timeout.saturating_add(LEASE_MARGIN);
        for doc in Document::ALL {
            let Some(keys) = vm.keys(doc) else { continue };
            if SHARED.try_lease(keys, now, lease) {
                self.fetch(&vm, doc, now);
            }
            if let Some(copy) = SHARED.version_ms(keys) {
                Metrics::record(
                    vm.metrics.age.get(doc.index()),
                    now.saturating_sub(copy) / 1000,
                );
            }
        }
        let more = vm.settle_waiters(now);
        let waiting = vm
            .waiters
            .try_borrow()
            .map(|w| !w.is_empty())
            .unwrap_or(true);
        vm.set_tick(match (more, waiting) {
            (true, _) => KICK_TICK,
            (false, true) => WAIT_TICK,
            (false, false) => IDLE_TICK,
        });
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id: context_id,
            vm: self.vm.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One client request.
struct Http {
    id: u32,
    vm: Option<Rc<Vm>>,
}

impl Http {
    fn serve(&self, vm: &Vm, doc: Document, inm: Option<String>) {
        let now = now_ms();
        let lookup = vm.answer_from_copy(doc, now, inm.as_deref());
        let deadline_ms = now
            .saturating_add(cache::millis(vm.cfg.timeout))
            .saturating_add(cache::millis(LEASE_MARGIN));
        if lookup == Lookup::Served || vm.answer_cold(doc, lookup, now, deadline_ms) {
            return;
        }
        if let Ok(mut w) = vm.waiters.try_borrow_mut() {
            w.push(Waiter {
                context_id: self.id,
                doc,
                if_none_match: inm,
                deadline_ms,
            });
            // Tick now: start the fetch if it is ours to make, or watch for another VM's.
            vm.set_tick(KICK_TICK);
        } else {
            vm.answer_error(doc, 503);
        }
    }
}

/// The rest of a served host's request, from one copy of the header map (one host call instead
/// of three). Other hosts never pay for it: they pass after the `:authority` lookup alone, which
/// matters on a shared gateway where they are most of the traffic.
#[derive(Default)]
struct RequestHead {
    method: String,
    path: String,
    if_none_match: Option<String>,
}

impl RequestHead {
    fn read() -> RequestHead {
        let mut head = RequestHead::default();
        for (name, value) in hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default() {
            match name.as_str() {
                ":method" => head.method = value,
                ":path" => head.path = value,
                "if-none-match" => head.if_none_match = Some(value),
                _ => {}
            }
        }
        head
    }
}

fn header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(vm) = self.vm.clone() else {
            return Action::Continue;
        };
        let authority = header(":authority").unwrap_or_default();
        if !classify::host_matches(&vm.cfg.hosts, &authority) {
            return Action::Continue;
        }
        let head = RequestHead::read();
        match classify::classify(&head.method, &head.path) {
            Route::NotFound => {
                send(&answer::error(404));
                Metrics::count(Some(&vm.metrics.not_found));
            }
            Route::MethodNotAllowed => {
                send(&answer::error(405));
                Metrics::count(Some(&vm.metrics.method_not_allowed));
            }
            Route::Serve(doc) => self.serve(&vm, doc, head.if_none_match),
        }
        Action::Pause
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(vm) = &self.vm {
            if let Ok(mut w) = vm.waiters.try_borrow_mut() {
                w.retain(|w| w.context_id != self.id);
            }
        }
    }
}
