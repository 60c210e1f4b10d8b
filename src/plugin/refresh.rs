//! Keeping the shared copy fresh: the tick, the fetch lease, the upstream calls and what their
//! results do to the copy, the schedule and the waiters.
//!
//! Upstream calls are always made by the root context, which lives as long as the VM: a client
//! that disconnects never cancels a fetch other requests are waiting for. A request that finds no
//! usable copy registers as a waiter and shortens the tick so that the fetch starts at once.

use super::tick::Cause;
use super::{LocalIssuer, Plugin};
use crate::classify::IssuerId;
use crate::clock;
use crate::config::IssuerConfig;
use crate::document::{Document, Expect};
use crate::host::Host;
use crate::policy;
use crate::shared::{self, StoredCopy};
use crate::upstream::{self, FetchError, FetchResult, ResponseHead};
use log::{debug, warn};

/// An upstream call in flight: which issuer and document, and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InFlight {
    issuer: IssuerId,
    doc: Document,
    started_ms: u64,
}

impl<H: Host> Plugin<H> {
    /// The root's tick: fetch what is due if this VM takes the lease (each issuer's document
    /// on its own schedule), report the copies' age, settle waiters, and choose the next tick
    /// period.
    pub fn on_tick(&self) {
        let now = self.host.now_ms();
        let lease = policy::lease(&self.cfg);
        for (i, state) in self.issuers.iter().enumerate() {
            for (doc, keys) in Document::ALL.into_iter().zip(&state.keys) {
                if self.shared().try_lease(keys, now, lease) {
                    self.fetch(IssuerId(i), doc, now);
                }
                let fetched_at = state.with_copy(&self.shared(), doc, |c| c.fetched_at_ms);
                if let Some(fetched_at) = fetched_at {
                    state
                        .metrics
                        .age(&self.host, doc, clock::age_s(fetched_at, now));
                }
            }
        }
        let more = self.settle_waiters(now);
        let waiting = self.waiters.any();
        self.tick.set(&self.host, Cause::Ticked { more, waiting });
    }

    /// The response to one of our calls. `head` and `read_body(max)` read it from the host, and
    /// only for a call of ours; the body only as far as [`upstream::accept`] needs.
    pub fn on_call_response(
        &self,
        token: u32,
        head: impl FnOnce() -> ResponseHead,
        read_body: impl FnOnce(usize) -> Vec<u8>,
    ) {
        let call = self
            .inflight
            .try_borrow_mut()
            .ok()
            .and_then(|mut m| m.remove(&token));
        let Some(InFlight {
            issuer,
            doc,
            started_ms,
        }) = call
        else {
            return;
        };
        let Some((cfg, state)) = self.issuer(issuer) else {
            return;
        };
        let now = self.host.now_ms();
        state
            .metrics
            .latency(&self.host, doc, now.saturating_sub(started_ms));
        let head = head();
        let expect = Expect {
            issuer: cfg.url.as_deref(),
            jwks_uri: cfg.jwks_uri.as_deref(),
        };
        let (result, excerpt) = match upstream::accept(doc, &head, read_body, &expect) {
            Ok(_) if doc == Document::Jwks && self.shared().mismatched(&state.mismatch) => {
                (Err(FetchError::Unverified), String::new())
            }
            Ok(fetched) => (Ok(StoredCopy::new(fetched, now)), String::new()),
            Err(refused) => (Err(refused.error), refused.excerpt),
        };
        if doc == Document::Discovery && expect.issuer.is_some() {
            self.vouch(state, now, &result);
        }
        self.complete(issuer, doc, now, result, &excerpt);
    }

    /// The key set names no issuer: the discovery document fetched through the same cluster
    /// vouches for it. While that names another issuer (a misrouted cluster, another API
    /// server), the issuer's key set is dropped and none is stored; once it names the right one
    /// again, the key set is fetched at once.
    fn vouch(&self, state: &LocalIssuer, now: u64, discovery: &Result<StoredCopy, FetchError>) {
        let mismatched = match discovery {
            Ok(_) => false,
            Err(e) if e.result() == FetchResult::IssuerMismatch => true,
            Err(_) => return, // says nothing of whom the cluster reaches
        };
        let Some(jwks) = state.keys(Document::Jwks) else {
            return;
        };
        if self.shared().set_mismatched(&state.mismatch, mismatched) {
            if mismatched {
                self.shared().drop_copy(jwks);
            }
            self.shared().make_due(jwks, now);
        }
    }

    fn fetch(&self, issuer: IssuerId, doc: Document, now: u64) {
        let Some(cfg) = self.cfg.issuer(issuer) else {
            return;
        };
        let headers = upstream::request_headers(cfg, doc);
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match self.host.dispatch(&cfg.cluster, &pairs, self.cfg.timeout) {
            Ok(token) => {
                if let Ok(mut m) = self.inflight.try_borrow_mut() {
                    let call = InFlight {
                        issuer,
                        doc,
                        started_ms: now,
                    };
                    m.insert(token, call);
                }
            }
            Err(_) => self.complete(issuer, doc, now, Err(FetchError::Dispatch), ""),
        }
    }

    /// Records a fetch's result in the issuer's shared data and answers the waiters that can now
    /// be answered.
    fn complete(
        &self,
        issuer: IssuerId,
        doc: Document,
        now: u64,
        result: Result<StoredCopy, FetchError>,
        excerpt: &str,
    ) {
        let Some((cfg, state)) = self.issuer(issuer) else {
            return;
        };
        let Some(keys) = state.keys(doc) else {
            return;
        };
        let interval = self.cfg.refresh_interval;
        let label = label(cfg);
        match result {
            Ok(copy) => {
                state.metrics.fetch(&self.host, doc, FetchResult::Ok);
                debug!(
                    "kube-oidc-discovery: {label}fetched {doc} ({} bytes, etag {})",
                    copy.body.len(),
                    copy.etag
                );
                self.shared().store_copy(keys, &copy);
                self.shared().finish(keys, now, Ok(()), |_| interval);
            }
            Err(e) => {
                state.metrics.fetch(&self.host, doc, e.result());
                warn!(
                    "kube-oidc-discovery: {label}fetching {doc} from cluster {:?} failed: {e}{}{excerpt}",
                    cfg.cluster,
                    if excerpt.is_empty() {
                        ""
                    } else {
                        "; upstream body: "
                    }
                );
                let jitter = shared::fnv1a64(&[&now.to_le_bytes(), &self.root_id.to_le_bytes()]);
                self.shared()
                    .finish(keys, now, Err(e.client_status()), |f| {
                        policy::backoff(f, interval, jitter)
                    });
            }
        }
        self.settle_waiters(now);
    }
}

/// `issuer <name>: ` for an `issuers` entry, to begin its log lines; empty otherwise.
fn label(issuer: &IssuerConfig) -> String {
    match &issuer.name {
        Some(name) => format!("issuer {name}: "),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Outcome;
    use crate::host::fake::{
        jwks_of, logs, warm_fleet, Call, Process, DEV, FLEET, JWKS, PROD, TOKEN,
    };
    use crate::metrics;
    use crate::plugin::tick::{IDLE_TICK, KICK_TICK, WAIT_TICK};
    use std::time::Duration;

    const CONFIG: &str = r#"{"hosts":["oidc.example.com"],"token_env":"T","timeout_ms":2000,
        "refresh_interval_s":60,"cluster":"api"}"#;
    const HOST: &str = "oidc.example.com";
    const JWKS_PATH: &str = "/openid/v1/jwks";

    fn fetches(vm: &Plugin<crate::host::fake::FakeHost>, doc: Document, r: FetchResult) -> u64 {
        vm.host().metric(&metrics::Names::new(None).fetches(doc, r))
    }

    #[test]
    fn the_first_tick_prefetches_both_then_refreshes_on_schedule() {
        let p = Process::at(1_000_000);
        let vm = p.vm(CONFIG);
        assert_eq!(vm.host().ticks(), [KICK_TICK]);
        vm.tick_now();
        let calls = vm.host().take_calls();
        let paths: Vec<_> = calls.iter().map(|c| c.path()).collect();
        assert_eq!(paths, [Document::Discovery.path(), Document::Jwks.path()]);
        for c in &calls {
            assert_eq!(
                (c.cluster.as_str(), c.timeout),
                ("api", Duration::from_secs(2))
            );
            let bearer = format!("Bearer {TOKEN}");
            assert!(c
                .headers
                .iter()
                .any(|(n, v)| n == "authorization" && *v == bearer));
        }
        p.advance(35);
        for c in &calls {
            vm.respond_ok(c);
        }
        for doc in Document::ALL {
            assert_eq!(fetches(&vm, doc, FetchResult::Ok), 1);
            assert_eq!(
                vm.host()
                    .metric(&metrics::Names::new(None).fetch_latency(doc)),
                35
            );
        }
        vm.tick_now();
        assert_eq!(vm.host().tick(), Some(IDLE_TICK));
        // next refresh: refresh_interval_s after the fetch completed
        p.advance(59_999);
        vm.tick_now();
        assert!(vm.host().take_calls().is_empty(), "not due yet");
        assert_eq!(
            vm.host()
                .metric(&metrics::Names::new(None).copy_age(Document::Jwks)),
            59
        );
        p.advance(1);
        vm.tick_now();
        assert_eq!(vm.host().take_calls().len(), 2, "due");
    }

    #[test]
    fn a_response_that_is_not_ours_is_ignored() {
        let vm = Process::at(1_000_000).vm(CONFIG);
        vm.respond(4242, "200", "application/json", JWKS);
        assert_eq!(fetches(&vm, Document::Jwks, FetchResult::Ok), 0);
        vm.request(5, HOST, "GET", JWKS_PATH);
        assert!(vm.host().take_replies().is_empty(), "no copy was stored");
    }

    #[test]
    fn a_failed_dispatch_answers_the_waiters_and_backs_off() {
        let p = Process::at(1_000_000);
        let vm = p.vm(CONFIG);
        vm.host().refuse_dispatch.set(true);
        vm.request(5, HOST, "GET", JWKS_PATH);
        let ((), lines) = logs(|| vm.tick_now());
        assert_eq!(vm.host().take_answers(), [(5, 503)]);
        assert_eq!(fetches(&vm, Document::Jwks, FetchResult::Unavailable), 1);
        assert!(lines.iter().any(|(level, line)| *level == log::Level::Warn
            && line.contains(
                "fetching jwks from cluster \"api\" failed: the call could not be dispatched"
            )));
        // backoff after one failure: 1 s
        p.advance(999);
        vm.tick_now();
        assert_eq!(fetches(&vm, Document::Jwks, FetchResult::Unavailable), 1);
        p.advance(1);
        vm.host().refuse_dispatch.set(false);
        vm.tick_now();
        assert_eq!(vm.host().take_calls().len(), 2);
    }

    #[test]
    fn a_lease_that_expires_while_a_call_hangs_lets_another_vm_fetch() {
        let p = Process::at(1_000_000);
        let (a, b) = (p.vm(CONFIG), p.vm(CONFIG));
        a.tick_now();
        let hung = a.host().take_calls();
        assert_eq!(hung.len(), 2);
        p.advance(2_999);
        b.tick_now();
        assert!(
            b.host().take_calls().is_empty(),
            "the lease (timeout + 1 s) still holds"
        );
        p.advance(1);
        b.tick_now();
        let calls = b.host().take_calls();
        assert_eq!(calls.len(), 2, "the lease ran out: b fetches");
        a.tick_now();
        assert!(a.host().take_calls().is_empty(), "b holds the lease now");
        // a's call answers at last, then b's: the copy is b's, the newer
        a.respond(
            hung[1].token,
            "200",
            "application/json",
            br#"{"keys":[{"kid":"old"}]}"#,
        );
        p.advance(10);
        b.respond_ok(&calls[1]);
        a.request(5, HOST, "GET", JWKS_PATH);
        assert_eq!(a.host().take_replies()[0].body.as_deref(), Some(JWKS));
    }

    #[test]
    fn two_vms_racing_for_the_lease_fetch_once_and_both_answer() {
        let p = Process::at(1_000_000);
        let (a, b) = (p.vm(CONFIG), p.vm(CONFIG));
        a.request(5, HOST, "GET", JWKS_PATH);
        b.request(6, HOST, "GET", JWKS_PATH);
        a.tick_now();
        b.tick_now();
        let calls = a.host().take_calls();
        assert_eq!(calls.len(), 2);
        assert!(
            b.host().take_calls().is_empty(),
            "one fetch per document per process"
        );
        assert_eq!(b.host().tick(), Some(WAIT_TICK), "b watches for a's fetch");
        p.advance(15);
        a.respond_ok(&calls[1]);
        assert_eq!(a.host().take_replies()[0].context_id, 5);
        assert!(b.host().take_replies().is_empty());
        p.advance(5);
        b.tick_now();
        let r = b.host().take_replies();
        assert_eq!((r[0].context_id, r[0].status), (6, 200));
        assert_eq!(r[0].body.as_deref(), Some(JWKS));
        assert_eq!(b.host().tick(), Some(IDLE_TICK));
        assert_eq!(
            fetches(&b, Document::Jwks, FetchResult::Ok),
            0,
            "b never fetched"
        );
        let fresh = metrics::Names::new(None).requests(Document::Jwks, Outcome::Fresh);
        assert_eq!(b.host().metric(&fresh), 1, "b's own counter");
    }

    #[test]
    fn an_empty_key_set_is_not_stored_and_the_last_good_copy_is_served() {
        let p = Process::at(1_000_000);
        let vm = p.vm(CONFIG);
        vm.tick_now();
        for call in vm.host().take_calls() {
            vm.respond_ok(&call);
        }
        p.advance(60_000);
        vm.tick_now();
        let calls = vm.host().take_calls();
        assert_eq!(calls.len(), 2, "the refresh");
        vm.respond(
            calls[1].token,
            "200",
            "application/jwk-set+json",
            br#"{"keys":[]}"#,
        );
        assert_eq!(fetches(&vm, Document::Jwks, FetchResult::InvalidBody), 1);
        vm.request(5, HOST, "GET", JWKS_PATH);
        let r = vm.host().take_replies().remove(0);
        assert_eq!((r.status, r.body.as_deref()), (200, Some(JWKS)));
    }

    #[test]
    fn upstream_failures_are_logged_with_an_excerpt_and_never_the_token() {
        let p = Process::at(1_000_000);
        let (vm, lines) = logs(|| {
            let vm = p.vm(CONFIG);
            vm.tick_now();
            let calls = vm.host().take_calls();
            vm.respond(
                calls[0].token,
                "401",
                "application/json",
                b"{\"message\":\"Unauthorized\"}",
            );
            vm.respond(calls[1].token, "200", "text/html", b"<html>login</html>");
            vm
        });
        assert_eq!(fetches(&vm, Document::Discovery, FetchResult::HttpError), 1);
        assert_eq!(fetches(&vm, Document::Jwks, FetchResult::InvalidBody), 1);
        let warns: Vec<_> = lines
            .iter()
            .filter(|(l, _)| *l == log::Level::Warn)
            .collect();
        assert_eq!(warns.len(), 2, "{lines:?}");
        assert!(warns[0].1.contains(
            "the API server answered 401; upstream body: {\"message\":\"Unauthorized\"}"
        ));
        assert!(warns[1].1.contains("body is not a JSON object"));
        assert!(lines.iter().all(|(_, l)| !l.contains(TOKEN)), "{lines:?}");
    }

    /// The calls of one tick, by cluster.
    fn by_cluster(calls: Vec<Call>, cluster: &str) -> Vec<Call> {
        calls.into_iter().filter(|c| c.cluster == cluster).collect()
    }

    fn issuer_fetches(
        vm: &Plugin<crate::host::fake::FakeHost>,
        name: &str,
        doc: Document,
        r: FetchResult,
    ) -> u64 {
        vm.host()
            .metric(&metrics::Names::new(Some(name)).fetches(doc, r))
    }

    #[test]
    fn each_issuer_is_fetched_from_its_cluster_at_the_root_paths_with_its_own_credential() {
        let vm = Process::at(1_000_000).vm(FLEET);
        vm.tick_now();
        let calls = vm.host().take_calls();
        let got: Vec<_> = calls
            .iter()
            .map(|c| (c.cluster.as_str(), c.path()))
            .collect();
        assert_eq!(
            got,
            [
                ("prod-api", Document::Discovery.path()),
                ("prod-api", Document::Jwks.path()),
                ("dev-api", Document::Discovery.path()),
                ("dev-api", Document::Jwks.path()),
            ]
        );
        let header = |c: &Call, name: &str| {
            c.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        for c in &calls {
            let prod = c.cluster == "prod-api";
            let bearer = prod.then(|| format!("Bearer {TOKEN}"));
            assert_eq!(header(c, "authorization"), bearer, "{c:?}");
            let authority = if prod {
                "api.prod.internal"
            } else {
                "kubernetes.default.svc"
            };
            assert_eq!(header(c, ":authority").as_deref(), Some(authority));
        }
    }

    #[test]
    fn one_issuers_failure_and_backoff_leave_the_other_untouched() {
        let p = Process::at(1_000_000);
        let vm = warm_fleet(&p);
        p.advance(60_000);
        let ((), lines) = logs(|| {
            vm.tick_now();
            for c in vm.host().take_calls() {
                if c.cluster == "prod-api" {
                    vm.respond(c.token, "503", "text/plain", b"upstream connect error");
                } else {
                    vm.respond_as(&c, DEV);
                }
            }
        });
        let warns: Vec<_> = lines
            .iter()
            .filter(|(l, _)| *l == log::Level::Warn)
            .collect();
        assert_eq!(warns.len(), 2, "{lines:?}");
        assert!(
            warns
                .iter()
                .all(|(_, l)| l.starts_with("kube-oidc-discovery: issuer prod: fetching ")),
            "{warns:?}"
        );
        for doc in Document::ALL {
            assert_eq!(
                issuer_fetches(&vm, "prod", doc, FetchResult::Unavailable),
                1
            );
            assert_eq!(issuer_fetches(&vm, "dev", doc, FetchResult::Unavailable), 0);
            assert_eq!(issuer_fetches(&vm, "dev", doc, FetchResult::Ok), 2);
        }
        // prod retries after 1 s of backoff; dev is next due a refresh interval later
        p.advance(1_000);
        vm.tick_now();
        let calls = vm.host().take_calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls.iter().all(|c| c.cluster == "prod-api"));
        p.advance(59_000);
        vm.tick_now();
        assert_eq!(by_cluster(vm.host().take_calls(), "dev-api").len(), 2);
    }

    #[test]
    fn a_missing_cluster_fails_only_its_issuer() {
        let p = Process::at(1_000_000);
        let vm = p.vm(FLEET);
        vm.host()
            .missing_clusters
            .borrow_mut()
            .push("prod-api".into());
        vm.request(
            5,
            "oidc.example.com",
            "GET",
            "/clusters/prod/openid/v1/jwks",
        );
        vm.request(6, "oidc.example.com", "GET", "/clusters/dev/openid/v1/jwks");
        vm.tick_now();
        assert_eq!(vm.host().take_answers(), [(5, 503)]);
        let calls = vm.host().take_calls();
        assert!(calls.iter().all(|c| c.cluster == "dev-api"), "{calls:?}");
        vm.respond_as(&calls[1], DEV);
        let r = vm.host().take_replies().remove(0);
        assert_eq!((r.context_id, r.status), (6, 200));
        assert_eq!(r.body, Some(jwks_of(DEV)));
    }

    #[test]
    fn a_hung_call_holds_only_its_own_issuers_lease() {
        let p = Process::at(1_000_000);
        let (a, b) = (p.vm(FLEET), p.vm(FLEET));
        a.tick_now();
        let calls = a.host().take_calls();
        for c in by_cluster(calls, "dev-api") {
            a.respond_as(&c, DEV); // prod's calls hang
        }
        p.advance(2_999);
        b.tick_now();
        assert!(
            b.host().take_calls().is_empty(),
            "prod's lease holds, dev is fresh"
        );
        b.request(7, "oidc.example.com", "GET", "/clusters/dev/openid/v1/jwks");
        assert_eq!(
            b.host().take_answers(),
            [(7, 200)],
            "dev is served meanwhile"
        );
        p.advance(1);
        b.tick_now();
        let calls = b.host().take_calls();
        let got: Vec<_> = calls.iter().map(|c| c.cluster.as_str()).collect();
        assert_eq!(
            got,
            ["prod-api", "prod-api"],
            "prod's lease ran out: b fetches prod only"
        );
    }

    /// The calls of one tick for one cluster's document.
    fn call_for(calls: &[Call], cluster: &str, doc: Document) -> Call {
        let found = calls
            .iter()
            .find(|c| c.cluster == cluster && c.path() == doc.path());
        found.cloned().expect("a call")
    }

    const PROD_DISCOVERY: &str = "/clusters/prod/.well-known/openid-configuration";
    const PROD_JWKS: &str = "/clusters/prod/openid/v1/jwks";

    #[test]
    fn a_swapped_upstream_is_never_served_and_the_other_issuer_is_untouched() {
        // prod's cluster reaches dev's API server: its key set arrives first, then its
        // discovery document, which names dev
        let p = Process::at(1_000_000);
        let vm = p.vm(FLEET);
        vm.tick_now();
        let calls = vm.host().take_calls();
        let ((), lines) = logs(|| {
            vm.respond_as(&call_for(&calls, "prod-api", Document::Jwks), DEV);
            vm.respond_as(&call_for(&calls, "prod-api", Document::Discovery), DEV);
        });
        for c in calls.iter().filter(|c| c.cluster == "dev-api") {
            vm.respond_as(c, DEV);
        }
        let warns: Vec<_> = lines
            .iter()
            .filter(|(l, _)| *l == log::Level::Warn)
            .collect();
        assert_eq!(warns.len(), 1, "{lines:?}");
        assert!(warns[0].1.contains(&format!(
            "issuer prod: fetching discovery from cluster \"prod-api\" failed: the discovery document's issuer \"{DEV}\" is not the configured issuer \"{PROD}\""
        )), "{warns:?}");
        assert_eq!(
            issuer_fetches(
                &vm,
                "prod",
                Document::Discovery,
                FetchResult::IssuerMismatch
            ),
            1
        );
        vm.request(5, "oidc.example.com", "GET", PROD_DISCOVERY);
        assert_eq!(vm.host().take_answers(), [(5, 502)]);
        // the key set that came first was dropped, and is fetched again at once: refused
        vm.request(6, "oidc.example.com", "GET", PROD_JWKS);
        assert!(
            vm.host().take_replies().is_empty(),
            "waits for the fetch made due"
        );
        vm.tick_now();
        let calls = vm.host().take_calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        vm.respond_as(&calls[0], DEV);
        assert_eq!(vm.host().take_answers(), [(6, 502)]);
        assert_eq!(
            issuer_fetches(&vm, "prod", Document::Jwks, FetchResult::IssuerMismatch),
            1
        );
        vm.request(7, "oidc.example.com", "GET", PROD_JWKS);
        assert_eq!(vm.host().take_answers(), [(7, 502)]);
        // dev's issuer is served all along
        vm.request(8, "oidc.example.com", "GET", "/clusters/dev/openid/v1/jwks");
        let r = vm.host().take_replies().remove(0);
        assert_eq!((r.status, r.body), (200, Some(jwks_of(DEV))));
    }

    #[test]
    fn once_the_right_api_server_answers_again_its_key_set_is_fetched_at_once() {
        let p = Process::at(1_000_000);
        let vm = p.vm(FLEET);
        vm.tick_now();
        let calls = vm.host().take_calls();
        vm.respond_as(&call_for(&calls, "prod-api", Document::Discovery), DEV);
        p.advance(500);
        vm.respond_as(&call_for(&calls, "prod-api", Document::Jwks), DEV);
        assert_eq!(
            issuer_fetches(&vm, "prod", Document::Jwks, FetchResult::IssuerMismatch),
            1
        );
        // 1 s later only the discovery document is due (the key set at 1.5 s); the cluster
        // reaches the right API server again
        p.advance(500);
        vm.tick_now();
        let calls = vm.host().take_calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        vm.respond_as(&calls[0], PROD);
        vm.tick_now();
        let calls = vm.host().take_calls();
        assert_eq!(calls.len(), 1, "the key set, at once: {calls:?}");
        assert_eq!(calls[0].path(), Document::Jwks.path());
        vm.respond_as(&calls[0], PROD);
        vm.request(5, "oidc.example.com", "GET", PROD_JWKS);
        let r = vm.host().take_replies().remove(0);
        assert_eq!((r.status, r.body), (200, Some(jwks_of(PROD))));
    }

    #[test]
    fn a_key_set_fetched_in_the_same_moment_as_the_mismatch_is_refused_if_it_comes_after() {
        let p = Process::at(1_000_000);
        let vm = warm_fleet(&p);
        // the refresh finds prod's cluster misrouted: discovery first, then the key set
        p.advance(60_000);
        vm.tick_now();
        let calls = vm.host().take_calls();
        vm.respond_as(&call_for(&calls, "prod-api", Document::Discovery), DEV);
        vm.respond_as(&call_for(&calls, "prod-api", Document::Jwks), DEV);
        assert_eq!(
            issuer_fetches(&vm, "prod", Document::Jwks, FetchResult::IssuerMismatch),
            1
        );
        vm.request(5, "oidc.example.com", "GET", PROD_JWKS);
        vm.request(6, "oidc.example.com", "GET", PROD_DISCOVERY);
        let replies = vm.host().take_replies();
        assert_eq!(
            replies[0].status, 502,
            "the last good key set was dropped with the mismatch"
        );
        // the last good discovery document was checked when fetched: still served
        assert_eq!(
            (replies[1].status, replies[1].body.clone()),
            (
                200,
                Some(
                    String::from_utf8(crate::host::fake::discovery_of(PROD))
                        .unwrap()
                        .replace(
                            "https://10.0.0.1:6443/openid/v1/jwks",
                            "https://oidc.example.com/clusters/prod/openid/v1/jwks"
                        )
                        .into_bytes()
                )
            )
        );
    }

    #[test]
    fn the_single_issuer_form_checks_the_issuer_only_when_configured() {
        let p = Process::at(1_000_000);
        for (config, want) in [
            (r#"{"hosts":["oidc.example.com"]}"#, 200),
            (
                r#"{"hosts":["oidc.example.com"],"issuer":"https://kubernetes.default.svc"}"#,
                200,
            ),
            (
                r#"{"hosts":["oidc.example.com"],"issuer":"https://kubernetes.default.svc/"}"#,
                502,
            ),
        ] {
            let vm = p.vm(config);
            vm.request(5, HOST, "GET", Document::Discovery.path());
            vm.tick_now();
            for c in vm.host().take_calls() {
                vm.respond_ok(&c); // the fake's issuer: https://kubernetes.default.svc
            }
            assert_eq!(vm.host().take_answers(), [(5, want)], "{config}");
            let mismatches = fetches(&vm, Document::Discovery, FetchResult::IssuerMismatch);
            assert_eq!(mismatches, u64::from(want == 502), "{config}");
        }
    }
}
