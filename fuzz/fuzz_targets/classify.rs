//! Request classification on arbitrary authority, method and path bytes, against the root paths
//! (the single-issuer form) and against `issuers` built from the input. One line each: authority,
//! method, path, then any number of issuer URLs (the host hands headers over as strings, so
//! invalid UTF-8 arrives replaced). A request is served only for GET or HEAD of exactly one of
//! an issuer's two document paths (its URL's path without one trailing slash, then the API
//! server's path), a query string aside, on that issuer's host; a served host matches only its
//! own name.
#![no_main]

use kube_oidc_discovery::classify::{
    classify, host_matches, serves_host, strip_port, IssuerId, Route, Scope,
};
use kube_oidc_discovery::config::Config;
use kube_oidc_discovery::document::Document;
use libfuzzer_sys::fuzz_target;

const HOST: &str = "oidc.example.com";

fuzz_target!(|data: &[u8]| {
    let mut lines = data
        .split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned());
    let mut next = || lines.next().unwrap_or_default();
    let (authority, method, path) = (next(), next(), next());
    let urls: Vec<String> = std::iter::from_fn(|| lines.next()).take(8).collect();
    let bare = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
    let safe = method == "GET" || method == "HEAD";

    // The root paths on every host: the single-issuer form without `hosts`.
    let document = Document::ALL.into_iter().find(|d| d.path() == bare);
    match classify(&[Scope::default()], &authority, &path, || method.as_str()) {
        Route::Serve(IssuerId(i), doc) => {
            assert!(safe, "served for {method:?}");
            assert_eq!((i, document), (0, Some(doc)), "served {path:?} as {doc}");
            assert!(path == doc.path() || path.starts_with(&format!("{}?", doc.path())));
        }
        Route::MethodNotAllowed => assert!(document.is_some() && !safe),
        Route::NotFound => assert!(document.is_none(), "{path:?} not found"),
    }

    assert!(host_matches(&[], &authority), "no hosts: every host");
    let hosts = [HOST.to_string()];
    if host_matches(&hosts, &authority) {
        assert!(
            strip_port(&authority).eq_ignore_ascii_case(HOST),
            "{authority:?}"
        );
    }
    // An authority configured as a host matches itself.
    if authority == authority.trim() {
        let json = serde_json::json!({ "hosts": [authority] }).to_string();
        if let Ok(cfg) = Config::from_json(json.as_bytes(), |_| None) {
            let scopes = cfg.issuers.iter().map(|i| &i.scope);
            assert!(serves_host(scopes, &authority), "{authority:?}");
        }
    }

    issuers(&urls, &authority, &method, &path);
});

/// The `issuers` form with these issuer URLs, if they make a valid configuration.
fn issuers(urls: &[String], authority: &str, method: &str, path: &str) {
    if urls.is_empty() {
        return;
    }
    let entries: Vec<_> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| serde_json::json!({"name": format!("i{i}"), "issuer": u, "cluster": "api"}))
        .collect();
    let json = serde_json::json!({ "issuers": entries }).to_string();
    let Ok(cfg) = Config::from_json(json.as_bytes(), |_| None) else {
        return;
    };
    let scopes: Vec<&Scope> = cfg.issuers.iter().map(|i| &i.scope).collect();
    let host = strip_port(authority);
    let bare = path.split_once('?').map_or(path, |(p, _)| p);
    let safe = method == "GET" || method == "HEAD";
    // Each issuer's two document paths, derived here from its URL alone.
    let on_host: Vec<(usize, Document)> = urls
        .iter()
        .enumerate()
        .filter(|(_, u)| {
            let rest = u.strip_prefix("https://").unwrap_or_default();
            let url_authority = rest.split('/').next().unwrap_or_default();
            strip_port(url_authority).eq_ignore_ascii_case(host)
        })
        .flat_map(|(i, u)| {
            let rest = u.strip_prefix("https://").unwrap_or_default();
            let url_path = rest.find('/').map_or("", |at| &rest[at..]);
            let prefix = url_path.strip_suffix('/').unwrap_or(url_path).to_string();
            Document::ALL
                .into_iter()
                .filter(move |d| bare == format!("{prefix}{}", d.path()))
                .map(move |d| (i, d))
        })
        .collect();
    let served_host = urls.iter().any(|u| {
        let rest = u.strip_prefix("https://").unwrap_or_default();
        strip_port(rest.split('/').next().unwrap_or_default()).eq_ignore_ascii_case(host)
    });
    assert_eq!(
        serves_host(scopes.iter().copied(), authority),
        served_host,
        "{authority:?}"
    );
    assert!(
        on_host.len() <= 1,
        "two issuers share a document path: {urls:?}"
    );
    match classify(scopes.iter().copied(), authority, path, || method) {
        Route::Serve(IssuerId(i), doc) => {
            assert!(safe, "served for {method:?}");
            assert_eq!(
                on_host.first(),
                Some(&(i, doc)),
                "served {path:?} of {urls:?}"
            );
        }
        Route::MethodNotAllowed => assert!(!on_host.is_empty() && !safe),
        Route::NotFound => assert!(on_host.is_empty(), "{path:?} of {urls:?} not found"),
    }
}
