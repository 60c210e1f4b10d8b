//! What an operator sees when the plugin starts: one info line saying what it serves, and a panic
//! hook that logs before the VM dies (clippy denies panics; the hook is for the one we missed).

use crate::clock;
use crate::config::{Config, IssuerConfig};
use crate::host::SharedStore;
use crate::shared;
use std::time::Duration;

/// The start line: version, what is served from which cluster with which token, and the
/// refresh interval. Names the tokens' variables, never their values.
///
/// Single-issuer form: `hosts oidc.example.com; cluster "kubernetes"; token from VM env T; ...`
/// (`issuer ...;` after the cluster when one is checked). `issuers` form: `issuers prod
/// https://oidc.example.com/clusters/prod (cluster "prod-api", token from VM env T), ...; ...`.
pub fn start_line(cfg: &Config) -> String {
    let token = |i: &IssuerConfig| match &i.token {
        Some(t) => format!("token from VM env {}", t.var()),
        None => "no token (the cluster may inject one)".to_string(),
    };
    let served = match cfg.issuers.as_slice() {
        [single] if single.name.is_none() => {
            let hosts = if single.scope.hosts.is_empty() {
                "every host".to_string()
            } else {
                single.scope.hosts.join(", ")
            };
            let issuer = single
                .url
                .as_ref()
                .map(|u| format!(" issuer {u};"))
                .unwrap_or_default();
            format!(
                "hosts {hosts}; cluster {:?};{issuer} {}",
                single.cluster,
                token(single)
            )
        }
        issuers => {
            let each: Vec<String> = issuers
                .iter()
                .map(|i| {
                    format!(
                        "{} {} (cluster {:?}, {})",
                        i.name.as_deref().unwrap_or_default(),
                        i.url.as_deref().unwrap_or_default(),
                        i.cluster,
                        token(i)
                    )
                })
                .collect();
            format!("issuers {}", each.join(", "))
        }
    };
    format!(
        "kube-oidc-discovery {} started: {served}; refresh every {} s",
        env!("CARGO_PKG_VERSION"),
        cfg.refresh_interval.as_secs()
    )
}

/// Every worker VM of an Envoy process starts the same plugin within moments of the others; the
/// ones that start it within this window after the first stay quiet.
const QUIET: Duration = Duration::from_secs(10);

/// True for the VM that logs the start line: the first of the process to start this
/// configuration (a reload with another configuration logs again).
pub fn first_to_start<S: SharedStore>(store: &S, cfg: &Config, now_ms: u64) -> bool {
    let key = shared::start_key(cfg);
    let previous = store.get(&key);
    let last_ms = previous
        .as_ref()
        .and_then(|(bytes, _)| std::str::from_utf8(bytes).ok()?.parse::<u64>().ok());
    if last_ms.is_some_and(|at| now_ms.saturating_sub(at) < clock::millis(QUIET)) {
        return false;
    }
    // Compare-and-swap: of the VMs that see the same old line, one wins.
    let cas = previous.map(|(_, cas)| cas);
    store.set(&key, now_ms.to_string().as_bytes(), cas).is_ok()
}

/// Installs a panic hook that hands `log` one line with the message and location. On wasm a
/// panic aborts the VM, and without the hook Envoy would log only a trap.
pub fn set_panic_hook(log: fn(&str)) {
    std::panic::set_hook(Box::new(move |info| {
        log(&format!("kube-oidc-discovery: {info}; the VM stops"));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::MemStore;

    fn cfg(json: &str) -> Config {
        Config::from_json(json.as_bytes(), |_| Some("s3cr3t-token".into())).unwrap()
    }

    #[test]
    fn the_start_line_says_what_is_served_and_never_the_token() {
        let line = start_line(&cfg(
            r#"{"hosts":["oidc.example.com","b.example"],"token_env":"KUBE_OIDC_TOKEN","refresh_interval_s":30}"#,
        ));
        assert_eq!(
            line,
            concat!(
                "kube-oidc-discovery ",
                env!("CARGO_PKG_VERSION"),
                " started: hosts oidc.example.com, b.example; cluster \"kubernetes\"; ",
                "token from VM env KUBE_OIDC_TOKEN; refresh every 30 s"
            )
        );
        let line = start_line(&cfg("{}"));
        assert!(line.contains("hosts every host;"), "{line}");
        assert!(
            line.contains("no token (the cluster may inject one)"),
            "{line}"
        );
        assert!(line.contains("refresh every 60 s"), "{line}");
        let line = start_line(&cfg(
            r#"{"hosts":["a.example"],"issuer":"https://kubernetes.default.svc"}"#,
        ));
        assert!(
            line.contains(
                r#"cluster "kubernetes"; issuer https://kubernetes.default.svc; no token"#
            ),
            "{line}"
        );
    }

    #[test]
    fn the_start_line_of_the_issuers_form_names_each_issuer() {
        let line = start_line(&cfg(r#"{"issuers":[
                {"name":"prod","issuer":"https://oidc.example.com/clusters/prod","cluster":"prod-api","token_env":"KOD_TOKEN_PROD"},
                {"name":"dev","issuer":"https://oidc.example.com/clusters/dev","cluster":"dev-api"}]}"#));
        assert_eq!(
            line,
            concat!(
                "kube-oidc-discovery ",
                env!("CARGO_PKG_VERSION"),
                " started: issuers prod https://oidc.example.com/clusters/prod ",
                "(cluster \"prod-api\", token from VM env KOD_TOKEN_PROD), ",
                "dev https://oidc.example.com/clusters/dev ",
                "(cluster \"dev-api\", no token (the cluster may inject one)); refresh every 60 s"
            )
        );
        assert!(!line.contains("s3cr3t-token"));
    }

    #[test]
    fn one_start_line_per_process_and_configuration() {
        let store = MemStore::default();
        let a = cfg(r#"{"hosts":["a.example"]}"#);
        let b = cfg(r#"{"hosts":["b.example"]}"#);
        assert!(first_to_start(&store, &a, 1_000), "first VM");
        assert!(!first_to_start(&store, &a, 1_050), "second worker");
        assert!(first_to_start(&store, &b, 1_100), "another configuration");
        assert!(!first_to_start(&store, &b, 10_000));
        assert!(
            first_to_start(&store, &a, 11_000),
            "a reload of the first, later"
        );
        assert!(!first_to_start(&store, &a, 11_001));
    }

    #[test]
    fn the_token_value_is_not_in_the_key() {
        let store = MemStore::default();
        let one = Config::from_json(br#"{"token_env":"T"}"#, |_| Some("one".into())).unwrap();
        let two = Config::from_json(br#"{"token_env":"T"}"#, |_| Some("two".into())).unwrap();
        assert!(first_to_start(&store, &one, 0));
        assert!(
            !first_to_start(&store, &two, 1),
            "a rotated token is no new start"
        );
    }
}
