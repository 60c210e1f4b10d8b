//! The shared-data encodings (stored copy, schedule). What the filter stores decodes to itself;
//! bytes that are not exactly an encoding (garbage, another version, a torn write) never decode:
//! whatever decodes encodes back to the same bytes.
#![no_main]

use kube_oidc_discovery::document::{Document, Expect};
use kube_oidc_discovery::policy::Schedule;
use kube_oidc_discovery::shared::StoredCopy;
use kube_oidc_discovery::upstream::{self, Fetched, ResponseHead};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

const JWKS: &[u8] = br#"{"keys":[{"kid":"a"}]}"#;

fuzz_target!(|data: &[u8]| {
    if let Some(copy) = StoredCopy::decode(data) {
        assert_eq!(
            copy.encode(),
            data,
            "decoded from bytes that are not its encoding"
        );
    }
    if let Some(schedule) = Schedule::decode(data) {
        assert_eq!(
            schedule.encode(),
            data,
            "decoded from bytes that are not its encoding"
        );
    }

    let mut u = Unstructured::new(data);
    let schedule = Schedule {
        next_due_ms: u.arbitrary().unwrap_or_default(),
        failures: u.arbitrary().unwrap_or_default(),
        lease_until_ms: u.arbitrary().unwrap_or_default(),
        last_error: u.arbitrary().unwrap_or_default(),
    };
    assert_eq!(Schedule::decode(&schedule.encode()), Some(schedule));

    // A copy as the filter makes one: headers as the upstream check keeps them, any body.
    let fetched_at: u64 = u.arbitrary().unwrap_or_default();
    let content_type: Option<String> = u.arbitrary().unwrap_or_default();
    let cache_control: Option<String> = u.arbitrary().unwrap_or_default();
    let body: Vec<u8> = u.arbitrary().unwrap_or_default();
    let head = ResponseHead {
        status: Some("200".into()),
        content_type,
        cache_control,
        body_size: JWKS.len(),
    };
    let accepted = upstream::accept(Document::Jwks, &head, |_| JWKS.to_vec(), &Expect::default());
    let fetched = Fetched {
        body,
        ..accepted.expect("a valid JWKS is accepted")
    };
    let copy = StoredCopy::new(fetched, fetched_at);
    assert_eq!(StoredCopy::decode(&copy.encode()), Some(copy));
});
