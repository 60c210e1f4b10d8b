//! The request classification and answer building, compiled to wasm32-unknown-unknown and run
//! under node with wasm-bindgen-test: the same logic the filter runs, on a wasm engine.
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]
// wasm-bindgen tests are not #[test] functions, so clippy.toml's in-test allowances miss them.
#![allow(clippy::unwrap_used)]

use kube_oidc_discovery::answer::{self, Outcome};
use kube_oidc_discovery::classify::{host_matches, serves_host, IssuerId, Route, Scope};
use kube_oidc_discovery::document::{Document, Expect};
use kube_oidc_discovery::policy::Freshness;
use kube_oidc_discovery::shared::StoredCopy;
use kube_oidc_discovery::upstream::{self, FetchResult, ResponseHead};
use wasm_bindgen_test::wasm_bindgen_test;

fn hosts() -> Vec<String> {
    vec!["oidc.example.com".to_string()]
}

#[wasm_bindgen_test]
fn serves_exactly_the_two_paths_on_the_public_host() {
    let h = hosts();
    assert!(host_matches(&h, "OIDC.example.com:443"));
    assert!(!host_matches(&h, "app.example.com"));
    let single = [Scope {
        hosts: h,
        prefix: String::new(),
    }];
    let classify = |method: &str, path: &str| {
        kube_oidc_discovery::classify::classify(&single, "oidc.example.com", path, || method)
    };
    assert_eq!(
        classify("GET", "/openid/v1/jwks?x=1"),
        Route::Serve(IssuerId(0), Document::Jwks)
    );
    assert_eq!(
        classify("HEAD", "/.well-known/openid-configuration"),
        Route::Serve(IssuerId(0), Document::Discovery)
    );
    for p in [
        "/openid/v1/jwks/",
        "/openid/v1/jwk%73",
        "//openid/v1/jwks",
        "/openid/v1/../v1/jwks",
        "*",
    ] {
        assert_eq!(classify("GET", p), Route::NotFound, "{p}");
    }
    assert_eq!(
        classify("DELETE", "/openid/v1/jwks"),
        Route::MethodNotAllowed
    );
}

#[wasm_bindgen_test]
fn serves_path_prefixed_issuers_at_their_prefix() {
    let fleet = [
        Scope {
            hosts: hosts(),
            prefix: "/clusters/prod".into(),
        },
        Scope {
            hosts: hosts(),
            prefix: "/clusters/dev".into(),
        },
    ];
    assert!(serves_host(&fleet, "OIDC.example.com:443"));
    assert!(!serves_host(&fleet, "app.example.com"));
    let classify = |path: &str| {
        kube_oidc_discovery::classify::classify(&fleet, "oidc.example.com", path, || "GET")
    };
    assert_eq!(
        classify("/clusters/dev/openid/v1/jwks"),
        Route::Serve(IssuerId(1), Document::Jwks)
    );
    assert_eq!(
        classify("/clusters/prod/.well-known/openid-configuration?x"),
        Route::Serve(IssuerId(0), Document::Discovery)
    );
    for p in [
        "/openid/v1/jwks",
        "/clusters/prod/",
        "/clusters//prod/openid/v1/jwks",
    ] {
        assert_eq!(classify(p), Route::NotFound, "{p}");
    }
}

#[wasm_bindgen_test]
fn builds_document_and_error_answers() {
    let copy = StoredCopy {
        fetched_at_ms: 1_000,
        etag: "\"e-1\"".into(),
        content_type: "application/jwk-set+json".into(),
        cache_control: Some("public, max-age=3600".into()),
        body: b"{\"keys\":[]}".to_vec(),
    };
    let (a, o) = answer::document(&copy, Freshness::Fresh, 4_000, None);
    assert_eq!((a.status, o), (200, Outcome::Fresh));
    assert_eq!(a.body, Some(&b"{\"keys\":[]}"[..]));
    assert!(a.headers.iter().any(|(n, v)| *n == "age" && v == "3"));
    let (a, o) = answer::document(&copy, Freshness::Stale, 4_000, Some("\"e-1\""));
    assert_eq!((a.status, o, a.body), (304, Outcome::NotModified, None));
    let e = answer::error(502);
    assert_eq!(e.body, Some(&br#"{"error":"bad gateway"}"#[..]));
    assert!(answer::error(405)
        .headers
        .iter()
        .any(|(n, v)| *n == "allow" && v == "GET, HEAD"));
}

#[wasm_bindgen_test]
fn validates_upstream_answers() {
    let ok = ResponseHead {
        status: Some("200".into()),
        content_type: Some("application/json".into()),
        cache_control: None,
        body_size: 20,
    };
    let body = br#"{"issuer":"i","jwks_uri":"https://10.0.0.1/openid/v1/jwks"}"#;
    let f = upstream::accept(
        Document::Discovery,
        &ok,
        |_| body.to_vec(),
        &Expect {
            issuer: Some("i"),
            jwks_uri: Some("https://oidc.example.com/openid/v1/jwks"),
        },
    )
    .unwrap();
    assert_eq!(
        f.body,
        br#"{"issuer":"i","jwks_uri":"https://oidc.example.com/openid/v1/jwks"}"#
    );
    let as_is = Expect::default();
    let err = upstream::accept(Document::Jwks, &ok, |_| b"<html/>".to_vec(), &as_is).unwrap_err();
    assert_eq!(err.error.result(), FetchResult::InvalidBody);
    let other = Expect {
        issuer: Some("https://oidc.example.com/clusters/prod"),
        jwks_uri: None,
    };
    let err = upstream::accept(Document::Discovery, &ok, |_| body.to_vec(), &other).unwrap_err();
    assert_eq!(err.error.result(), FetchResult::IssuerMismatch);
    let denied = ResponseHead {
        status: Some("401".into()),
        ..ok
    };
    assert_eq!(
        upstream::check_head(&denied).unwrap_err().client_status(),
        502
    );
}
