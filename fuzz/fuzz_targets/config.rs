//! Configuration parsing and compiling. Any bytes either compile to a configuration that keeps
//! every documented limit, never shows the token and compiles again to itself, or fail with an
//! "invalid configuration" error; parse-then-compile and `from_json` always agree.
#![no_main]

use kube_oidc_discovery::classify;
use kube_oidc_discovery::config::{Config, RawConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

/// What every VM environment variable holds here.
const SECRET: &str = "fuzz-secret-token";

fn env(_: &str) -> Option<String> {
    Some(SECRET.to_string())
}

fuzz_target!(|data: &[u8]| {
    let compiled = Config::from_json(data, env);
    let two_steps = RawConfig::parse(data).and_then(|raw| raw.compile(env));
    assert_eq!(compiled, two_steps);
    let quoted = data.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
    match &compiled {
        Ok(cfg) => {
            holds_its_limits(cfg);
            assert!(quoted || !format!("{cfg:?}").contains(SECRET));
            let again = Config::from_json(as_json(cfg).to_string().as_bytes(), env);
            assert_eq!(again.as_ref(), Ok(cfg), "compiling its own form changed it");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("invalid configuration"), "{msg}");
            assert!(quoted || !msg.contains(SECRET), "{msg}");
        }
    }
    // Without the variable, a configuration naming one never starts.
    if let Ok(cfg) = Config::from_json(data, |_| None) {
        assert!(cfg.token.is_none());
        assert_eq!(compiled.map(|c| c.token.is_none()), Ok(true));
    }
});

fn holds_its_limits(cfg: &Config) {
    assert!((1..=60_000).contains(&cfg.timeout.as_millis()));
    assert!((5..=86_400).contains(&cfg.refresh_interval.as_secs()));
    assert!((1..=31_536_000).contains(&cfg.max_stale.as_secs()));
    assert!(!cfg.cluster.trim().is_empty());
    assert!(!cfg.authority.trim().is_empty());
    assert!(!cfg
        .authority
        .contains(|c: char| c.is_whitespace() || c == '/'));
    for host in &cfg.hosts {
        assert!(!host.is_empty());
        assert_eq!(*host, host.to_ascii_lowercase());
        assert!(classify::host_matches(&cfg.hosts, host), "{host:?}");
        let upper = host.to_ascii_uppercase();
        assert!(classify::host_matches(&cfg.hosts, &upper), "{upper:?}");
    }
    if let Some(uri) = &cfg.jwks_uri {
        assert!(uri.starts_with("https://") && uri.len() > "https://".len());
        assert!(!uri.bytes().any(|b| b.is_ascii_control() || b == b' '));
    }
}

/// The configuration as an operator would write it.
fn as_json(cfg: &Config) -> serde_json::Value {
    json!({
        "cluster": cfg.cluster,
        "authority": cfg.authority,
        "hosts": cfg.hosts,
        "token_env": cfg.token.as_ref().map(|t| t.var()),
        "timeout_ms": cfg.timeout.as_millis() as u64,
        "jwks_uri": cfg.jwks_uri,
        "refresh_interval_s": cfg.refresh_interval.as_secs(),
        "max_stale_s": cfg.max_stale.as_secs(),
    })
}
