//! An issuer URL and what it decides: the host and path prefix its documents are served under,
//! and the default `jwks_uri` of its served discovery document.
//!
//! Kubernetes copies `--service-account-issuer` verbatim into the discovery document and into
//! every token's `iss`, and a relying party fetches `<issuer>/.well-known/openid-configuration`.
//! So an issuer `https://oidc.example.com/clusters/prod` is served on `oidc.example.com` at
//! `/clusters/prod/.well-known/openid-configuration` and `/clusters/prod/openid/v1/jwks`, while
//! the API server serves both at its root.

use crate::classify::strip_port;
use crate::document::Document;

/// A valid issuer URL, split into what routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerUrl<'a> {
    /// The host, lower-case, without port: requests are matched on it case-insensitively with
    /// any port ignored, as `hosts` are.
    pub host: String,
    /// The path without one trailing slash: `""` for `https://h` and `https://h/`.
    pub prefix: &'a str,
}

impl<'a> IssuerUrl<'a> {
    /// Parses an issuer: `https://`, a host (optionally with a port), and a path of printable
    /// ASCII without query, fragment, empty, `.` or `..` segments (clients would normalise those,
    /// and the filter compares paths byte for byte).
    pub fn parse(url: &'a str) -> Result<IssuerUrl<'a>, &'static str> {
        let rest = url
            .strip_prefix("https://")
            .ok_or("must be an https:// URL")?;
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces (percent-encode the rest)");
        }
        if url.contains(['?', '#']) {
            return Err("must have no query or fragment");
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = host_of(authority).ok_or("must have a host name, optionally with a port")?;
        let prefix = path.strip_suffix('/').unwrap_or(path);
        let bad_segment = prefix
            .split('/')
            .skip(1)
            .any(|s| s.is_empty() || s == "." || s == "..");
        if bad_segment {
            return Err("must have no empty, `.` or `..` path segments");
        }
        Ok(IssuerUrl { host, prefix })
    }
}

/// The host of an authority, lower-case: a DNS name or an IP address literal, optionally with a
/// numeric port; None for anything else (user info, an empty or non-numeric port, ...).
fn host_of(authority: &str) -> Option<String> {
    let host = strip_port(authority);
    let port = authority.get(host.len()..).unwrap_or_default();
    if !(port.is_empty() || port.len() > 1 && port.starts_with(':')) {
        return None;
    }
    let valid = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').is_some_and(|a| {
            !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        }
    };
    valid.then(|| host.to_ascii_lowercase())
}

/// The `jwks_uri` an issuer's served discovery document gets unless one is configured: where
/// the filter serves its key set.
pub fn default_jwks_uri(issuer: &str) -> String {
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    format!("{base}{}", Document::Jwks.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> (String, &str) {
        let u = IssuerUrl::parse(url).unwrap();
        (u.host, u.prefix)
    }

    #[test]
    fn host_and_prefix_come_from_the_url() {
        assert_eq!(
            parsed("https://oidc.example.com"),
            ("oidc.example.com".into(), "")
        );
        assert_eq!(
            parsed("https://oidc.example.com/"),
            ("oidc.example.com".into(), "")
        );
        assert_eq!(
            parsed("https://OIDC.Example.com:8443/clusters/prod"),
            ("oidc.example.com".into(), "/clusters/prod")
        );
        assert_eq!(
            parsed("https://oidc.example.com/clusters/prod/"),
            ("oidc.example.com".into(), "/clusters/prod"),
            "one trailing slash is dropped"
        );
        assert_eq!(
            parsed("https://oidc.eks.eu-west-1.amazonaws.com/id/0A1B2C%2F"),
            ("oidc.eks.eu-west-1.amazonaws.com".into(), "/id/0A1B2C%2F"),
            "kept byte for byte, never decoded"
        );
        assert_eq!(parsed("https://[::1]:443/a"), ("[::1]".into(), "/a"));
        assert_eq!(parsed("https://10.0.0.1/a"), ("10.0.0.1".into(), "/a"));
    }

    #[test]
    fn what_is_not_an_issuer_is_refused() {
        for url in [
            "http://oidc.example.com",
            "HTTPS://oidc.example.com",
            "oidc.example.com/x",
            "https://",
            "https:///x",
            "https://oidc.example.com/x?y=1",
            "https://oidc.example.com/x?",
            "https://oidc.example.com/x#f",
            "https://oidc.example.com//x",
            "https://oidc.example.com/x//",
            "https://oidc.example.com/x/../y",
            "https://oidc.example.com/./x",
            "https://oidc.example.com/x/..",
            "https://oidc.example.com/a b",
            "https://oidc.example.com/\u{e9}",
            "https://oidc.example.com/x\n",
            "https://user@oidc.example.com/x",
            "https://oidc.example.com:/x",
            "https://oidc.example.com:http/x",
            "https://oidc.example.com:8443:1/x",
            "https://[::1/x",
            "https://[]/x",
            "https://:443/x",
        ] {
            assert!(IssuerUrl::parse(url).is_err(), "{url:?}");
        }
    }

    #[test]
    fn the_default_jwks_uri_is_under_the_issuer() {
        assert_eq!(
            default_jwks_uri("https://oidc.example.com/clusters/prod"),
            "https://oidc.example.com/clusters/prod/openid/v1/jwks"
        );
        assert_eq!(
            default_jwks_uri("https://oidc.example.com/clusters/prod/"),
            "https://oidc.example.com/clusters/prod/openid/v1/jwks"
        );
        assert_eq!(
            default_jwks_uri("https://edge.example.com"),
            "https://edge.example.com/openid/v1/jwks"
        );
    }
}
