//! Request classification: which requests this filter answers, and how.

use crate::document::Document;

/// An issuer's position in the configuration ([`crate::config::Config::issuers`]), which is also
/// its scope's position in the scopes [`classify`] is given: how a route, a waiting request and
/// an upstream call in flight name their issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IssuerId(pub usize);

/// What the filter does with a request on a served host (other hosts never get this far:
/// [`serves_host`] lets them pass first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET` or `HEAD` of one of the two documents of this issuer.
    Serve(IssuerId, Document),
    /// A served host, any other path: answered 404 without an upstream call.
    NotFound,
    /// A document path with a method other than `GET` or `HEAD`.
    MethodNotAllowed,
}

/// Where one issuer's two documents are served: on `hosts` at `prefix` + the document's path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Lower-case host names without port; empty means every host (the single-issuer form only).
    pub hosts: Vec<String>,
    /// The issuer's path without one trailing slash; empty for the root.
    pub prefix: String,
}

impl Scope {
    /// The public path of a document: the API server serves it at [`Document::path`].
    pub fn path(&self, doc: Document) -> String {
        format!("{}{}", self.prefix, doc.path())
    }

    /// The document whose public path is exactly `path` (query already removed), if any.
    fn document(&self, path: &str) -> Option<Document> {
        let rest = path.strip_prefix(self.prefix.as_str())?;
        Document::ALL.into_iter().find(|d| d.path() == rest)
    }
}

/// Removes a `:port` suffix (`host:8080`, `[::1]:8080`).
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => host.get(..end + 2).unwrap_or(host),
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// True when `authority` is one of `hosts` (lower-case, no port) or `hosts` is empty.
pub fn host_matches(hosts: &[String], authority: &str) -> bool {
    if hosts.is_empty() {
        return true;
    }
    let host = strip_port(authority);
    hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
}

/// True when some issuer is served on the request's host: only then is the rest of the request
/// read. Every other host passes untouched.
pub fn serves_host<'a>(scopes: impl IntoIterator<Item = &'a Scope>, authority: &str) -> bool {
    scopes
        .into_iter()
        .any(|s| host_matches(&s.hosts, authority))
}

/// Classifies a request. The path must be exactly one of the two document paths of an issuer
/// served on the request's host; a query string is ignored, and nothing is decoded or
/// normalised, so `/openid/v1/jwk%73`, `//openid/v1/jwks` or `/openid/v1/../v1/jwks` are not
/// found. The configuration guarantees that no two issuers on one host share a path. `method`
/// is asked for only when the path is a document's: any other path is 404 whatever the method,
/// and each header read costs the host a call into the VM.
pub fn classify<'a, M: AsRef<str>>(
    scopes: impl IntoIterator<Item = &'a Scope>,
    authority: &str,
    path: &str,
    method: impl FnOnce() -> M,
) -> Route {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let found = scopes
        .into_iter()
        .enumerate()
        .filter(|(_, s)| host_matches(&s.hosts, authority))
        .find_map(|(i, s)| s.document(path).map(|d| (IssuerId(i), d)));
    let Some((i, doc)) = found else {
        return Route::NotFound;
    };
    match method().as_ref() {
        "GET" | "HEAD" => Route::Serve(i, doc),
        _ => Route::MethodNotAllowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The single-issuer form without `hosts`: the root paths on every host.
    fn classify(method: &str, path: &str) -> Route {
        super::classify(&[Scope::default()], "any.example", path, || method)
    }

    fn scope(hosts: &[&str], prefix: &str) -> Scope {
        Scope {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            prefix: prefix.into(),
        }
    }

    /// The example: two path-prefixed issuers on one host, one host-based issuer.
    fn fleet() -> Vec<Scope> {
        vec![
            scope(&["oidc.example.com"], "/clusters/prod"),
            scope(&["oidc.example.com"], "/clusters/dev"),
            scope(&["edge-oidc.example.com"], ""),
        ]
    }

    #[test]
    fn both_paths_with_get_and_head() {
        for m in ["GET", "HEAD"] {
            assert_eq!(
                classify(m, "/.well-known/openid-configuration"),
                Route::Serve(IssuerId(0), Document::Discovery)
            );
            assert_eq!(
                classify(m, "/openid/v1/jwks"),
                Route::Serve(IssuerId(0), Document::Jwks)
            );
        }
    }

    #[test]
    fn query_is_ignored() {
        assert_eq!(
            classify("GET", "/openid/v1/jwks?x=1&y"),
            Route::Serve(IssuerId(0), Document::Jwks)
        );
        assert_eq!(
            classify("GET", "/openid/v1/jwks?"),
            Route::Serve(IssuerId(0), Document::Jwks)
        );
    }

    #[test]
    fn lookalike_paths_are_not_found() {
        for p in [
            "/openid/v1/jwks/",
            "/openid/v1/jwk%73",
            "/OPENID/v1/jwks",
            "//openid/v1/jwks",
            "/openid/v1/../v1/jwks",
            "/api/v1/secrets",
            "/.well-known/openid-configuration/../../api",
            "*",
            "",
            "/",
            "/openid/v1/jwks#x",
            "/openid/v1/jwks;x",
            "openid/v1/jwks",
        ] {
            assert_eq!(classify("GET", p), Route::NotFound, "{p}");
        }
    }

    #[test]
    fn other_methods_on_the_paths_are_not_allowed() {
        for m in [
            "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get", "CONNECT",
        ] {
            assert_eq!(
                classify(m, "/openid/v1/jwks"),
                Route::MethodNotAllowed,
                "{m}"
            );
        }
        assert_eq!(classify("POST", "/other"), Route::NotFound);
    }

    #[test]
    fn hosts_match_case_insensitively_without_port() {
        let hosts = vec!["oidc.example.com".to_string()];
        assert!(host_matches(&hosts, "oidc.example.com"));
        assert!(host_matches(&hosts, "OIDC.Example.COM:8443"));
        assert!(!host_matches(&hosts, "app.example.com"));
        assert!(!host_matches(&hosts, "oidc.example.com.evil"));
        assert!(!host_matches(&hosts, ""));
        assert!(host_matches(&[], "anything"));
    }

    #[test]
    fn each_issuer_is_served_at_its_prefix_on_its_host() {
        let f = fleet();
        let route = |authority: &str, method: &str, path: &str| {
            super::classify(&f, authority, path, || method)
        };
        assert_eq!(
            route(
                "oidc.example.com",
                "GET",
                "/clusters/prod/.well-known/openid-configuration"
            ),
            Route::Serve(IssuerId(0), Document::Discovery)
        );
        assert_eq!(
            route(
                "OIDC.Example.COM:8443",
                "HEAD",
                "/clusters/dev/openid/v1/jwks?x"
            ),
            Route::Serve(IssuerId(1), Document::Jwks)
        );
        assert_eq!(
            route("edge-oidc.example.com:443", "GET", "/openid/v1/jwks"),
            Route::Serve(IssuerId(2), Document::Jwks)
        );
        assert_eq!(
            route("oidc.example.com", "POST", "/clusters/prod/openid/v1/jwks"),
            Route::MethodNotAllowed
        );
        for path in [
            "/openid/v1/jwks",
            "/.well-known/openid-configuration",
            "/clusters/prod",
            "/clusters/prod/",
            "/clusters/prod/openid/v1/jwks/",
            "/clusters/prod//openid/v1/jwks",
            "/clusters/Prod/openid/v1/jwks",
            "/clusters/prod/../dev/openid/v1/jwks",
            "/clusters/prodopenid/v1/jwks",
            "/clusters/staging/openid/v1/jwks",
            "/clusters/prod/api/v1/secrets",
        ] {
            assert_eq!(
                route("oidc.example.com", "GET", path),
                Route::NotFound,
                "{path}"
            );
            assert_eq!(
                route("oidc.example.com", "POST", path),
                Route::NotFound,
                "{path}"
            );
        }
        // another issuer's paths are not found on the host-based issuer's host, and back
        assert_eq!(
            route(
                "edge-oidc.example.com",
                "GET",
                "/clusters/prod/openid/v1/jwks"
            ),
            Route::NotFound
        );
        assert!(serves_host(&f, "EDGE-OIDC.example.com:8443"));
        assert!(serves_host(&f, "oidc.example.com"));
        assert!(!serves_host(&f, "app.example.com"));
        assert!(!serves_host(&f, "oidc.example.com.evil"));
        assert!(!serves_host(&[], "oidc.example.com"));
        assert_eq!(
            route("app.example.com", "GET", "/openid/v1/jwks"),
            Route::NotFound,
            "classify serves no unserved host (the caller passes them before)"
        );
    }

    #[test]
    fn a_root_issuer_and_a_prefixed_one_share_a_host() {
        let f = vec![
            scope(&["oidc.example.com"], "/clusters/prod"),
            scope(&["oidc.example.com"], ""),
        ];
        let route = |path: &str| super::classify(&f, "oidc.example.com", path, || "GET");
        assert_eq!(
            route("/openid/v1/jwks"),
            Route::Serve(IssuerId(1), Document::Jwks)
        );
        assert_eq!(
            route("/clusters/prod/openid/v1/jwks"),
            Route::Serve(IssuerId(0), Document::Jwks)
        );
        assert_eq!(route("/clusters/prod"), Route::NotFound);
    }

    #[test]
    fn public_paths_put_the_prefix_before_the_api_server_path() {
        let s = scope(&["oidc.example.com"], "/clusters/prod");
        assert_eq!(
            s.path(Document::Discovery),
            "/clusters/prod/.well-known/openid-configuration"
        );
        assert_eq!(Scope::default().path(Document::Jwks), "/openid/v1/jwks");
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a.b:x"), "a.b:x");
        assert_eq!(strip_port("::1"), "::1");
    }
}
