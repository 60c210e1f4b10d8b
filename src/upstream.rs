//! The upstream call: the request sent to the API server, and what its answer means.

use crate::config::IssuerConfig;
use crate::document::{Document, Expect, InvalidBody};
use std::fmt;

/// Bodies above this size are refused without being read.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The headers of the upstream request to one issuer's API server. Built only from constants
/// and configuration: nothing of the client's request is an input here, and the path is the
/// API server's root path whatever the issuer's public path.
pub fn request_headers(cfg: &IssuerConfig, doc: Document) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        (":method", "GET".to_string()),
        (":path", doc.path().to_string()),
        (":authority", cfg.authority.clone()),
        (":scheme", "https".to_string()),
        ("accept", doc.media_type().to_string()),
        (
            "user-agent",
            concat!("kube-oidc-discovery/", env!("CARGO_PKG_VERSION")).to_string(),
        ),
    ];
    if let Some(token) = &cfg.token {
        headers.push(("authorization", token.bearer()));
    }
    headers
}

/// A validated document, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub content_type: String,
    pub cache_control: Option<String>,
}

/// Why a fetch failed. Only ever logged; the client gets the generic answer of [`FetchError::client_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Envoy could not hand the call to the cluster (unknown cluster, bad arguments).
    Dispatch,
    /// No `:status`, or an unparsable one.
    NoStatus,
    /// The API server answered a non-200 status (401, 403, 500, ...).
    Status(u16),
    /// Connection, TLS or upstream unavailability: Envoy's own 503 or the API server's.
    Unavailable,
    /// The call timed out (Envoy's 504).
    Timeout,
    TooLarge(usize),
    Invalid(InvalidBody),
    /// A key set fetched while the issuer's API server answers with another issuer's discovery
    /// document: the key set names no issuer, so nothing vouches for it.
    Unverified,
}

/// The `result` label of the upstream fetch metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchResult {
    Ok,
    HttpError,
    InvalidBody,
    TooLarge,
    Unavailable,
    Timeout,
    /// The discovery document names another issuer (and the key set fetched meanwhile).
    IssuerMismatch,
}

impl FetchResult {
    pub const ALL: [FetchResult; 7] = [
        FetchResult::Ok,
        FetchResult::HttpError,
        FetchResult::InvalidBody,
        FetchResult::TooLarge,
        FetchResult::Unavailable,
        FetchResult::Timeout,
        FetchResult::IssuerMismatch,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            FetchResult::Ok => "ok",
            FetchResult::HttpError => "http_error",
            FetchResult::InvalidBody => "invalid_body",
            FetchResult::TooLarge => "too_large",
            FetchResult::Unavailable => "unavailable",
            FetchResult::Timeout => "timeout",
            FetchResult::IssuerMismatch => "issuer_mismatch",
        }
    }

    /// Position in [`FetchResult::ALL`]: where a per-result table keeps this result's entry.
    pub const fn index(self) -> usize {
        match self {
            FetchResult::Ok => 0,
            FetchResult::HttpError => 1,
            FetchResult::InvalidBody => 2,
            FetchResult::TooLarge => 3,
            FetchResult::Unavailable => 4,
            FetchResult::Timeout => 5,
            FetchResult::IssuerMismatch => 6,
        }
    }
}

impl FetchError {
    /// The status the client gets when no usable copy exists: 504 for a timeout, 503 when the
    /// API server cannot be reached, 502 when it answered something unusable.
    pub const fn client_status(&self) -> u16 {
        match self {
            FetchError::Timeout => 504,
            FetchError::Unavailable | FetchError::Dispatch => 503,
            FetchError::NoStatus
            | FetchError::Status(_)
            | FetchError::TooLarge(_)
            | FetchError::Invalid(_)
            | FetchError::Unverified => 502,
        }
    }

    pub const fn result(&self) -> FetchResult {
        match self {
            FetchError::Timeout => FetchResult::Timeout,
            FetchError::Unavailable | FetchError::Dispatch => FetchResult::Unavailable,
            FetchError::NoStatus | FetchError::Status(_) => FetchResult::HttpError,
            FetchError::TooLarge(_) => FetchResult::TooLarge,
            FetchError::Invalid(InvalidBody::IssuerMismatch { .. }) | FetchError::Unverified => {
                FetchResult::IssuerMismatch
            }
            FetchError::Invalid(_) => FetchResult::InvalidBody,
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Dispatch => {
                f.write_str("the call could not be dispatched (is the cluster defined?)")
            }
            FetchError::NoStatus => f.write_str("the answer had no valid :status"),
            FetchError::Status(s) => write!(f, "the API server answered {s}"),
            FetchError::Unavailable => {
                f.write_str("the API server is unavailable (connection, TLS or 503)")
            }
            FetchError::Timeout => f.write_str("the call timed out"),
            FetchError::TooLarge(n) => write!(
                f,
                "the body is {n} bytes, over the {MAX_BODY_BYTES}-byte limit"
            ),
            FetchError::Invalid(why) => write!(f, "{why}"),
            FetchError::Unverified => f.write_str(
                "not stored: the last discovery document from this cluster names another issuer",
            ),
        }
    }
}

/// The head of an upstream call's response, as the host reports it: the headers that matter
/// and the body's size, read before (and to decide whether) the body is.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: Option<String>,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub body_size: usize,
}

/// Decides from the status and size whether the body is worth reading.
pub fn check_head(head: &ResponseHead) -> Result<(), FetchError> {
    let status: u16 = head
        .status
        .as_deref()
        .and_then(|s| s.parse().ok())
        .ok_or(FetchError::NoStatus)?;
    match status {
        200 => {}
        503 => return Err(FetchError::Unavailable),
        504 => return Err(FetchError::Timeout),
        s => return Err(FetchError::Status(s)),
    }
    if head.body_size > MAX_BODY_BYTES {
        return Err(FetchError::TooLarge(head.body_size));
    }
    Ok(())
}

/// A refused answer: why, and for the log only, an excerpt of an error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub error: FetchError,
    pub excerpt: String,
}

/// Judges an upstream answer: the head first, then the body, read through `read_body(max)`
/// (at most `max` bytes) only as far as needed: whole for a 200 within the size limit, else the
/// start of it for the log excerpt. Keeps, of the headers, only what is relayed.
pub fn accept(
    doc: Document,
    head: &ResponseHead,
    read_body: impl FnOnce(usize) -> Vec<u8>,
    expect: &Expect<'_>,
) -> Result<Fetched, Refused> {
    let refused = |error, excerpt| Refused { error, excerpt };
    if let Err(e) = check_head(head) {
        return Err(refused(e, log_excerpt(&read_body(EXCERPT_BYTES))));
    }
    let body = read_body(MAX_BODY_BYTES);
    if body.len() > MAX_BODY_BYTES {
        return Err(refused(FetchError::TooLarge(body.len()), String::new()));
    }
    let body = doc
        .validate(&body, expect)
        .map_err(|e| refused(FetchError::Invalid(e), String::new()))?;
    Ok(Fetched {
        body,
        content_type: head
            .content_type
            .as_deref()
            .filter(|v| header_value_ok(v))
            .unwrap_or(doc.media_type())
            .to_string(),
        cache_control: head
            .cache_control
            .as_deref()
            .filter(|v| header_value_ok(v))
            .map(str::to_string),
    })
}

/// How much of an error body the log excerpt shows.
const EXCERPT_BYTES: usize = 160;

/// A short, printable excerpt of an error body for the warn log line (Envoy's own 503 says
/// which TLS check failed; that is for the operator, never for the client).
pub fn log_excerpt(body: &[u8]) -> String {
    body.iter()
        .take(EXCERPT_BYTES)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

fn header_value_ok(v: &str) -> bool {
    !v.is_empty() && v.len() <= 256 && v.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, IssuerConfig};
    use std::cell::Cell;

    const AS_IS: Expect<'static> = Expect {
        issuer: None,
        jwks_uri: None,
    };

    fn ok_answer(body_size: usize) -> ResponseHead {
        ResponseHead {
            status: Some("200".into()),
            content_type: Some("application/jwk-set+json".into()),
            cache_control: Some("public, max-age=3600".into()),
            body_size,
        }
    }

    #[test]
    fn index_is_the_position_in_all() {
        for (i, r) in FetchResult::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }

    #[test]
    fn request_is_built_from_constants_and_config_only() {
        let cfg = Config::from_json(
            br#"{"authority":"api.internal:6443","token_env":"T"}"#,
            |_| Some("tok".into()),
        )
        .unwrap();
        let h = request_headers(&cfg.issuers[0], Document::Jwks);
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get(":method"), Some("GET"));
        assert_eq!(get(":path"), Some("/openid/v1/jwks"));
        assert_eq!(get(":authority"), Some("api.internal:6443"));
        assert_eq!(get("accept"), Some("application/jwk-set+json"));
        assert_eq!(get("authorization"), Some("Bearer tok"));
        assert_eq!(h.len(), 7);
        let without = request_headers(&IssuerConfig::default(), Document::Discovery);
        assert!(without.iter().all(|(n, _)| *n != "authorization"));
        assert!(without
            .iter()
            .any(|(n, v)| *n == ":path" && v == "/.well-known/openid-configuration"));
        assert!(without
            .iter()
            .any(|(n, v)| *n == "accept" && v == "application/json"));
    }

    #[test]
    fn a_path_prefixed_issuer_is_fetched_at_the_api_servers_root_paths() {
        let cfg = Config::from_json(
            br#"{"issuers":[{"name":"prod","issuer":"https://oidc.example.com/clusters/prod",
                 "cluster":"prod-api","authority":"api.prod.internal"}]}"#,
            |_| None,
        )
        .unwrap();
        for doc in Document::ALL {
            let h = request_headers(&cfg.issuers[0], doc);
            let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
            assert_eq!(get(":path"), Some(doc.path()));
            assert_eq!(get(":authority"), Some("api.prod.internal"));
            assert_eq!(get("authorization"), None);
        }
    }

    #[test]
    fn statuses_map_to_generic_client_statuses() {
        let mut a = ok_answer(10);
        for (status, want) in [
            ("401", 502),
            ("403", 502),
            ("500", 502),
            ("404", 502),
            ("503", 503),
            ("504", 504),
        ] {
            a.status = Some(status.into());
            assert_eq!(
                check_head(&a).unwrap_err().client_status(),
                want,
                "{status}"
            );
        }
        a.status = None;
        assert_eq!(check_head(&a).unwrap_err(), FetchError::NoStatus);
        a.status = Some("2OO".into());
        assert_eq!(check_head(&a).unwrap_err(), FetchError::NoStatus);
        assert_eq!(FetchError::Dispatch.client_status(), 503);
    }

    #[test]
    fn oversize_is_refused_before_reading() {
        assert_eq!(check_head(&ok_answer(MAX_BODY_BYTES)), Ok(()));
        assert_eq!(
            check_head(&ok_answer(MAX_BODY_BYTES + 1)),
            Err(FetchError::TooLarge(MAX_BODY_BYTES + 1))
        );
    }

    /// A body reader as the host's: at most `max` bytes; records each `max` asked for.
    fn reader<'a>(
        body: &'a [u8],
        asked: &'a Cell<Vec<usize>>,
    ) -> impl FnOnce(usize) -> Vec<u8> + 'a {
        move |max| {
            let mut a = asked.take();
            a.push(max);
            asked.set(a);
            body.iter().take(max).copied().collect()
        }
    }

    #[test]
    fn accept_keeps_only_relayed_headers_and_validates() {
        let asked = Cell::new(Vec::new());
        let body = br#"{"keys":[{"kid":"a"}]}"#;
        let read = reader(body, &asked);
        let f = accept(Document::Jwks, &ok_answer(body.len()), read, &AS_IS).unwrap();
        assert_eq!(f.body, body);
        assert_eq!(f.content_type, "application/jwk-set+json");
        assert_eq!(f.cache_control.as_deref(), Some("public, max-age=3600"));
        assert_eq!(asked.take(), [MAX_BODY_BYTES]);
        let html = b"<html>login</html>";
        let refused = accept(
            Document::Jwks,
            &ok_answer(html.len()),
            reader(html, &asked),
            &AS_IS,
        );
        assert_eq!(
            refused.unwrap_err().error.result(),
            FetchResult::InvalidBody
        );
        let bare = ResponseHead {
            status: Some("200".into()),
            content_type: Some("bad\u{7f}".into()),
            ..Default::default()
        };
        let f = accept(Document::Jwks, &bare, reader(body, &asked), &AS_IS).unwrap();
        assert_eq!(f.content_type, "application/jwk-set+json");
        assert_eq!(f.cache_control, None);
    }

    #[test]
    fn a_refused_head_reads_only_the_log_excerpt() {
        let asked = Cell::new(Vec::new());
        let body = [b'x'; 1000];
        let mut denied = ok_answer(body.len());
        denied.status = Some("403".into());
        let r = accept(Document::Jwks, &denied, reader(&body, &asked), &AS_IS).unwrap_err();
        assert_eq!(r.error, FetchError::Status(403));
        assert_eq!(r.excerpt.len(), EXCERPT_BYTES);
        assert_eq!(asked.take(), [EXCERPT_BYTES]);
        let r = accept(
            Document::Jwks,
            &ok_answer(MAX_BODY_BYTES + 1),
            reader(&body, &asked),
            &AS_IS,
        );
        assert_eq!(
            r.unwrap_err().error,
            FetchError::TooLarge(MAX_BODY_BYTES + 1)
        );
        assert_eq!(asked.take(), [EXCERPT_BYTES]);
        // a host that hands over more than the head announced
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let r = accept(Document::Jwks, &ok_answer(10), |_| big.clone(), &AS_IS);
        assert_eq!(
            r.unwrap_err().error,
            FetchError::TooLarge(MAX_BODY_BYTES + 1)
        );
    }

    #[test]
    fn another_issuers_document_is_an_issuer_mismatch_and_a_bad_gateway() {
        let body = br#"{"issuer":"https://b.example","jwks_uri":"https://b.example/jwks"}"#;
        let expect = Expect {
            issuer: Some("https://a.example"),
            jwks_uri: None,
        };
        let r = accept(
            Document::Discovery,
            &ok_answer(body.len()),
            |_| body.to_vec(),
            &expect,
        )
        .unwrap_err();
        assert_eq!(r.error.result(), FetchResult::IssuerMismatch);
        assert_eq!(r.error.client_status(), 502);
        assert!(r.excerpt.is_empty());
        assert_eq!(
            r.error.to_string(),
            r#"the discovery document's issuer "https://b.example" is not the configured issuer "https://a.example""#
        );
        assert_eq!(FetchError::Unverified.result(), FetchResult::IssuerMismatch);
        assert_eq!(FetchError::Unverified.client_status(), 502);
    }

    #[test]
    fn excerpt_is_printable_and_bounded() {
        let e = log_excerpt(b"upstream connect error\r\nTLS_error:|268435581:SSL routines");
        assert!(e.starts_with("upstream connect error..TLS"));
        assert_eq!(log_excerpt(&[b'a'; 500]).len(), 160);
    }
}
