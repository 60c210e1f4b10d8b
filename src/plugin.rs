//! One plugin in one VM: the state its root context and its HTTP contexts share, and its start.
//! Its work is split by concern into child modules, each a part of [`Plugin`]'s methods:
//! [`request`] (a client request, new or waiting), [`refresh`] (the tick, the lease and the
//! upstream calls), [`waiters`] (the requests waiting for a fetch) and [`tick`] (the tick's
//! period). The fields are private to this tree.

mod refresh;
mod request;
mod tick;
mod waiters;

use crate::classify::{IssuerId, Scope};
use crate::config::{Config, ConfigError, IssuerConfig};
use crate::document::Document;
use crate::host::{Host, HostError, SharedStore};
use crate::metrics;
use crate::shared::{self, Keys, LocalCopy, Shared, StoredCopy};
use crate::startup;
use log::info;
use refresh::InFlight;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use tick::{Cause, Ticker};
use waiters::Waiters;

pub struct Plugin<H: Host> {
    host: H,
    /// The root context: effective again after the waiters were answered.
    root_id: u32,
    cfg: Config,
    /// What this VM keeps of each issuer, by [`IssuerId`].
    issuers: Vec<LocalIssuer>,
    /// The 404 and 405 counters, which belong to no issuer.
    routing: metrics::Routing,
    waiters: Waiters,
    /// Upstream calls in flight, by the host's token.
    inflight: RefCell<HashMap<u32, InFlight>>,
    tick: Ticker,
}

/// One issuer in this VM: its shared-data keys and metric ids, and this VM's decoded copies.
/// Nothing here is shared with another issuer, so one issuer's copies, schedule, lease and
/// backoff never depend on another's.
struct LocalIssuer {
    /// Shared-data keys, by [`Document::index`].
    keys: Vec<Keys>,
    /// The shared-data key of its mismatch flag.
    mismatch: String,
    metrics: metrics::Ids,
    /// This VM's decoded copies, by [`Document::index`].
    local: RefCell<Vec<LocalCopy>>,
}

impl LocalIssuer {
    fn new(host: &impl Host, issuer: &IssuerConfig) -> Result<LocalIssuer, HostError> {
        let names = metrics::Names::new(issuer.name.as_deref());
        Ok(LocalIssuer {
            keys: Document::ALL
                .into_iter()
                .map(|d| Keys::new(issuer, d))
                .collect(),
            mismatch: shared::mismatch_key(issuer),
            metrics: metrics::Ids::define(host, &names)?,
            local: RefCell::new(Document::ALL.iter().map(|_| LocalCopy::default()).collect()),
        })
    }

    fn keys(&self, doc: Document) -> Option<&Keys> {
        self.keys.get(doc.index())
    }

    /// `f` of this VM's copy of a document, first brought up to the shared one
    /// ([`LocalCopy::current`]); `None` when there is no copy.
    fn with_copy<S: SharedStore, R>(
        &self,
        shared: &Shared<'_, S>,
        doc: Document,
        f: impl FnOnce(&StoredCopy) -> R,
    ) -> Option<R> {
        let keys = self.keys(doc)?;
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
            .map(|i| LocalIssuer::new(&host, i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Metrics)?;
        let plugin = Plugin {
            host,
            root_id,
            cfg,
            issuers,
            routing,
            waiters: Waiters::default(),
            inflight: RefCell::new(HashMap::new()),
            tick: Ticker::default(),
        };
        for k in plugin.issuers.iter().flat_map(|i| &i.keys) {
            plugin.shared().ensure_schedule(k);
        }
        plugin.tick.set(&plugin.host, Cause::Started);
        if startup::first_to_start(&plugin.host, &plugin.cfg, plugin.host.now_ms()) {
            info!("{}", startup::start_line(&plugin.cfg));
        }
        Ok(plugin)
    }

    /// What this VM keeps of an issuer.
    fn state(&self, id: IssuerId) -> Option<&LocalIssuer> {
        self.issuers.get(id.0)
    }

    /// An issuer's configuration and what this VM keeps of it.
    fn issuer(&self, id: IssuerId) -> Option<(&IssuerConfig, &LocalIssuer)> {
        Some((self.cfg.issuer(id)?, self.state(id)?))
    }

    /// Where each issuer is served, by [`IssuerId`].
    fn scopes(&self) -> impl Iterator<Item = &Scope> {
        self.cfg.issuers.iter().map(|i| &i.scope)
    }

    fn shared(&self) -> Shared<'_, H> {
        Shared { store: &self.host }
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
    use tick::KICK_TICK;

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
