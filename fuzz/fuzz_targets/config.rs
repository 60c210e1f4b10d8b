//! Configuration parsing and compiling, both forms. Any bytes either compile to a configuration
//! that keeps every documented limit (in the `issuers` form: 1 to 64 entries, valid unique names,
//! each served on its issuer URL's host under its path, no two sharing a document path), never
//! shows a token and compiles again to itself, or fail with an "invalid configuration" error;
//! parse-then-compile and `from_json` always agree. Its integers written as doubles (as istiod
//! hands a WasmPlugin's pluginConfig over) compile to the same configuration.
#![no_main]

use kube_oidc_discovery::classify;
use kube_oidc_discovery::config::{
    Config, IssuerConfig, RawConfig, MAX_ISSUERS, MAX_NAME_LEN, MAX_STALE_S, REFRESH_INTERVAL_S,
    TIMEOUT_MS,
};
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
            // As istiod hands it over (a protobuf Struct, every number a double), the same.
            let mut doubles = as_json(cfg);
            for key in ["timeout_ms", "refresh_interval_s", "max_stale_s"] {
                if let Some(n) = doubles.get(key).and_then(|v| v.as_u64()) {
                    doubles[key] = json!(n as f64);
                }
            }
            let again = Config::from_json(doubles.to_string().as_bytes(), env);
            assert_eq!(again.as_ref(), Ok(cfg), "its numbers as doubles changed it");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("invalid configuration"), "{msg}");
            assert!(quoted || !msg.contains(SECRET), "{msg}");
        }
    }
    // Without the variable, a configuration naming one never starts.
    let no_token = |c: &Config| c.issuers.iter().all(|i| i.token.is_none());
    if let Ok(cfg) = Config::from_json(data, |_| None) {
        assert!(no_token(&cfg));
        assert_eq!(compiled.map(|c| no_token(&c)), Ok(true));
    }
});

fn holds_its_limits(cfg: &Config) {
    let within = |(min, max): (u64, u64), v: u128| (u128::from(min)..=u128::from(max)).contains(&v);
    assert!(within(TIMEOUT_MS, cfg.timeout.as_millis()));
    assert!(within(
        REFRESH_INTERVAL_S,
        u128::from(cfg.refresh_interval.as_secs())
    ));
    assert!(within(MAX_STALE_S, u128::from(cfg.max_stale.as_secs())));
    assert!((1..=MAX_ISSUERS).contains(&cfg.issuers.len()));
    let form = cfg
        .issuers
        .iter()
        .map(|i| i.name.is_some())
        .collect::<Vec<_>>();
    assert!(
        form == [false] || form.iter().all(|named| *named),
        "{form:?}"
    );
    for (n, issuer) in cfg.issuers.iter().enumerate() {
        entry_holds_its_limits(issuer);
        for other in cfg.issuers.iter().take(n) {
            let metric = |i: &IssuerConfig| i.name.as_ref().map(|n| n.replace('-', "_"));
            assert_ne!(
                metric(issuer),
                metric(other),
                "two issuers, one metric name"
            );
            assert_ne!(issuer.url, other.url);
            // no two issuers share a document path on one host
            assert!(
                issuer.scope.hosts != other.scope.hosts
                    || issuer.scope.prefix != other.scope.prefix
            );
        }
    }
}

fn entry_holds_its_limits(i: &IssuerConfig) {
    assert!(!i.cluster.trim().is_empty());
    assert!(!i.authority.trim().is_empty());
    assert!(!i
        .authority
        .contains(|c: char| c.is_whitespace() || c == '/'));
    for host in &i.scope.hosts {
        assert!(!host.is_empty());
        assert_eq!(*host, host.to_ascii_lowercase());
        assert!(classify::host_matches(&i.scope.hosts, host), "{host:?}");
        let upper = host.to_ascii_uppercase();
        assert!(classify::host_matches(&i.scope.hosts, &upper), "{upper:?}");
    }
    if let Some(uri) = &i.jwks_uri {
        assert!(uri.starts_with("https://") && uri.len() > "https://".len());
        assert!(!uri.bytes().any(|b| b.is_ascii_control() || b == b' '));
    }
    if let Some(url) = &i.url {
        assert!(
            url.starts_with("https://") && !url.contains(['?', '#']),
            "{url:?}"
        );
        assert!(url.bytes().all(|b| b.is_ascii_graphic()), "{url:?}");
    }
    let Some(name) = &i.name else {
        assert!(
            i.scope.prefix.is_empty(),
            "the single-issuer form serves the root paths"
        );
        return;
    };
    assert!((1..=MAX_NAME_LEN).contains(&name.len()), "{name:?}");
    assert!(name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'));
    // served on its URL's host, under its URL's path without one trailing slash
    let url = i.url.as_deref().expect("an entry has an issuer");
    let rest = &url["https://".len()..];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    assert_eq!(
        i.scope.hosts,
        [classify::strip_port(authority).to_ascii_lowercase()]
    );
    assert_eq!(i.scope.prefix, path.strip_suffix('/').unwrap_or(path));
    assert!(
        i.jwks_uri.is_some(),
        "the issuers form always publishes its own jwks_uri"
    );
}

/// The configuration as an operator would write it.
fn as_json(cfg: &Config) -> serde_json::Value {
    let globals = json!({
        "timeout_ms": cfg.timeout.as_millis() as u64,
        "refresh_interval_s": cfg.refresh_interval.as_secs(),
        "max_stale_s": cfg.max_stale.as_secs(),
    });
    let mut out = match cfg.issuers.as_slice() {
        [single] if single.name.is_none() => json!({
            "cluster": single.cluster,
            "authority": single.authority,
            "hosts": single.scope.hosts,
            "token_env": single.token.as_ref().map(|t| t.var()),
            "jwks_uri": single.jwks_uri,
            "issuer": single.url,
        }),
        issuers => {
            let entries: Vec<_> = issuers
                .iter()
                .map(|i| {
                    json!({
                        "name": i.name,
                        "issuer": i.url,
                        "cluster": i.cluster,
                        "authority": i.authority,
                        "token_env": i.token.as_ref().map(|t| t.var()),
                        "jwks_uri": i.jwks_uri,
                    })
                })
                .collect();
            json!({ "issuers": entries })
        }
    };
    if let (Some(out), Some(globals)) = (out.as_object_mut(), globals.as_object()) {
        out.extend(globals.clone());
    }
    out
}
