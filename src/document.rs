//! The two documents this filter publishes: their constant paths, and what a valid body looks like.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

/// One of the two OIDC discovery documents of the Kubernetes API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Document {
    Discovery,
    Jwks,
}

impl Document {
    pub const ALL: [Document; 2] = [Document::Discovery, Document::Jwks];

    /// The path, both on the public host and on the API server. A constant: the upstream
    /// path is never derived from the client's request.
    pub const fn path(self) -> &'static str {
        match self {
            Document::Discovery => "/.well-known/openid-configuration",
            Document::Jwks => "/openid/v1/jwks",
        }
    }

    /// The media type the API server's route produces, sent as `Accept`. The API server
    /// (go-restful) answers 406 to any other Accept but an empty one or `*/*`: the JWKS route
    /// produces only `application/jwk-set+json`, so `application/json` is refused there.
    pub const fn media_type(self) -> &'static str {
        match self {
            Document::Discovery => "application/json",
            Document::Jwks => "application/jwk-set+json",
        }
    }

    /// Short name used in metric names and shared-data keys.
    pub const fn name(self) -> &'static str {
        match self {
            Document::Discovery => "discovery",
            Document::Jwks => "jwks",
        }
    }

    /// Position in [`Document::ALL`]: where a per-document table keeps this document's entry.
    pub const fn index(self) -> usize {
        match self {
            Document::Discovery => 0,
            Document::Jwks => 1,
        }
    }

    /// Checks that `body` is the document it claims to be, of the expected issuer, and returns
    /// the body to publish: byte for byte the upstream's, except the discovery document's
    /// `jwks_uri` when one is to be published.
    pub fn validate(self, body: &[u8], expect: &Expect<'_>) -> Result<Vec<u8>, InvalidBody> {
        // serde would accept a JSON array for a struct; the documents are objects.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(InvalidBody::NotAnObject);
        }
        match self {
            Document::Discovery => validate_discovery(body, expect),
            Document::Jwks => {
                let jwks: Jwks =
                    serde_json::from_slice(body).map_err(|_| InvalidBody::Shape("keys"))?;
                // An empty set verifies no token: keeping the last good copy serves relying
                // parties better than replacing it.
                if jwks.keys.is_empty() {
                    return Err(InvalidBody::NoKeys);
                }
                Ok(body.to_vec())
            }
        }
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one issuer holds its fetched documents to, and publishes of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect<'a> {
    /// The discovery document's `issuer` must be exactly this, byte for byte (relying parties
    /// compare it so, trailing slash included); None: not checked.
    pub issuer: Option<&'a str>,
    /// Replaces the discovery document's `jwks_uri`; None: kept.
    pub jwks_uri: Option<&'a str>,
}

/// Why an upstream body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidBody {
    NotAnObject,
    /// Not JSON, or the named member is missing or of the wrong type.
    Shape(&'static str),
    /// A JWKS whose `keys` array is empty.
    NoKeys,
    /// A discovery document of another issuer: a misrouted cluster, or an API server with
    /// another `--service-account-issuer`.
    IssuerMismatch {
        expected: String,
        got: String,
    },
}

impl fmt::Display for InvalidBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidBody::NotAnObject => f.write_str("body is not a JSON object"),
            InvalidBody::Shape(member) => {
                write!(f, "body is not JSON with a valid `{member}` member")
            }
            InvalidBody::NoKeys => f.write_str("the key set is empty"),
            InvalidBody::IssuerMismatch { expected, got } => write!(
                f,
                "the discovery document's issuer {got:?} is not the configured issuer {expected:?}"
            ),
        }
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct Discovery<'a> {
    #[serde(borrow)]
    issuer: &'a RawValue,
    #[serde(borrow)]
    jwks_uri: &'a RawValue,
}

/// Longest upstream `issuer` value a log line shows.
const MAX_LOGGED_ISSUER: usize = 256;

fn validate_discovery(body: &[u8], expect: &Expect<'_>) -> Result<Vec<u8>, InvalidBody> {
    let doc: Discovery<'_> =
        serde_json::from_slice(body).map_err(|_| InvalidBody::Shape("issuer"))?;
    let issuer: String =
        serde_json::from_str(doc.issuer.get()).map_err(|_| InvalidBody::Shape("issuer"))?;
    if serde_json::from_str::<String>(doc.jwks_uri.get()).is_err() {
        return Err(InvalidBody::Shape("jwks_uri"));
    }
    // The decoded value, as a relying party compares it: `\/` and `/` are the same issuer.
    if let Some(expected) = expect.issuer.filter(|e| *e != issuer) {
        return Err(InvalidBody::IssuerMismatch {
            expected: expected.to_string(),
            got: issuer.chars().take(MAX_LOGGED_ISSUER).collect(),
        });
    }
    let Some(replacement) = expect.jwks_uri else {
        return Ok(body.to_vec());
    };
    // Replace only the bytes of the jwks_uri value, so every other byte stays the upstream's.
    let raw = doc.jwks_uri.get().as_bytes();
    let start = (raw.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let end = start.saturating_add(raw.len());
    let (Some(before), Some(after)) = (body.get(..start), body.get(end..)) else {
        return Err(InvalidBody::Shape("jwks_uri"));
    };
    let encoded = serde_json::to_vec(replacement).map_err(|_| InvalidBody::Shape("jwks_uri"))?;
    let mut out = Vec::with_capacity(body.len() + encoded.len());
    out.extend_from_slice(before);
    out.extend_from_slice(&encoded);
    out.extend_from_slice(after);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISCOVERY: &str = r#"{"issuer":"https://kubernetes.default.svc.cluster.local","jwks_uri":"https://10.0.0.1:6443/openid/v1/jwks","response_types_supported":["id_token"]}"#;

    /// Publishes `jwks_uri` instead of the upstream's; no issuer check.
    fn rewrite(jwks_uri: &str) -> Expect<'_> {
        Expect {
            issuer: None,
            jwks_uri: Some(jwks_uri),
        }
    }

    const AS_IS: Expect<'static> = Expect {
        issuer: None,
        jwks_uri: None,
    };

    #[test]
    fn index_is_the_position_in_all() {
        for (i, d) in Document::ALL.into_iter().enumerate() {
            assert_eq!(d.index(), i, "{d:?}");
        }
    }

    #[test]
    fn paths_are_the_api_server_paths() {
        assert_eq!(
            Document::Discovery.path(),
            "/.well-known/openid-configuration"
        );
        assert_eq!(Document::Jwks.path(), "/openid/v1/jwks");
    }

    #[test]
    fn discovery_is_kept_byte_for_byte_without_override() {
        let out = Document::Discovery
            .validate(DISCOVERY.as_bytes(), &AS_IS)
            .unwrap();
        assert_eq!(out, DISCOVERY.as_bytes());
    }

    #[test]
    fn discovery_jwks_uri_is_rewritten_in_place() {
        let out = Document::Discovery
            .validate(
                DISCOVERY.as_bytes(),
                &rewrite("https://oidc.example.com/openid/v1/jwks"),
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"issuer":"https://kubernetes.default.svc.cluster.local","jwks_uri":"https://oidc.example.com/openid/v1/jwks","response_types_supported":["id_token"]}"#
        );
    }

    #[test]
    fn rewrite_keeps_whitespace_and_escapes_the_new_value() {
        let body = "{ \"jwks_uri\" : \"x\" ,\n \"issuer\":\"i\" }";
        let out = Document::Discovery
            .validate(body.as_bytes(), &rewrite("https://a/\"b"))
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{ \"jwks_uri\" : \"https://a/\\\"b\" ,\n \"issuer\":\"i\" }"
        );
    }

    #[test]
    fn discovery_requires_string_issuer_and_jwks_uri() {
        for body in [
            r#"{"jwks_uri":"x"}"#,
            r#"{"issuer":"x"}"#,
            r#"{"issuer":1,"jwks_uri":"x"}"#,
            r#"{"issuer":"x","jwks_uri":null}"#,
            r#"["x","y"]"#,
            r#"{"issuer":"x","jwks_uri":"y"} trailing"#,
            r#"{"issuer":"x","issuer":"y","jwks_uri":"z"}"#,
            "<html>oops</html>",
            "",
        ] {
            assert!(
                Document::Discovery
                    .validate(body.as_bytes(), &AS_IS)
                    .is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn jwks_requires_an_object_with_a_non_empty_keys_array() {
        assert!(Document::Jwks
            .validate(br#"{"keys":[{"kty":"RSA"}]}"#, &AS_IS)
            .is_ok());
        assert_eq!(
            Document::Jwks.validate(br#"{"keys":[]}"#, &AS_IS),
            Err(InvalidBody::NoKeys)
        );
        assert_eq!(
            Document::Jwks.validate(b" {\"keys\" : [ ] , \"x\":1}", &AS_IS),
            Err(InvalidBody::NoKeys)
        );
        for body in [
            r#"{"keys":{}}"#,
            r#"{"key":[]}"#,
            r#"[[]]"#,
            "<html></html>",
            r#"{"keys":[]"#,
        ] {
            assert!(
                Document::Jwks.validate(body.as_bytes(), &AS_IS).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn the_issuer_must_be_the_configured_one_byte_for_byte() {
        let issuer = "https://kubernetes.default.svc.cluster.local";
        let expect = |i| Expect {
            issuer: Some(i),
            jwks_uri: Some("https://oidc.example.com/openid/v1/jwks"),
        };
        let out = Document::Discovery
            .validate(DISCOVERY.as_bytes(), &expect(issuer))
            .unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("https://oidc.example.com/openid/v1/jwks"));
        for other in [
            "https://kubernetes.default.svc.cluster.local/",
            "https://Kubernetes.default.svc.cluster.local",
            "https://kubernetes.default.svc.cluster.local:443",
            "https://kubernetes.default.svc",
            "",
        ] {
            let got = Document::Discovery.validate(DISCOVERY.as_bytes(), &expect(other));
            assert_eq!(
                got,
                Err(InvalidBody::IssuerMismatch {
                    expected: other.to_string(),
                    got: issuer.to_string()
                }),
                "{other:?}"
            );
        }
        // JSON escapes are decoded before the comparison, as a relying party decodes them
        let escaped =
            r#"{"issuer":"https:\/\/kubernetes.default.svc.cluster.local","jwks_uri":"x"}"#;
        assert!(Document::Discovery
            .validate(escaped.as_bytes(), &expect(issuer))
            .is_ok());
        // the JWKS names no issuer: nothing to check there
        assert!(Document::Jwks
            .validate(br#"{"keys":[{"kid":"a"}]}"#, &expect("https://x"))
            .is_ok());
    }

    #[test]
    fn a_mismatch_names_both_issuers_printably_and_briefly() {
        let body = format!(
            r#"{{"issuer":"https://evil.example/\n{}","jwks_uri":"x"}}"#,
            "a".repeat(1000)
        );
        let expect = Expect {
            issuer: Some("https://oidc.example.com/clusters/prod"),
            jwks_uri: None,
        };
        let e = Document::Discovery
            .validate(body.as_bytes(), &expect)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(r#"the discovery document's issuer "https://evil.example/\naaa"#),
            "{e}"
        );
        assert!(
            e.ends_with(r#"is not the configured issuer "https://oidc.example.com/clusters/prod""#),
            "{e}"
        );
        assert!(!e.contains('\n') && e.len() < 400, "{e}");
    }
}
