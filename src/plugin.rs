//! One plugin in one VM: what its root context and its HTTP contexts share, and its start. The
//! work is split by concern: [`crate::request`] (a client request), [`crate::waiters`] (requests
//! waiting for a fetch), [`crate::refresh`] (the tick, the lease and the upstream calls).

use crate::classify::Scope;
use crate::config::{Config, ConfigError, Issuer};
use crate::document::Document;
use crate::host::SharedStore;
use crate::host::{Host, HostError};
use crate::metrics;
use crate::refresh::{InFlight, KICK_TICK};
use crate::shared::{self, Keys, LocalCopy, Shared, StoredCopy};
use crate::startup;
use crate::waiters::Waiter;
use log::info;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

pub struct Plugin<H: Host> {
    pub(crate) host: H,
    /// The root context: effective again after the waiters were answered.
    pub(crate) root_id: u32,
    pub(crate) cfg: Config,
    /// What this VM keeps of each issuer, in the configuration's order.
    pub(crate) issuers: Vec<IssuerState>,
    /// The 404 and 405 counters, which belong to no issuer.
    pub(crate) routing: metrics::Routing,
    pub(crate) waiters: RefCell<Vec<Waiter>>,
    /// Upstream calls in flight, by the host's token.
    pub(crate) inflight: RefCell<HashMap<u32, InFlight>>,
    /// The tick period last asked of the host.
    pub(crate) tick: Cell<Duration>,
}

/// One issuer in this VM: its shared-data keys and metric ids, and this VM's decoded copies.
/// Nothing here is shared with another issuer, so one issuer's copies, schedule, lease and
/// backoff never depend on another's.
pub(crate) struct IssuerState {
    /// Shared-data keys, by [`Document::index`].
    pub(crate) keys: Vec<Keys>,
    /// The shared-data key of its mismatch flag.
    pub(crate) mismatch: String,
    pub(crate) metrics: metrics::Ids,
    /// This VM's decoded copies, by [`Document::index`].
    pub(crate) local: RefCell<Vec<LocalCopy>>,
}

impl IssuerState {
    fn new(host: &impl Host, issuer: &Issuer) -> Result<IssuerState, HostError> {
        let names = metrics::Names::new(issuer.name.as_deref());
        Ok(IssuerState {
            keys: Document::ALL
                .into_iter()
                .map(|d| Keys::new(issuer, d))
                .collect(),
            mismatch: shared::mismatch_key(issuer),
            metrics: metrics::Ids::define(host, &names)?,
            local: RefCell::new(Document::ALL.iter().map(|_| LocalCopy::default()).collect()),
        })
    }

    /// `f` of this VM's copy of a document, first brought up to the shared one
    /// ([`LocalCopy::current`]); `None` when there is no copy.
    pub(crate) fn with_copy<S: SharedStore, R>(
        &self,
        shared: &Shared<'_, S>,
        doc: Document,
        f: impl FnOnce(&StoredCopy) -> R,
    ) -> Option<R> {
        let keys = self.keys.get(doc.index())?;
        let mut local = self.local.try_borrow_mut().ok()?;
        local.get_mut(doc.index())?.current(shared, keys).map(f)
    }
}

/// Why a plugin did not start; the host logs it and refuses the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    Config(ConfigError),
    Metrics(HostError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "kube-oidc-discovery: {e}"),
            StartError::Metrics(e) => {
                write!(f, "kube-oidc-discovery: cannot define metrics: {e}")
            }
        }
    }
}

impl<H: Host> Plugin<H> {
    /// Starts the plugin from its configuration; `env` is the VM environment (for `token_env`).
    /// The first tick, right away, prefetches every issuer's documents (whichever VM of the
    /// process takes each lease).
    pub fn start(
        host: H,
        root_id: u32,
        config: &[u8],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Plugin<H>, StartError> {
        let cfg = Config::from_json(config, env).map_err(StartError::Config)?;
        let routing = metrics::Routing::define(&host).map_err(StartError::Metrics)?;
        let issuers = cfg
            .issuers
            .iter()
            .map(|i| IssuerState::new(&host, i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Metrics)?;
        let plugin = Plugin {
            host,
            root_id,
            cfg,
            issuers,
            routing,
            waiters: RefCell::new(Vec::new()),
            inflight: RefCell::new(HashMap::new()),
            tick: Cell::new(Duration::ZERO),
        };
        for k in plugin.issuers.iter().flat_map(|i| &i.keys) {
            plugin.shared().ensure_schedule(k);
        }
        plugin.set_tick(KICK_TICK);
        if startup::first_to_start(&plugin.host, &plugin.cfg, plugin.host.now_ms()) {
            info!("{}", startup::start_line(&plugin.cfg));
        }
        Ok(plugin)
    }

    pub(crate) fn keys(&self, issuer: usize, doc: Document) -> Option<&Keys> {
        self.issuers.get(issuer)?.keys.get(doc.index())
    }

    /// Where each issuer is served, in the configuration's order (a [`crate::classify::Route`]
    /// names an issuer by its position here).
    pub(crate) fn scopes(&self) -> impl Iterator<Item = &Scope> {
        self.cfg.issuers.iter().map(|i| &i.scope)
    }

    /// `issuer <name>: ` for an `issuers` entry, to begin its log lines; empty otherwise.
    pub(crate) fn label(&self, issuer: usize) -> String {
        match self.cfg.issuers.get(issuer).and_then(|i| i.name.as_deref()) {
            Some(name) => format!("issuer {name}: "),
            None => String::new(),
        }
    }

    pub(crate) fn shared(&self) -> Shared<'_, H> {
        Shared { store: &self.host }
    }

    /// Asks the host for a tick period, only when it changes.
    pub(crate) fn set_tick(&self, period: Duration) {
        if self.tick.replace(period) != period {
            self.host.set_tick_period(period);
        }
    }

    #[cfg(test)]
    pub(crate) fn host(&self) -> &H {
        &self.host
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::{logs, Process, TOKEN};
    use crate::refresh::KICK_TICK;

    #[test]
    fn a_bad_configuration_does_not_start_and_names_the_key() {
        let p = Process::at(1_000);
        let (started, lines) = logs(|| p.start(r#"{"timeout_ms":0}"#));
        let Err(e) = started else {
            panic!("started with timeout_ms 0")
        };
        assert!(matches!(e, StartError::Config(_)));
        assert!(
            e.to_string()
                .starts_with("kube-oidc-discovery: invalid configuration: `timeout_ms`"),
            "{e}"
        );
        assert!(lines.is_empty(), "the host logs the error, once: {lines:?}");
        assert_eq!(p.data().gets.get(), 0, "nothing shared was touched");
    }

    #[test]
    fn the_start_line_is_logged_once_per_process_and_configuration() {
        let p = Process::at(1_000);
        let config = r#"{"hosts":["oidc.example.com"],"token_env":"T"}"#;
        let (a, lines) = logs(|| p.vm(config));
        assert_eq!(lines.len(), 1, "{lines:?}");
        let (level, line) = &lines[0];
        assert_eq!(*level, log::Level::Info);
        assert!(line.contains("started: hosts oidc.example.com;"), "{line}");
        assert!(line.contains("token from VM env T;"), "{line}");
        assert!(!line.contains(TOKEN));
        assert_eq!(a.host().ticks(), [KICK_TICK], "the prefetch tick");
        p.advance(20);
        let (_b, lines) = logs(|| p.vm(config));
        assert!(lines.is_empty(), "another worker: {lines:?}");
        let (_c, lines) = logs(|| p.vm(r#"{"hosts":["other.example.com"]}"#));
        assert_eq!(lines.len(), 1, "another configuration: {lines:?}");
        let (_d, lines) = logs(|| Process::at(1_000).vm(config));
        assert_eq!(lines.len(), 1, "another process: {lines:?}");
    }
}
