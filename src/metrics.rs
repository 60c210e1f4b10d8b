//! Metrics: their names, and their ids in one VM. Envoy shows them at admin `/stats` as
//! `wasmcustom.<name>` and at `/stats/prometheus` as `<name>` with dots turned into underscores.
//!
//! The per-document metrics of an `issuers` entry carry its name
//! (`kube_oidc_discovery.<name>.requests.jwks.fresh`); those of the single-issuer form do not
//! (`kube_oidc_discovery.requests.jwks.fresh`). The 404 and 405 counters belong to no issuer.

use crate::answer::Outcome;
use crate::document::Document;
use crate::host::{Host, HostError, MetricKind};
use crate::upstream::FetchResult;

pub const PREFIX: &str = "kube_oidc_discovery";

/// Counter: requests on a served host for any other path (404).
pub fn not_found() -> String {
    format!("{PREFIX}.requests.not_found")
}

/// Counter: other methods on the document paths (405).
pub fn method_not_allowed() -> String {
    format!("{PREFIX}.requests.method_not_allowed")
}

/// The names of one issuer's per-document metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// `issuer`: the `issuers` entry's name; None in the single-issuer form.
    pub fn new(issuer: Option<&str>) -> Names {
        let prefix = match issuer {
            Some(name) => format!("{PREFIX}.{name}"),
            None => PREFIX.to_string(),
        };
        Names { prefix }
    }

    /// Counter: requests for a document, by outcome.
    pub fn requests(&self, doc: Document, outcome: Outcome) -> String {
        format!("{}.requests.{}.{}", self.prefix, doc.name(), outcome.name())
    }

    /// Counter: upstream fetches of a document, by result.
    pub fn fetches(&self, doc: Document, result: FetchResult) -> String {
        format!("{}.upstream.{}.{}", self.prefix, doc.name(), result.name())
    }

    /// Histogram: upstream fetch latency in milliseconds.
    pub fn fetch_latency(&self, doc: Document) -> String {
        format!("{}.upstream.{}.latency_ms", self.prefix, doc.name())
    }

    /// Gauge: age of the shared copy in seconds.
    pub fn copy_age(&self, doc: Document) -> String {
        format!("{}.copy.{}.age_s", self.prefix, doc.name())
    }
}

/// The 404 and 405 counters' ids in one VM.
#[derive(Debug)]
pub struct Routing {
    not_found: u32,
    method_not_allowed: u32,
}

impl Routing {
    pub fn define(host: &impl Host) -> Result<Routing, HostError> {
        Ok(Routing {
            not_found: host.define_metric(MetricKind::Counter, &not_found())?,
            method_not_allowed: host.define_metric(MetricKind::Counter, &method_not_allowed())?,
        })
    }

    pub fn not_found(&self, host: &impl Host) {
        host.increment_metric(self.not_found);
    }

    pub fn method_not_allowed(&self, host: &impl Host) {
        host.increment_metric(self.method_not_allowed);
    }
}

/// One issuer's per-document metric ids in one VM (Envoy maps equal names to one process-wide
/// stat). The tables are indexed with [`Document::index`], [`Outcome::index`],
/// [`FetchResult::index`].
#[derive(Debug)]
pub struct Ids {
    requests: Vec<Vec<u32>>,
    fetches: Vec<Vec<u32>>,
    latency: Vec<u32>,
    age: Vec<u32>,
}

impl Ids {
    pub fn define(host: &impl Host, names: &Names) -> Result<Ids, HostError> {
        let per_doc = |kind, name: &dyn Fn(Document) -> String| -> Result<Vec<u32>, HostError> {
            Document::ALL
                .into_iter()
                .map(|d| host.define_metric(kind, &name(d)))
                .collect()
        };
        Ok(Ids {
            requests: counters_by_doc(host, &Outcome::ALL, |d, o| names.requests(d, o))?,
            fetches: counters_by_doc(host, &FetchResult::ALL, |d, r| names.fetches(d, r))?,
            latency: per_doc(MetricKind::Histogram, &|d| names.fetch_latency(d))?,
            age: per_doc(MetricKind::Gauge, &|d| names.copy_age(d))?,
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
    name: impl Fn(Document, L) -> String,
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

    /// Every per-document metric name of one issuer.
    fn per_doc(names: &Names) -> Vec<String> {
        let mut all = Vec::new();
        for doc in Document::ALL {
            all.extend(Outcome::ALL.iter().map(|o| names.requests(doc, *o)));
            all.extend(FetchResult::ALL.iter().map(|r| names.fetches(doc, *r)));
            all.push(names.fetch_latency(doc));
            all.push(names.copy_age(doc));
        }
        all
    }

    /// Every metric name of a configuration with these issuer names.
    fn all(issuers: &[Option<&str>]) -> Vec<String> {
        let mut names = vec![not_found(), method_not_allowed()];
        for i in issuers {
            names.extend(per_doc(&Names::new(*i)));
        }
        names
    }

    fn kind_of(name: &str) -> MetricKind {
        if name.ends_with("latency_ms") {
            MetricKind::Histogram
        } else if name.ends_with("age_s") {
            MetricKind::Gauge
        } else {
            MetricKind::Counter
        }
    }

    #[test]
    fn each_id_counts_the_metric_of_its_name() {
        let vm = Process::at(0).vm("{}");
        let host = vm.host();
        let kinds = host.metric_names();
        assert_eq!(kinds.len(), all(&[None]).len());
        for name in all(&[None]) {
            let kind = kinds.iter().find(|(_, n)| *n == name).map(|(k, _)| *k);
            assert_eq!(kind, Some(kind_of(&name)), "{name}");
        }
        let names = Names::new(None);
        let ids = Ids::define(host, &names).unwrap();
        for doc in Document::ALL {
            for o in Outcome::ALL {
                let before = host.metric(&names.requests(doc, o));
                ids.request(host, doc, o);
                assert_eq!(
                    host.metric(&names.requests(doc, o)),
                    before + 1,
                    "{doc} {o:?}"
                );
            }
            for r in FetchResult::ALL {
                ids.fetch(host, doc, r);
                assert_eq!(host.metric(&names.fetches(doc, r)), 1, "{doc} {r:?}");
            }
            ids.latency(host, doc, 7 + doc.index() as u64);
            assert_eq!(
                host.metric(&names.fetch_latency(doc)),
                7 + doc.index() as u64
            );
            ids.age(host, doc, 9 + doc.index() as u64);
            assert_eq!(host.metric(&names.copy_age(doc)), 9 + doc.index() as u64);
        }
        let routing = Routing::define(host).unwrap();
        routing.not_found(host);
        routing.method_not_allowed(host);
        routing.method_not_allowed(host);
        assert_eq!(host.metric(&not_found()), 1);
        assert_eq!(host.metric(&method_not_allowed()), 2);
    }

    #[test]
    fn the_issuers_form_defines_each_issuers_metrics_under_its_name() {
        let vm = Process::at(0).vm(
            r#"{"issuers":[{"name":"prod","issuer":"https://o.example/p","cluster":"a"},
                           {"name":"dev","issuer":"https://o.example/d","cluster":"b"}]}"#,
        );
        let mut defined: Vec<String> = vm
            .host()
            .metric_names()
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        let mut want = all(&[Some("prod"), Some("dev")]);
        defined.sort();
        want.sort();
        assert_eq!(defined, want, "no unnamed per-document metric in this form");
    }

    #[test]
    fn names_are_stable() {
        let single = Names::new(None);
        assert_eq!(
            single.requests(Document::Jwks, Outcome::Fresh),
            "kube_oidc_discovery.requests.jwks.fresh"
        );
        assert_eq!(
            single.fetches(Document::Discovery, FetchResult::Timeout),
            "kube_oidc_discovery.upstream.discovery.timeout"
        );
        assert_eq!(
            single.copy_age(Document::Jwks),
            "kube_oidc_discovery.copy.jwks.age_s"
        );
        let prod = Names::new(Some("prod"));
        assert_eq!(
            prod.requests(Document::Jwks, Outcome::Stale),
            "kube_oidc_discovery.prod.requests.jwks.stale"
        );
        assert_eq!(
            prod.fetches(Document::Discovery, FetchResult::Ok),
            "kube_oidc_discovery.prod.upstream.discovery.ok"
        );
        assert_eq!(
            prod.fetch_latency(Document::Jwks),
            "kube_oidc_discovery.prod.upstream.jwks.latency_ms"
        );
        assert_eq!(
            prod.copy_age(Document::Discovery),
            "kube_oidc_discovery.prod.copy.discovery.age_s"
        );
        assert_eq!(not_found(), "kube_oidc_discovery.requests.not_found");
        let all = all(&[None, Some("prod")]);
        assert_eq!(
            all.len(),
            2 + 2 * 2 * (Outcome::ALL.len() + FetchResult::ALL.len() + 2)
        );
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len());
    }
}
