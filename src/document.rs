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

    /// Checks that `body` is the document it claims to be and returns the body to publish:
    /// byte for byte the upstream's, except the discovery document's `jwks_uri` when an
    /// override is configured.
    pub fn validate(self, body: &[u8], jwks_uri: Option<&str>) -> Result<Vec<u8>, InvalidBody> {
        // serde would accept a JSON array for a struct; the documents are objects.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(InvalidBody::NotAnObject);
        }
        match self {
            Document::Discovery => validate_discovery(body, jwks_uri),
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

/// Why an upstream body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidBody {
    NotAnObject,
    /// Not JSON, or the named member is missing or of the wrong type.
    Shape(&'static str),
    /// A JWKS whose `keys` array is empty.
    NoKeys,
}

impl fmt::Display for InvalidBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidBody::NotAnObject => f.write_str("body is not a JSON object"),
            InvalidBody::Shape(member) => {
                write!(f, "body is not JSON with a valid `{member}` member")
            }
            InvalidBody::NoKeys => f.write_str("the key set is empty"),
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

fn validate_discovery(body: &[u8], jwks_uri: Option<&str>) -> Result<Vec<u8>, InvalidBody> {
    let doc: Discovery<'_> =
        serde_json::from_slice(body).map_err(|_| InvalidBody::Shape("issuer"))?;
    if serde_json::from_str::<String>(doc.issuer.get()).is_err() {
        return Err(InvalidBody::Shape("issuer"));
    }
    if serde_json::from_str::<String>(doc.jwks_uri.get()).is_err() {
        return Err(InvalidBody::Shape("jwks_uri"));
    }
    let Some(replacement) = jwks_uri else {
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
            .validate(DISCOVERY.as_bytes(), None)
            .unwrap();
        assert_eq!(out, DISCOVERY.as_bytes());
    }

    #[test]
    fn discovery_jwks_uri_is_rewritten_in_place() {
        let out = Document::Discovery
            .validate(
                DISCOVERY.as_bytes(),
                Some("https://oidc.example.com/openid/v1/jwks"),
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
            .validate(body.as_bytes(), Some("https://a/\"b"))
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
                Document::Discovery.validate(body.as_bytes(), None).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn jwks_requires_an_object_with_a_non_empty_keys_array() {
        assert!(Document::Jwks
            .validate(br#"{"keys":[{"kty":"RSA"}]}"#, None)
            .is_ok());
        assert_eq!(
            Document::Jwks.validate(br#"{"keys":[]}"#, None),
            Err(InvalidBody::NoKeys)
        );
        assert_eq!(
            Document::Jwks.validate(b" {\"keys\" : [ ] , \"x\":1}", None),
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
                Document::Jwks.validate(body.as_bytes(), None).is_err(),
                "{body}"
            );
        }
    }
}
