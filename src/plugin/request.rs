//! One client request: pass another host on, answer 404/405, serve a document from the copy, or
//! when there is no usable copy, answer the error the schedule gives or wait for a fetch; and
//! the same answer, later, for the requests that waited.

use super::tick::Cause;
use super::waiters::{Fate, Waiter};
use super::Plugin;
use crate::answer::{self, Outcome};
use crate::classify::{self, IssuerId, Route};
use crate::document::Document;
use crate::host::{Action, Host};
use crate::policy::{self, Cold, Freshness};

/// What the copy could do for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Served,
    /// A copy exists but is older than refresh interval + max_stale.
    Expired,
    Missing,
}

impl<H: Host> Plugin<H> {
    /// A request's headers, in its own (effective) context. `header` reads one by its
    /// (lower-case) name, and only as far as the answer needs: each read is a host call, and
    /// for a header that is there also a call back into the VM to allocate its value (the
    /// costliest step of a served request). Not the whole header map, which grows with every
    /// cookie a browser sends. Another host: `:authority` alone (and in the shipped configs it
    /// never enters the filter); then `:path`; `:method` only for a document's path (any other
    /// is 404 whatever the method); `if-none-match` only for a document served.
    pub fn on_request_headers(
        &self,
        context_id: u32,
        header: impl Fn(&str) -> Option<String>,
    ) -> Action {
        let authority = header(":authority").unwrap_or_default();
        if !classify::serves_host(self.scopes(), &authority) {
            return Action::Continue;
        }
        let path = header(":path").unwrap_or_default();
        let method = || header(":method").unwrap_or_default();
        match classify::classify(self.scopes(), &authority, &path, method) {
            Route::NotFound => {
                self.host.send(&answer::error(404));
                self.routing.not_found(&self.host);
            }
            Route::MethodNotAllowed => {
                self.host.send(&answer::error(405));
                self.routing.method_not_allowed(&self.host);
            }
            Route::Serve(issuer, doc) => {
                self.serve(context_id, issuer, doc, header("if-none-match"))
            }
        }
        Action::Pause
    }

    /// The request is gone (answered, or the client left): it no longer waits.
    pub fn on_request_gone(&self, context_id: u32) {
        self.waiters.remove(context_id);
    }

    fn serve(&self, context_id: u32, issuer: IssuerId, doc: Document, inm: Option<String>) {
        let now = self.host.now_ms();
        let deadline_ms = policy::deadline(&self.cfg, now);
        if self.answer_now(issuer, doc, now, inm.as_deref(), deadline_ms) {
            return;
        }
        let waiter = Waiter {
            context_id,
            issuer,
            doc,
            if_none_match: inm,
            deadline_ms,
        };
        match self.waiters.add(waiter) {
            Ok(()) => self.tick.set(&self.host, Cause::Waiting),
            Err(_) => self.answer_error(issuer, doc, 503),
        }
    }

    /// Answers up to [`super::waiters::SETTLE_BATCH`] waiters whose fate is known: a usable
    /// copy, a failed fetch now backed off, or their deadline. Returns true when more may be
    /// answerable right away. Runs in the root context; leaves the root as the effective
    /// context.
    pub(super) fn settle_waiters(&self, now: u64) -> bool {
        let mut switched = false;
        let more = self.waiters.settle(|w| {
            switched = true;
            if self.host.set_effective_context(w.context_id).is_err() {
                return Fate::Gone;
            }
            let inm = w.if_none_match.as_deref();
            if self.answer_now(w.issuer, w.doc, now, inm, w.deadline_ms) {
                Fate::Answered
            } else {
                Fate::Waits
            }
        });
        if switched {
            let _ = self.host.set_effective_context(self.root_id);
        }
        more
    }

    /// Answers a request now if it can be: from a usable copy, or with the error the schedule
    /// gives; false when it must wait for a fetch (until `deadline_ms`). For a new request and
    /// for a waiting one alike.
    fn answer_now(
        &self,
        issuer: IssuerId,
        doc: Document,
        now: u64,
        if_none_match: Option<&str>,
        deadline_ms: u64,
    ) -> bool {
        let lookup = self.answer_from_copy(issuer, doc, now, if_none_match);
        lookup == Lookup::Served || self.answer_cold(issuer, doc, lookup, now, deadline_ms)
    }

    /// Answers from the issuer's copy if there is a usable one.
    fn answer_from_copy(
        &self,
        issuer: IssuerId,
        doc: Document,
        now: u64,
        if_none_match: Option<&str>,
    ) -> Lookup {
        let Some(state) = self.state(issuer) else {
            return Lookup::Missing;
        };
        let answered = state.with_copy(&self.shared(), doc, |copy| {
            let freshness = policy::freshness(&self.cfg, copy.fetched_at_ms, now);
            if freshness == Freshness::Expired {
                return Lookup::Expired;
            }
            let (answer, outcome) = answer::document(copy, freshness, now, if_none_match);
            self.host.send(&answer);
            state.metrics.request(&self.host, doc, outcome);
            Lookup::Served
        });
        answered.unwrap_or(Lookup::Missing)
    }

    /// Answers a request the copy could not serve, or returns false if it must wait for a fetch.
    fn answer_cold(
        &self,
        issuer: IssuerId,
        doc: Document,
        lookup: Lookup,
        now: u64,
        deadline_ms: u64,
    ) -> bool {
        let schedule = self
            .issuers
            .get(issuer.0)
            .and_then(|state| state.keys(doc))
            .map(|k| self.shared().schedule(k).0)
            .unwrap_or_default();
        match policy::cold(&schedule, now, lookup == Lookup::Expired, deadline_ms) {
            Cold::Fail(status) => self.answer_error(issuer, doc, status),
            Cold::Wait => return false,
        }
        true
    }

    fn answer_error(&self, issuer: IssuerId, doc: Document, status: u16) {
        self.host.send(&answer::error(u32::from(status)));
        if let Some(state) = self.state(issuer) {
            state
                .metrics
                .request(&self.host, doc, Outcome::UpstreamError);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::{discovery_of, jwks_of, warm_fleet, Process, DEV, JWKS, PROD};
    use crate::metrics;
    use crate::plugin::tick::{IDLE_TICK, KICK_TICK, WAIT_TICK};

    const CONFIG: &str = r#"{"hosts":["oidc.example.com"],"token_env":"T","timeout_ms":2000,
        "refresh_interval_s":60,"max_stale_s":100}"#;
    const HOST: &str = "oidc.example.com";
    const JWKS_PATH: &str = "/openid/v1/jwks";

    /// A VM whose copies were fetched at the process's current time.
    fn warm(p: &Process) -> Plugin<crate::host::fake::FakeHost> {
        let vm = p.vm(CONFIG);
        vm.tick_now();
        for call in vm.host().take_calls() {
            vm.respond_ok(&call);
        }
        vm
    }

    #[test]
    fn each_request_reads_only_the_headers_its_answer_needs() {
        let vm = warm(&Process::at(1_000_000));
        let reads = |method, host, path| {
            vm.request(5, host, method, path);
            vm.host().take_replies();
            vm.host().take_header_reads()
        };
        assert_eq!(
            reads("GET", "app.example.com", JWKS_PATH),
            [":authority"],
            "another host"
        );
        assert_eq!(reads("POST", HOST, "/x"), [":authority", ":path"], "404");
        assert_eq!(
            reads("POST", HOST, JWKS_PATH),
            [":authority", ":path", ":method"],
            "405"
        );
        assert_eq!(
            reads("GET", HOST, JWKS_PATH),
            [":authority", ":path", ":method", "if-none-match"],
            "served"
        );
    }

    #[test]
    fn another_host_passes_untouched() {
        let vm = Process::at(1_000_000).vm(CONFIG);
        let action = vm.request(5, "app.example.com", "GET", JWKS_PATH);
        assert_eq!(action, Action::Continue);
        assert!(vm.host().take_replies().is_empty());
        assert_eq!(
            vm.request(6, "OIDC.example.com:8443", "GET", "/x"),
            Action::Pause
        );
        assert_eq!(vm.host().take_answers(), [(6, 404)]);
    }

    #[test]
    fn other_paths_and_methods_are_answered_at_once_and_counted() {
        let vm = Process::at(1_000_000).vm(CONFIG);
        assert_eq!(vm.request(5, HOST, "GET", "/api/v1/secrets"), Action::Pause);
        assert_eq!(vm.request(6, HOST, "POST", JWKS_PATH), Action::Pause);
        let replies = vm.host().take_replies();
        let got: Vec<_> = replies.iter().map(|r| (r.context_id, r.status)).collect();
        assert_eq!(got, [(5, 404), (6, 405)]);
        assert_eq!(replies[1].header("allow"), Some("GET, HEAD"));
        assert_eq!(vm.host().metric(&metrics::not_found()), 1);
        assert_eq!(vm.host().metric(&metrics::method_not_allowed()), 1);
        vm.tick_now();
        assert_eq!(vm.host().take_calls().len(), 2, "only the prefetch");
    }

    #[test]
    fn a_copy_is_served_fresh_then_stale_and_304_on_a_matching_etag() {
        let p = Process::at(1_000_000);
        let vm = warm(&p);
        let fresh = |o| {
            vm.host()
                .metric(&metrics::Names::new(None).requests(Document::Jwks, o))
        };
        p.advance(62_000);
        vm.request(5, HOST, "GET", JWKS_PATH);
        let r = vm.host().take_replies().remove(0);
        assert_eq!((r.context_id, r.status), (5, 200));
        assert_eq!(r.body.as_deref(), Some(JWKS));
        assert_eq!(r.header("age"), Some("62"));
        assert_eq!(fresh(Outcome::Fresh), 1);
        p.advance(1);
        let etag = r.header("etag").map(str::to_string);
        vm.request_with(6, HOST, "GET", JWKS_PATH, etag.as_deref());
        vm.request(7, HOST, "GET", JWKS_PATH);
        let got: Vec<_> = vm.host().take_replies().iter().map(|r| r.status).collect();
        assert_eq!(got, [304, 200]);
        assert_eq!(fresh(Outcome::NotModified), 1);
        assert_eq!(fresh(Outcome::Stale), 1);
    }

    #[test]
    fn a_served_request_copies_nothing_from_shared_data() {
        let p = Process::at(1_000_000);
        let vm = warm(&p);
        vm.request(4, HOST, "GET", JWKS_PATH); // this VM decodes the copy once
        let (gets, bytes) = (p.data().gets.get(), p.data().read_bytes.get());
        for id in 5..8 {
            vm.request(id, HOST, "GET", JWKS_PATH);
        }
        assert_eq!(
            vm.host().take_answers(),
            [(4, 200), (5, 200), (6, 200), (7, 200)]
        );
        assert_eq!(
            (
                p.data().gets.get() - gets,
                p.data().read_bytes.get() - bytes
            ),
            (3, 0),
            "one read of the (empty) version key each"
        );
    }

    #[test]
    fn an_expired_copy_waits_for_a_due_fetch_then_gets_503_when_it_fails() {
        let p = Process::at(1_000_000);
        let vm = warm(&p);
        assert_eq!(vm.host().tick(), Some(IDLE_TICK));
        p.advance(160_001);
        assert_eq!(vm.request(5, HOST, "GET", JWKS_PATH), Action::Pause);
        assert_eq!(
            vm.host().tick(),
            Some(KICK_TICK),
            "the fetch starts at once"
        );
        assert!(
            vm.host().take_replies().is_empty(),
            "waits: a refresh is due"
        );
        vm.tick_now();
        let calls = vm.host().take_calls();
        assert_eq!(calls.len(), 2);
        // The API server answers, but with its own error: 502 is what a cold request would
        // get; an expired copy's waiter gets 503.
        vm.respond(calls[1].token, "500", "text/plain", b"oops");
        assert_eq!(vm.host().take_answers(), [(5, 503)]);
        vm.tick_now();
        assert_eq!(vm.host().tick(), Some(IDLE_TICK));
    }

    #[test]
    fn a_cold_request_after_a_failed_fetch_gets_its_status_without_waiting() {
        let p = Process::at(1_000_000);
        let vm = p.vm(CONFIG);
        vm.tick_now();
        let calls = vm.host().take_calls();
        vm.respond(calls[1].token, "504", "text/plain", b"");
        vm.request(5, HOST, "GET", JWKS_PATH);
        assert_eq!(vm.host().take_answers(), [(5, 504)]);
        assert_eq!(
            vm.host().metric(
                &metrics::Names::new(None).requests(Document::Jwks, Outcome::UpstreamError)
            ),
            1
        );
        // the discovery call is still in flight: its request waits
        vm.request(6, HOST, "GET", Document::Discovery.path());
        assert!(vm.host().take_replies().is_empty());
        vm.tick_now();
        assert_eq!(vm.host().tick(), Some(WAIT_TICK));
    }

    #[test]
    fn each_issuer_is_served_its_own_copy_at_its_own_paths() {
        let p = Process::at(1_000_000);
        let vm = warm_fleet(&p);
        let get = |id, path: &str| {
            vm.request(id, "OIDC.example.com:443", "GET", path);
            vm.host().take_replies().remove(0)
        };
        let r = get(1, "/clusters/prod/openid/v1/jwks");
        assert_eq!((r.status, r.body), (200, Some(jwks_of(PROD))));
        let r = get(2, "/clusters/dev/openid/v1/jwks?x=1");
        assert_eq!((r.status, r.body), (200, Some(jwks_of(DEV))));
        let r = get(3, "/clusters/dev/.well-known/openid-configuration");
        let want = String::from_utf8(discovery_of(DEV)).unwrap().replace(
            "https://10.0.0.1:6443/openid/v1/jwks",
            "https://oidc.example.com/clusters/dev/openid/v1/jwks",
        );
        assert_eq!(
            r.body.as_deref(),
            Some(want.as_bytes()),
            "jwks_uri: the filter's own"
        );
        for path in [
            "/openid/v1/jwks",
            "/clusters/prod",
            "/clusters/prod/openid/v1/jwks/",
        ] {
            assert_eq!(get(4, path).status, 404, "{path}");
        }
        vm.request(
            5,
            "oidc.example.com",
            "DELETE",
            "/clusters/dev/openid/v1/jwks",
        );
        assert_eq!(vm.host().take_answers(), [(5, 405)]);
        assert_eq!(
            vm.request(6, "app.example.com", "GET", "/clusters/dev/openid/v1/jwks"),
            Action::Continue
        );
        let count = |name, o| {
            vm.host()
                .metric(&metrics::Names::new(Some(name)).requests(Document::Jwks, o))
        };
        assert_eq!(
            (count("prod", Outcome::Fresh), count("dev", Outcome::Fresh)),
            (1, 1)
        );
        assert_eq!(vm.host().metric(&metrics::not_found()), 3);
        assert_eq!(vm.host().metric(&metrics::method_not_allowed()), 1);
    }
}
