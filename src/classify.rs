//! Request classification: which requests this filter answers, and how.

use crate::document::Document;

/// What the filter does with a request on one of its hosts (other hosts never get this far:
/// [`host_matches`] lets them pass first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET` or `HEAD` of one of the two documents.
    Serve(Document),
    /// Our host, any other path: answered 404 without an upstream call.
    NotFound,
    /// One of the two paths with a method other than `GET` or `HEAD`.
    MethodNotAllowed,
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

/// Classifies a request on a matched host. The path must be exactly one of the two
/// documents' paths; a query string is ignored, and nothing is decoded or normalised,
/// so `/openid/v1/jwk%73`, `//openid/v1/jwks` or `/openid/v1/../v1/jwks` are not found.
pub fn classify(method: &str, path: &str) -> Route {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let Some(doc) = Document::ALL.into_iter().find(|d| d.path() == path) else {
        return Route::NotFound;
    };
    match method {
        "GET" | "HEAD" => Route::Serve(doc),
        _ => Route::MethodNotAllowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_paths_with_get_and_head() {
        for m in ["GET", "HEAD"] {
            assert_eq!(
                classify(m, "/.well-known/openid-configuration"),
                Route::Serve(Document::Discovery)
            );
            assert_eq!(classify(m, "/openid/v1/jwks"), Route::Serve(Document::Jwks));
        }
    }

    #[test]
    fn query_is_ignored() {
        assert_eq!(
            classify("GET", "/openid/v1/jwks?x=1&y"),
            Route::Serve(Document::Jwks)
        );
        assert_eq!(
            classify("GET", "/openid/v1/jwks?"),
            Route::Serve(Document::Jwks)
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
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a.b:x"), "a.b:x");
        assert_eq!(strip_port("::1"), "::1");
    }
}
