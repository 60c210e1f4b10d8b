//! The client's answer: a document from the copy (200, 304, and HEAD, which Envoy strips of its
//! body), or a short generic error. Nothing of an upstream error ever reaches the client.

use crate::clock;
use crate::policy::Freshness;
use crate::shared::StoredCopy;
use std::borrow::Cow;

/// A local reply for Envoy's `send_http_response`.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer<'a> {
    pub status: u32,
    pub headers: Vec<(&'static str, Cow<'a, str>)>,
    pub body: Option<&'a [u8]>,
}

/// The `outcome` label of the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Fresh,
    Stale,
    NotModified,
    UpstreamError,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Fresh,
        Outcome::Stale,
        Outcome::NotModified,
        Outcome::UpstreamError,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Fresh => "fresh",
            Outcome::Stale => "stale",
            Outcome::NotModified => "not_modified",
            Outcome::UpstreamError => "upstream_error",
        }
    }

    /// Position in [`Outcome::ALL`]: where a per-outcome table keeps this outcome's entry.
    pub const fn index(self) -> usize {
        match self {
            Outcome::Fresh => 0,
            Outcome::Stale => 1,
            Outcome::NotModified => 2,
            Outcome::UpstreamError => 3,
        }
    }
}

const JSON: &str = "application/json";
const NOSNIFF: (&str, Cow<'static, str>) = ("x-content-type-options", Cow::Borrowed("nosniff"));

/// Serves a copy. `freshness` must not be `Expired`: the caller never serves an expired copy, it
/// waits for a fetch in flight or answers an error ([`crate::policy::cold`]).
pub fn document<'a>(
    copy: &'a StoredCopy,
    freshness: Freshness,
    now_ms: u64,
    if_none_match: Option<&str>,
) -> (Answer<'a>, Outcome) {
    let age = clock::age_s(copy.fetched_at_ms, now_ms).to_string();
    let mut headers = Vec::with_capacity(5);
    if let Some(cc) = &copy.cache_control {
        headers.push(("cache-control", Cow::Borrowed(cc.as_str())));
    }
    headers.push(("etag", Cow::Borrowed(copy.etag.as_str())));
    headers.push(("age", Cow::Owned(age)));
    headers.push(NOSNIFF);
    if if_none_match.is_some_and(|inm| etag_matches(inm, &copy.etag)) {
        let answer = Answer {
            status: 304,
            headers,
            body: None,
        };
        return (answer, Outcome::NotModified);
    }
    headers.push(("content-type", Cow::Borrowed(copy.content_type.as_str())));
    let outcome = match freshness {
        Freshness::Fresh => Outcome::Fresh,
        Freshness::Stale | Freshness::Expired => Outcome::Stale,
    };
    (
        Answer {
            status: 200,
            headers,
            body: Some(&copy.body),
        },
        outcome,
    )
}

/// `If-None-Match` uses the weak comparison (RFC 9110 13.1.2): `W/` is ignored, `*` matches.
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let strip = |t: &str| -> String {
        let t = t.trim();
        t.strip_prefix("W/").unwrap_or(t).to_string()
    };
    let ours = strip(etag);
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == ours)
}

/// A generic error answer; the body names no upstream detail.
pub fn error(status: u32) -> Answer<'static> {
    let body: &'static [u8] = match status {
        404 => br#"{"error":"not found"}"#,
        405 => br#"{"error":"method not allowed"}"#,
        502 => br#"{"error":"bad gateway"}"#,
        504 => br#"{"error":"gateway timeout"}"#,
        _ => br#"{"error":"service unavailable"}"#,
    };
    let status = match status {
        404 | 405 | 502 | 504 => status,
        _ => 503,
    };
    let mut headers = vec![("content-type", Cow::Borrowed(JSON)), NOSNIFF];
    if status == 405 {
        headers.push(("allow", Cow::Borrowed("GET, HEAD")));
    }
    if status >= 500 {
        headers.push(("cache-control", Cow::Borrowed("no-store")));
    }
    Answer {
        status,
        headers,
        body: Some(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy() -> StoredCopy {
        StoredCopy {
            fetched_at_ms: 10_000,
            etag: "\"abc-1\"".into(),
            content_type: "application/jwk-set+json".into(),
            cache_control: Some("public, max-age=3600".into()),
            body: b"{\"keys\":[]}".to_vec(),
        }
    }

    fn header<'a>(a: &'a Answer<'_>, name: &str) -> Option<&'a str> {
        a.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }

    #[test]
    fn index_is_the_position_in_all() {
        for (i, o) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(o.index(), i, "{o:?}");
        }
    }

    #[test]
    fn serves_the_copy_with_only_relayed_headers() {
        let c = copy();
        let (a, o) = document(&c, Freshness::Fresh, 12_500, None);
        assert_eq!((a.status, o), (200, Outcome::Fresh));
        assert_eq!(a.body, Some(&b"{\"keys\":[]}"[..]));
        assert_eq!(header(&a, "content-type"), Some("application/jwk-set+json"));
        assert_eq!(header(&a, "cache-control"), Some("public, max-age=3600"));
        assert_eq!(header(&a, "etag"), Some("\"abc-1\""));
        assert_eq!(header(&a, "age"), Some("2"));
        assert_eq!(header(&a, "x-content-type-options"), Some("nosniff"));
        assert_eq!(a.headers.len(), 5);
        let (_, o) = document(&c, Freshness::Stale, 12_500, None);
        assert_eq!(o, Outcome::Stale);
    }

    #[test]
    fn if_none_match_gives_304_without_body() {
        let c = copy();
        for inm in ["\"abc-1\"", "W/\"abc-1\"", "\"x\", \"abc-1\"", "*"] {
            let (a, o) = document(&c, Freshness::Fresh, 10_000, Some(inm));
            assert_eq!(
                (a.status, o, a.body),
                (304, Outcome::NotModified, None),
                "{inm}"
            );
            assert_eq!(header(&a, "etag"), Some("\"abc-1\""));
            assert_eq!(header(&a, "content-type"), None);
        }
        let (a, _) = document(&c, Freshness::Fresh, 10_000, Some("\"abc-2\""));
        assert_eq!(a.status, 200);
        let (a, _) = document(&c, Freshness::Fresh, 10_000, Some("abc-1"));
        assert_eq!(a.status, 200, "unquoted is not the same tag");
    }

    #[test]
    fn errors_are_generic_json() {
        for (status, want) in [
            (404, 404),
            (405, 405),
            (502, 502),
            (503, 503),
            (504, 504),
            (500, 503),
        ] {
            let a = error(status);
            assert_eq!(a.status, want);
            assert_eq!(header(&a, "content-type"), Some("application/json"));
            let body = std::str::from_utf8(a.body.unwrap()).unwrap();
            assert!(body.starts_with("{\"error\":\""), "{body}");
        }
        assert_eq!(header(&error(405), "allow"), Some("GET, HEAD"));
        assert_eq!(header(&error(404), "allow"), None);
        assert_eq!(header(&error(502), "cache-control"), Some("no-store"));
    }
}
