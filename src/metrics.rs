//! Metric names. Envoy shows them at admin `/stats` as `wasmcustom.<name>` and at
//! `/stats/prometheus` as `<name>` with dots turned into underscores.

use crate::answer::Outcome;
use crate::document::Document;
use crate::upstream::FetchResult;

pub const PREFIX: &str = "kube_oidc_discovery";

/// Counter: requests for a document, by outcome.
pub fn requests(doc: Document, outcome: Outcome) -> String {
    format!("{PREFIX}.requests.{}.{}", doc.name(), outcome.name())
}

/// Counter: requests on a served host for any other path (404).
pub fn not_found() -> String {
    format!("{PREFIX}.requests.not_found")
}

/// Counter: other methods on the two paths (405).
pub fn method_not_allowed() -> String {
    format!("{PREFIX}.requests.method_not_allowed")
}

/// Counter: upstream fetches of a document, by result.
pub fn fetches(doc: Document, result: FetchResult) -> String {
    format!("{PREFIX}.upstream.{}.{}", doc.name(), result.name())
}

/// Histogram: upstream fetch latency in milliseconds.
pub fn fetch_latency(doc: Document) -> String {
    format!("{PREFIX}.upstream.{}.latency_ms", doc.name())
}

/// Gauge: age of the shared copy in seconds.
pub fn copy_age(doc: Document) -> String {
    format!("{PREFIX}.copy.{}.age_s", doc.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric name.
    fn all() -> Vec<String> {
        let mut names = vec![not_found(), method_not_allowed()];
        for doc in Document::ALL {
            names.extend(Outcome::ALL.iter().map(|o| requests(doc, *o)));
            names.extend(FetchResult::ALL.iter().map(|r| fetches(doc, *r)));
            names.push(fetch_latency(doc));
            names.push(copy_age(doc));
        }
        names
    }

    #[test]
    fn names_are_stable() {
        assert_eq!(
            requests(Document::Jwks, Outcome::Fresh),
            "kube_oidc_discovery.requests.jwks.fresh"
        );
        assert_eq!(
            fetches(Document::Discovery, FetchResult::Timeout),
            "kube_oidc_discovery.upstream.discovery.timeout"
        );
        assert_eq!(
            copy_age(Document::Jwks),
            "kube_oidc_discovery.copy.jwks.age_s"
        );
        let all = all();
        assert_eq!(all.len(), 2 + 2 * (4 + 6 + 2));
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len());
    }
}
