//! Document validation and the `jwks_uri` rewrite. Input: a first line with the `jwks_uri`
//! override (empty: none), then the body. An accepted body is the document it claims to be and is
//! published byte for byte; the rewrite changes the bytes of the `jwks_uri` value and nothing
//! else, and never changes whether a body is accepted.
#![no_main]

use kube_oidc_discovery::document::Document;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (first, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let uri = String::from_utf8_lossy(first);
    let uri = (!uri.is_empty()).then_some(uri.as_ref());
    // serde_json cannot hold every number in a Value (1e999): those bodies skip the Value checks.
    let value: Option<Value> = serde_json::from_slice(body).ok();

    if let Ok(out) = Document::Jwks.validate(body, uri) {
        assert_eq!(out, body, "a JWKS is published byte for byte");
        if let Some(v) = &value {
            let keys = v.get("keys").and_then(Value::as_array);
            assert!(keys.is_some_and(|k| !k.is_empty()), "{v}");
        }
    }

    let plain = Document::Discovery.validate(body, None);
    let rewritten = Document::Discovery.validate(body, uri);
    assert_eq!(
        plain.is_ok(),
        rewritten.is_ok(),
        "the rewrite changed acceptance"
    );
    let Ok(out) = plain else { return };
    assert_eq!(
        out, body,
        "without an override the body is kept byte for byte"
    );
    if let Some(v) = &value {
        assert!(v.get("issuer").is_some_and(Value::is_string), "{v}");
        assert!(v.get("jwks_uri").is_some_and(Value::is_string), "{v}");
    }
    let (Some(uri), Ok(out)) = (uri, rewritten) else {
        return;
    };
    let new = serde_json::to_vec(uri).unwrap();
    // Some split of `out` is body's prefix, the new value, body's suffix.
    let same_prefix = body.iter().zip(&out).take_while(|(a, b)| a == b).count();
    let spliced = (0..=same_prefix).any(|p| {
        out.get(p..p + new.len()) == Some(&new[..])
            && body.ends_with(&out[p + new.len()..])
            && body.len() >= p + (out.len() - p - new.len())
    });
    assert!(spliced, "bytes other than the jwks_uri value changed");
    if let Some(mut before) = value {
        let mut after: Value = serde_json::from_slice(&out).expect("the rewrite is JSON");
        assert_eq!(after["jwks_uri"], uri);
        after.as_object_mut().unwrap().remove("jwks_uri");
        before.as_object_mut().unwrap().remove("jwks_uri");
        assert_eq!(after, before, "a member other than jwks_uri changed");
    }
});
