//! Metrics: their names, and their ids in one VM. Envoy shows them at admin `/stats` as
//! `wasmcustom.<name>` and at `/stats/prometheus` as `<name>` with dots turned into underscores.

use crate::answer::Outcome;
use crate::document::Document;
use crate::host::{Host, HostError, MetricKind};
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

/// Every metric's id, defined once per VM (Envoy maps equal names to one process-wide stat).
/// The tables are indexed with [`Document::index`], [`Outcome::index`], [`FetchResult::index`].
#[derive(Debug)]
pub struct Ids {
    requests: Vec<Vec<u32>>,
    fetches: Vec<Vec<u32>>,
    latency: Vec<u32>,
    age: Vec<u32>,
    not_found: u32,
    method_not_allowed: u32,
}

impl Ids {
    pub fn define(host: &impl Host) -> Result<Ids, HostError> {
        let per_doc = |kind, name: fn(Document) -> String| -> Result<Vec<u32>, HostError> {
            Document::ALL
                .into_iter()
                .map(|d| host.define_metric(kind, &name(d)))
                .collect()
        };
        Ok(Ids {
            requests: counters_by_doc(host, &Outcome::ALL, requests)?,
            fetches: counters_by_doc(host, &FetchResult::ALL, fetches)?,
            latency: per_doc(MetricKind::Histogram, fetch_latency)?,
            age: per_doc(MetricKind::Gauge, copy_age)?,
            not_found: host.define_metric(MetricKind::Counter, &not_found())?,
            method_not_allowed: host.define_metric(MetricKind::Counter, &method_not_allowed())?,
        })
    }

    pub fn request(&self, host: &impl Host, doc: Document, outcome: Outcome) {
        let id = self.requests.get(doc.index());
        count(host, id.and_then(|v| v.get(outcome.index())));
    }

    pub fn fetch(&self, host: &impl Host, doc: Document, result: FetchResult) {
        let id = self.fetches.get(doc.index());
        count(host, id.and_then(|v| v.get(result.index())));
    }

    pub fn not_found(&self, host: &impl Host) {
        count(host, Some(&self.not_found));
    }

    pub fn method_not_allowed(&self, host: &impl Host) {
        count(host, Some(&self.method_not_allowed));
    }

    pub fn latency(&self, host: &impl Host, doc: Document, ms: u64) {
        if let Some(id) = self.latency.get(doc.index()) {
            host.record_metric(*id, ms);
        }
    }

    pub fn age(&self, host: &impl Host, doc: Document, seconds: u64) {
        if let Some(id) = self.age.get(doc.index()) {
            host.record_metric(*id, seconds);
        }
    }
}

/// One counter per document and label, indexed by [`Document::index`], then the label's index.
fn counters_by_doc<L: Copy>(
    host: &impl Host,
    labels: &[L],
    name: fn(Document, L) -> String,
) -> Result<Vec<Vec<u32>>, HostError> {
    Document::ALL
        .into_iter()
        .map(|d| {
            labels
                .iter()
                .map(|l| host.define_metric(MetricKind::Counter, &name(d, *l)))
                .collect()
        })
        .collect()
}

fn count(host: &impl Host, id: Option<&u32>) {
    if let Some(id) = id {
        host.increment_metric(*id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::Process;

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
    fn each_id_counts_the_metric_of_its_name() {
        let vm = Process::at(0).vm("{}");
        let host = vm.host();
        let kinds = host.metric_names();
        assert_eq!(kinds.len(), all().len());
        for name in all() {
            let kind = kinds.iter().find(|(_, n)| *n == name).map(|(k, _)| *k);
            let want = if name.ends_with("latency_ms") {
                MetricKind::Histogram
            } else if name.ends_with("age_s") {
                MetricKind::Gauge
            } else {
                MetricKind::Counter
            };
            assert_eq!(kind, Some(want), "{name}");
        }
        let ids = Ids::define(host).unwrap();
        for doc in Document::ALL {
            for o in Outcome::ALL {
                let before = host.metric(&requests(doc, o));
                ids.request(host, doc, o);
                assert_eq!(host.metric(&requests(doc, o)), before + 1, "{doc} {o:?}");
            }
            for r in FetchResult::ALL {
                ids.fetch(host, doc, r);
                assert_eq!(host.metric(&fetches(doc, r)), 1, "{doc} {r:?}");
            }
            ids.latency(host, doc, 7 + doc.index() as u64);
            assert_eq!(host.metric(&fetch_latency(doc)), 7 + doc.index() as u64);
            ids.age(host, doc, 9 + doc.index() as u64);
            assert_eq!(host.metric(&copy_age(doc)), 9 + doc.index() as u64);
        }
        ids.not_found(host);
        ids.method_not_allowed(host);
        ids.method_not_allowed(host);
        assert_eq!(host.metric(&not_found()), 1);
        assert_eq!(host.metric(&method_not_allowed()), 2);
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
