//! One plugin in one VM: what its root context and its HTTP contexts share, and its start. The
//! work is split by concern: [`crate::request`] (a client request), [`crate::waiters`] (requests
//! waiting for a fetch), [`crate::refresh`] (the tick, the lease and the upstream calls).

use crate::cache::{Keys, LocalCopy, Shared};
use crate::config::{Config, ConfigError};
use crate::document::Document;
use crate::host::{Host, HostError};
use crate::metrics;
use crate::refresh::{InFlight, KICK_TICK};
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
    /// Shared-data keys, by [`Document::index`].
    pub(crate) keys: Vec<Keys>,
    pub(crate) metrics: metrics::Ids,
    /// This VM's decoded copies, by [`Document::index`].
    pub(crate) local: RefCell<Vec<LocalCopy>>,
    pub(crate) waiters: RefCell<Vec<Waiter>>,
    /// Upstream calls in flight, by the host's token.
    pub(crate) inflight: RefCell<HashMap<u32, InFlight>>,
    /// The tick period last asked of the host.
    pub(crate) tick: Cell<Duration>,
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
    /// The first tick, right away, prefetches both documents (whichever VM of the process takes
    /// the lease).
    pub fn start(
        host: H,
        root_id: u32,
        config: &[u8],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Plugin<H>, StartError> {
        let cfg = Config::from_json(config, env).map_err(StartError::Config)?;
        let metrics = metrics::Ids::define(&host).map_err(StartError::Metrics)?;
        let keys: Vec<Keys> = Document::ALL
            .into_iter()
            .map(|d| Keys::new(&cfg, d))
            .collect();
        let plugin = Plugin {
            host,
            root_id,
            cfg,
            keys,
            metrics,
            local: RefCell::new(Document::ALL.iter().map(|_| LocalCopy::default()).collect()),
            waiters: RefCell::new(Vec::new()),
            inflight: RefCell::new(HashMap::new()),
            tick: Cell::new(Duration::ZERO),
        };
        for k in &plugin.keys {
            plugin.shared().ensure_schedule(k);
        }
        plugin.set_tick(KICK_TICK);
        if startup::first_to_start(&plugin.host, &plugin.cfg, plugin.host.now_ms()) {
            info!("{}", startup::start_line(&plugin.cfg));
        }
        Ok(plugin)
    }

    pub(crate) fn keys(&self, doc: Document) -> Option<&Keys> {
        self.keys.get(doc.index())
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
