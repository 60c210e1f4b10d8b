//! The recording fake of the host, for native tests: a [`Process`] holds the shared data and the
//! clock its VMs see; each VM's [`FakeHost`] records what the plugin asked of it; and
//! `Plugin<FakeHost>` gets the calls Envoy would make (a request, a tick, a call's response).

use super::{Action, CasMismatch, Host, HostError, MetricKind, SharedStore};
use crate::answer::Answer;
use crate::document::Document;
use crate::plugin::{Plugin, StartError};
use crate::upstream::ResponseHead;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

/// Shared data as proxy-wasm implements it: a CAS counter per write, CAS ignored for a missing key.
#[derive(Default)]
pub struct MemStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next: Cell<u32>,
    pub gets: Cell<usize>,
    /// Bytes the reads copied into the VM (what makes a read costly in Envoy).
    pub read_bytes: Cell<usize>,
}

impl SharedStore for MemStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.gets.set(self.gets.get() + 1);
        let got = self.map.borrow().get(key).cloned();
        let len = got.as_ref().map_or(0, |(v, _)| v.len());
        self.read_bytes.set(self.read_bytes.get() + len);
        got
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        let mut map = self.map.borrow_mut();
        if let (Some(c), Some((_, cur))) = (cas, map.get(key)) {
            if c != *cur {
                return Err(CasMismatch);
            }
        }
        self.next.set(self.next.get() + 1);
        map.insert(key.to_string(), (value.to_vec(), self.next.get()));
        Ok(())
    }
}

/// One Envoy process: the shared data and the clock its VMs see.
#[derive(Clone)]
pub struct Process {
    data: Rc<MemStore>,
    clock: Rc<Cell<u64>>,
    next_root: Rc<Cell<u32>>,
}

impl Process {
    /// A process whose clock reads `now_ms`.
    pub fn at(now_ms: u64) -> Process {
        Process {
            data: Rc::default(),
            clock: Rc::new(Cell::new(now_ms)),
            next_root: Rc::new(Cell::new(1)),
        }
    }

    pub fn advance(&self, ms: u64) {
        self.clock.set(self.clock.get() + ms);
    }

    pub fn now(&self) -> u64 {
        self.clock.get()
    }

    pub fn data(&self) -> &MemStore {
        &self.data
    }

    /// Starts the plugin in a new VM of this process, with the token `s3cr3t-token` in every
    /// VM environment variable.
    pub fn start(&self, config: &str) -> Result<Plugin<FakeHost>, StartError> {
        let root_id = self.next_root.get();
        self.next_root.set(root_id + 1000);
        let host = FakeHost {
            process: self.clone(),
            root_id,
            effective: Cell::new(root_id),
            live: RefCell::default(),
            refuse_dispatch: Cell::new(false),
            missing_clusters: RefCell::default(),
            next_token: Cell::new(root_id * 10),
            header_reads: RefCell::default(),
            replies: RefCell::default(),
            calls: RefCell::default(),
            ticks: RefCell::default(),
            metrics: RefCell::default(),
        };
        Plugin::start(host, root_id, config.as_bytes(), |_| Some(TOKEN.into()))
    }

    /// [`Process::start`] with a configuration that must start.
    pub fn vm(&self, config: &str) -> Plugin<FakeHost> {
        self.start(config).unwrap()
    }
}

/// The token every fake VM environment holds.
pub const TOKEN: &str = "s3cr3t-token";

/// A local reply the plugin sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The effective context when it was sent: the request it answers.
    pub context_id: u32,
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An upstream call the plugin dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Call {
    pub fn path(&self) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == ":path")
            .map_or("", |(_, v)| v.as_str())
    }
}

/// One VM's host: the process's shared data and clock, and a record of every call.
pub struct FakeHost {
    process: Process,
    root_id: u32,
    effective: Cell<u32>,
    /// Request contexts the host still has; the others cannot be made effective.
    live: RefCell<BTreeSet<u32>>,
    /// When set, dispatch fails as for an unknown cluster.
    pub refuse_dispatch: Cell<bool>,
    /// Clusters this host does not have: dispatch to them fails (Envoy's BadArgument).
    pub missing_clusters: RefCell<Vec<String>>,
    next_token: Cell<u32>,
    /// The request headers the plugin read, by name, in order.
    header_reads: RefCell<Vec<String>>,
    replies: RefCell<Vec<Reply>>,
    calls: RefCell<Vec<Call>>,
    ticks: RefCell<Vec<Duration>>,
    /// Defined metrics (the id is the position): kind, name, value.
    metrics: RefCell<Vec<(MetricKind, String, u64)>>,
}

impl SharedStore for FakeHost {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.process.data.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        self.process.data.set(key, value, cas)
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.process.now()
    }

    fn send(&self, answer: &Answer<'_>) {
        self.replies.borrow_mut().push(Reply {
            context_id: self.effective.get(),
            status: answer.status,
            headers: answer
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: answer.body.map(<[u8]>::to_vec),
        });
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        if self.refuse_dispatch.get() || self.missing_clusters.borrow().iter().any(|c| c == cluster)
        {
            return Err(HostError("BadArgument".into()));
        }
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        self.calls.borrow_mut().push(Call {
            token,
            cluster: cluster.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout,
        });
        Ok(token)
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        if context_id != self.root_id && !self.live.borrow().contains(&context_id) {
            return Err(HostError("NotFound".into()));
        }
        self.effective.set(context_id);
        Ok(())
    }

    fn set_tick_period(&self, period: Duration) {
        self.ticks.borrow_mut().push(period);
    }

    /// Like Envoy, one metric per name: defining it again returns the same id.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        let mut metrics = self.metrics.borrow_mut();
        let id = match metrics.iter().position(|(_, n, _)| n == name) {
            Some(id) => id,
            None => {
                metrics.push((kind, name.into(), 0));
                metrics.len() - 1
            }
        };
        u32::try_from(id).map_err(|_| HostError("too many".into()))
    }

    fn increment_metric(&self, id: u32) {
        if let Some(m) = self.metrics.borrow_mut().get_mut(id as usize) {
            m.2 += 1;
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        if let Some(m) = self.metrics.borrow_mut().get_mut(id as usize) {
            m.2 = value;
        }
    }
}

impl FakeHost {
    /// Every reply sent so far, taken out of the record.
    pub fn take_replies(&self) -> Vec<Reply> {
        std::mem::take(&mut self.replies.borrow_mut())
    }

    /// The request headers read so far, by name, taken out of the record.
    pub fn take_header_reads(&self) -> Vec<String> {
        std::mem::take(&mut self.header_reads.borrow_mut())
    }

    /// Every reply sent so far as (context, status), taken out of the record.
    pub fn take_answers(&self) -> Vec<(u32, u32)> {
        let replies = self.take_replies();
        replies.iter().map(|r| (r.context_id, r.status)).collect()
    }

    /// Every call dispatched so far, taken out of the record.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.calls.borrow_mut())
    }

    /// The tick periods asked for, in order.
    pub fn ticks(&self) -> Vec<Duration> {
        self.ticks.borrow().clone()
    }

    /// The tick period in effect.
    pub fn tick(&self) -> Option<Duration> {
        self.ticks.borrow().last().copied()
    }

    /// A metric's value by name (counters: their count; gauges, histograms: the last value).
    pub fn metric(&self, name: &str) -> u64 {
        let metrics = self.metrics.borrow();
        let found = metrics.iter().find(|(_, n, _)| n == name);
        found.map(|m| m.2).expect("metric defined")
    }

    pub fn metric_names(&self) -> Vec<(MetricKind, String)> {
        let metrics = self.metrics.borrow();
        metrics.iter().map(|(k, n, _)| (*k, n.clone())).collect()
    }
}

/// Driving a fake VM as Envoy would.
impl Plugin<FakeHost> {
    /// A request's headers arrive; the request stays live until [`Plugin::end`].
    pub fn request(&self, id: u32, authority: &str, method: &str, path: &str) -> Action {
        self.request_with(id, authority, method, path, None)
    }

    pub fn request_with(
        &self,
        id: u32,
        authority: &str,
        method: &str,
        path: &str,
        if_none_match: Option<&str>,
    ) -> Action {
        let host = self.host();
        host.live.borrow_mut().insert(id);
        host.effective.set(id);
        let action = self.on_request_headers(id, |name| {
            host.header_reads.borrow_mut().push(name.to_string());
            match name {
                ":authority" => Some(authority.into()),
                ":method" => Some(method.into()),
                ":path" => Some(path.into()),
                "if-none-match" => if_none_match.map(str::to_string),
                _ => None,
            }
        });
        host.effective.set(host.root_id);
        action
    }

    /// The request ends (answered, or the client left): the host deletes its context.
    pub fn end(&self, id: u32) {
        self.vanish(id);
        self.on_request_gone(id);
    }

    /// The host no longer has the request, but has not told the plugin yet.
    pub fn vanish(&self, id: u32) {
        self.host().live.borrow_mut().remove(&id);
    }

    pub fn tick_now(&self) {
        self.host().effective.set(self.host().root_id);
        self.on_tick();
    }

    /// The response to call `token`.
    pub fn respond(&self, token: u32, status: &str, content_type: &str, body: &[u8]) {
        self.host().effective.set(self.host().root_id);
        let head = || ResponseHead {
            status: Some(status.into()),
            content_type: Some(content_type.into()),
            cache_control: Some("public, max-age=3600".into()),
            body_size: body.len(),
        };
        self.on_call_response(token, head, |max| body.iter().take(max).copied().collect());
    }

    /// Answers a call with the document it asked for.
    pub fn respond_ok(&self, call: &Call) {
        let body = if call.path() == Document::Jwks.path() {
            JWKS
        } else {
            DISCOVERY
        };
        self.respond(call.token, "200", "application/json", body);
    }

    /// Answers a call as the API server whose `--service-account-issuer` is `issuer` would:
    /// with [`discovery_of`] or [`jwks_of`] that issuer.
    pub fn respond_as(&self, call: &Call, issuer: &str) {
        if call.path() == Document::Jwks.path() {
            self.respond(
                call.token,
                "200",
                "application/jwk-set+json",
                &jwks_of(issuer),
            );
        } else {
            self.respond(call.token, "200", "application/json", &discovery_of(issuer));
        }
    }
}

/// A VM of [`FLEET`] whose prefetch each cluster answered with its own issuer's documents.
pub fn warm_fleet(p: &Process) -> Plugin<FakeHost> {
    let vm = p.vm(FLEET);
    vm.tick_now();
    for c in vm.host().take_calls() {
        vm.respond_as(&c, if c.cluster == "prod-api" { PROD } else { DEV });
    }
    vm
}

/// Two path-prefixed issuers on one host, each its own cluster: `prod` with a token from the VM
/// environment, `dev` without (its cluster injects one).
pub const FLEET: &str = r#"{"issuers":[
    {"name":"prod","issuer":"https://oidc.example.com/clusters/prod","cluster":"prod-api",
     "authority":"api.prod.internal","token_env":"T"},
    {"name":"dev","issuer":"https://oidc.example.com/clusters/dev","cluster":"dev-api"}],
    "timeout_ms":2000,"refresh_interval_s":60,"max_stale_s":100}"#;
pub const PROD: &str = "https://oidc.example.com/clusters/prod";
pub const DEV: &str = "https://oidc.example.com/clusters/dev";

/// The discovery document of an API server with this `--service-account-issuer`.
pub fn discovery_of(issuer: &str) -> Vec<u8> {
    format!(r#"{{"issuer":"{issuer}","jwks_uri":"https://10.0.0.1:6443/openid/v1/jwks"}}"#)
        .into_bytes()
}

/// The key set of an API server with this `--service-account-issuer`: one key, named after it,
/// so that a test can tell whose keys it was served.
pub fn jwks_of(issuer: &str) -> Vec<u8> {
    format!(r#"{{"keys":[{{"kty":"RSA","kid":"{issuer}"}}]}}"#).into_bytes()
}

pub const JWKS: &[u8] = br#"{"keys":[{"kty":"RSA","kid":"a"}]}"#;
pub const DISCOVERY: &[u8] =
    br#"{"issuer":"https://kubernetes.default.svc","jwks_uri":"https://10.0.0.1:6443/openid/v1/jwks"}"#;

/// Log lines written on this thread while `f` runs.
pub fn logs<T>(f: impl FnOnce() -> T) -> (T, Vec<(log::Level, String)>) {
    static LOGGER: Capture = Capture;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);
    CAPTURED.with(|c| c.borrow_mut().clear());
    let out = f();
    (out, CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut())))
}

thread_local! {
    static CAPTURED: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = (record.level(), record.args().to_string());
        CAPTURED.with(|c| c.borrow_mut().push(line));
    }

    fn flush(&self) {}
}
