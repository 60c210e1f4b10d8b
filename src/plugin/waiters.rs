//! Requests waiting for a fetch: the list, in arrival order, and settling it a batch at a time
//! once their fate is known. The waiters of the fetching VM are settled from its response, those
//! of other worker VMs from the shared copy on their next (fast) tick.

use crate::classify::IssuerId;
use crate::document::Document;
use std::cell::RefCell;

/// Most waiters answered in one tick. Envoy defers a local reply sent from the tick until the tick
/// returns and runs the deferred replies nested in one another's filter callbacks, so stack use
/// grows with the batch: ~500 in one tick overflowed V8's stack in the cold-burst e2e test.
pub const SETTLE_BATCH: usize = 32;

/// A request waiting for a fetch.
#[derive(Debug)]
pub(super) struct Waiter {
    pub(super) context_id: u32,
    pub(super) issuer: IssuerId,
    pub(super) doc: Document,
    pub(super) if_none_match: Option<String>,
    /// When it gives up with 504 ([`crate::policy::deadline`]).
    pub(super) deadline_ms: u64,
}

/// What became of a waiter offered an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Answered: it leaves the list.
    Answered,
    /// The host no longer has the request: it leaves the list unanswered.
    Gone,
    /// Its fetch is still to come: it stays.
    Waits,
}

/// This VM's waiters. Only this type changes the list.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    list: RefCell<Vec<Waiter>>,
}

impl Waiters {
    /// Adds a waiter; gives it back when the list is busy (a call from within [`Waiters::settle`]),
    /// for the caller to answer at once.
    pub(super) fn add(&self, waiter: Waiter) -> Result<(), Waiter> {
        match self.list.try_borrow_mut() {
            Ok(mut list) => {
                list.push(waiter);
                Ok(())
            }
            Err(_) => Err(waiter),
        }
    }

    /// The request is gone (answered, or the client left): it no longer waits.
    pub(super) fn remove(&self, context_id: u32) {
        if let Ok(mut list) = self.list.try_borrow_mut() {
            list.retain(|w| w.context_id != context_id);
        }
    }

    /// Whether any request waits (a busy list counts as waiting).
    pub(super) fn any(&self) -> bool {
        self.list
            .try_borrow()
            .map(|l| !l.is_empty())
            .unwrap_or(true)
    }

    /// Offers waiters, in order, to `offer`, until [`SETTLE_BATCH`] are answered; those answered
    /// or gone leave the list. Returns true when the batch was cut short: more may be
    /// answerable right away.
    pub(super) fn settle(&self, mut offer: impl FnMut(&Waiter) -> Fate) -> bool {
        let waiting = match self.list.try_borrow_mut() {
            Ok(mut list) if !list.is_empty() => std::mem::take(&mut *list),
            _ => return false,
        };
        let mut still = Vec::new();
        let mut answered = 0;
        let mut cut_short = false;
        for w in waiting {
            if answered >= SETTLE_BATCH {
                cut_short = true;
                still.push(w);
                continue;
            }
            match offer(&w) {
                Fate::Answered => answered += 1,
                Fate::Gone => {}
                Fate::Waits => still.push(w),
            }
        }
        if let Ok(mut list) = self.list.try_borrow_mut() {
            list.extend(still);
        }
        cut_short
    }

    /// The requests waiting, in order.
    #[cfg(test)]
    pub(super) fn ids(&self) -> Vec<u32> {
        self.list.borrow().iter().map(|w| w.context_id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Outcome;
    use crate::host::fake::{jwks_of, Process, DEV, FLEET, JWKS, PROD};
    use crate::metrics;
    use crate::plugin::tick::{IDLE_TICK, KICK_TICK, WAIT_TICK};
    use std::collections::BTreeSet;

    const CONFIG: &str = r#"{"hosts":["oidc.example.com"],"timeout_ms":2000}"#;
    const HOST: &str = "oidc.example.com";
    const JWKS_PATH: &str = "/openid/v1/jwks";

    #[test]
    fn a_cold_burst_is_answered_32_per_tick_then_the_tick_idles() {
        let p = Process::at(1_000_000);
        let vm = p.vm(CONFIG);
        for id in 100..600 {
            vm.request(id, HOST, "GET", JWKS_PATH);
        }
        assert!(vm.host().take_replies().is_empty());
        assert_eq!(vm.host().tick(), Some(KICK_TICK));
        vm.tick_now();
        let calls = vm.host().take_calls();
        assert_eq!(calls.len(), 2, "one fetch per document, whatever the burst");
        assert!(vm.host().take_replies().is_empty(), "nothing to answer yet");
        assert_eq!(vm.host().tick(), Some(WAIT_TICK));
        p.advance(40);
        vm.respond_ok(&calls[1]);
        let mut batches = vec![vm.host().take_replies()];
        while vm.host().tick() != Some(IDLE_TICK) {
            assert!(batches.len() < 100, "the tick never idles");
            p.advance(1);
            vm.tick_now();
            batches.push(vm.host().take_replies());
        }
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        let mut want = vec![32; 15];
        want.push(20);
        assert_eq!(sizes, want);
        let all: Vec<_> = batches.concat();
        let answered: BTreeSet<u32> = all.iter().map(|r| r.context_id).collect();
        assert_eq!(
            answered,
            (100..600).collect(),
            "each request answered exactly once"
        );
        assert_eq!(all.len(), 500);
        assert!(all
            .iter()
            .all(|r| r.status == 200 && r.body.as_deref() == Some(JWKS)));
        let fresh = metrics::Names::new(None).requests(Document::Jwks, Outcome::Fresh);
        assert_eq!(vm.host().metric(&fresh), 500);
        // the start's kick, waiting for the fetch, kick while batches are cut short, idle
        let ticks = vm.host().ticks();
        assert_eq!(ticks, [KICK_TICK, WAIT_TICK, KICK_TICK, IDLE_TICK]);
    }

    #[test]
    fn a_waiter_past_its_deadline_gets_504_while_the_call_hangs() {
        let p = Process::at(1_000_000);
        let vm = p.vm(CONFIG);
        vm.tick_now();
        assert_eq!(vm.host().take_calls().len(), 2);
        p.advance(500);
        vm.request(7, HOST, "GET", JWKS_PATH);
        // deadline: timeout 2000 + lease margin 1000 after the request
        p.advance(2_999);
        vm.tick_now();
        assert!(vm.host().take_replies().is_empty(), "not yet");
        // the first lease ran out at 3000: this tick fetched again, and the waiter still waits
        assert_eq!(vm.host().take_calls().len(), 2);
        p.advance(1);
        vm.tick_now();
        assert_eq!(vm.host().take_answers(), [(7, 504)]);
        let err = metrics::Names::new(None).requests(Document::Jwks, Outcome::UpstreamError);
        assert_eq!(vm.host().metric(&err), 1);
        assert_eq!(vm.host().tick(), Some(IDLE_TICK));
    }

    #[test]
    fn a_request_that_goes_away_while_waiting_is_never_answered() {
        let p = Process::at(1_000_000);
        let vm = p.vm(CONFIG);
        for id in [7, 8, 9] {
            vm.request(id, HOST, "GET", JWKS_PATH);
        }
        vm.tick_now();
        let calls = vm.host().take_calls();
        vm.end(7); // the client left; the host deleted the context
        assert_eq!(vm.waiters.ids(), [8, 9]);
        vm.vanish(8); // gone from the host, not yet deleted in the plugin
        vm.respond_ok(&calls[1]);
        assert_eq!(vm.host().take_answers(), [(9, 200)]);
        vm.tick_now();
        assert!(vm.host().take_replies().is_empty());
        assert_eq!(vm.host().tick(), Some(IDLE_TICK), "no waiter left behind");
    }

    #[test]
    fn a_cold_burst_on_one_issuer_makes_one_call_for_that_issuer() {
        let p = Process::at(1_000_000);
        let (a, b) = (p.vm(FLEET), p.vm(FLEET));
        a.tick_now();
        let calls = a.host().take_calls();
        assert_eq!(calls.len(), 4, "the prefetch: two documents of two issuers");
        for c in calls.iter().filter(|c| c.cluster == "dev-api") {
            a.respond_as(c, DEV);
        }
        // prod is cold and its fetch is slow: a burst on two VMs
        let prod_jwks = "/clusters/prod/openid/v1/jwks";
        for id in 100..400 {
            let vm = if id % 2 == 0 { &a } else { &b };
            vm.request(id, "oidc.example.com", "GET", prod_jwks);
        }
        a.request(9, "oidc.example.com", "GET", "/clusters/dev/openid/v1/jwks");
        assert_eq!(
            a.host().take_answers(),
            [(9, 200)],
            "dev is not held up by prod"
        );
        for _ in 0..5 {
            p.advance(20);
            a.tick_now();
            b.tick_now();
        }
        assert!(a.host().take_calls().is_empty() && b.host().take_calls().is_empty());
        let prod = calls.iter().filter(|c| c.cluster == "prod-api");
        for c in prod {
            a.respond_as(c, PROD);
        }
        let mut replies = Vec::new();
        for _ in 0..20 {
            p.advance(1);
            a.tick_now();
            b.tick_now();
            replies.extend(a.host().take_replies());
            replies.extend(b.host().take_replies());
        }
        assert_eq!(replies.len(), 300);
        let ids: BTreeSet<u32> = replies.iter().map(|r| r.context_id).collect();
        assert_eq!(ids, (100..400).collect());
        assert!(replies
            .iter()
            .all(|r| r.status == 200 && r.body == Some(jwks_of(PROD))));
        assert!(a.host().take_calls().is_empty() && b.host().take_calls().is_empty());
        let names = metrics::Names::new(Some("prod"));
        let ok = names.fetches(Document::Jwks, crate::upstream::FetchResult::Ok);
        assert_eq!(
            a.host().metric(&ok),
            1,
            "one upstream call for prod's key set"
        );
    }
}
