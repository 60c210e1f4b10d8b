//! Request classification on arbitrary authority, method and path bytes (one line each; the
//! host hands them over as strings, so invalid UTF-8 arrives replaced). A request is served only
//! for GET or HEAD of exactly one of the two documents' paths, a query string aside; a served
//! host matches only its own name.
#![no_main]

use kube_oidc_discovery::classify::{classify, host_matches, strip_port, Route};
use kube_oidc_discovery::config::Config;
use kube_oidc_discovery::document::Document;
use libfuzzer_sys::fuzz_target;

const HOST: &str = "oidc.example.com";

fuzz_target!(|data: &[u8]| {
    let mut lines = data.splitn(3, |&b| b == b'\n');
    let mut next = || String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let (authority, method, path) = (next(), next(), next());

    let bare = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
    let document = Document::ALL.into_iter().find(|d| d.path() == bare);
    let safe = method == "GET" || method == "HEAD";
    match classify(&method, &path) {
        Route::Serve(doc) => {
            assert!(safe, "served for {method:?}");
            assert_eq!(document, Some(doc), "served {path:?} as {doc}");
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
            assert!(host_matches(&cfg.hosts, &authority), "{authority:?}");
        }
    }
});
