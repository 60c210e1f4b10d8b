//! The refresh policy, as pure decisions over the clock: how usable a copy is at a given age,
//! when a document's next fetch is due and who holds its lease ([`Schedule`]), how failures
//! back off, and what a request that finds no usable copy does ([`Cold`]). Where the schedule is
//! kept and how it is swapped between VMs is [`crate::shared`]'s concern.

use crate::clock::{self, millis};
use crate::config::Config;
use std::time::Duration;

/// A lease outlives the call it covers by this much, then another VM may fetch.
pub const LEASE_MARGIN: Duration = Duration::from_millis(1000);

/// How long a VM holds a fetch: the call's timeout and [`LEASE_MARGIN`].
pub fn lease(cfg: &Config) -> Duration {
    cfg.timeout.saturating_add(LEASE_MARGIN)
}

/// When a request that starts waiting at `now_ms` gives up (504): the lease of the fetch it
/// waits for has run out by then.
pub fn deadline(cfg: &Config, now_ms: u64) -> u64 {
    clock::after(now_ms, lease(cfg))
}

/// How usable a copy is at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within one refresh interval (plus the upstream timeout, for a refresh in flight).
    Fresh,
    /// Past its refresh time because refreshes fail; served for up to `max_stale`.
    Stale,
    /// Older than refresh interval + `max_stale`: never served.
    Expired,
}

pub fn freshness(cfg: &Config, fetched_at_ms: u64, now_ms: u64) -> Freshness {
    let age = now_ms.saturating_sub(fetched_at_ms);
    let refresh = millis(cfg.refresh_interval);
    if age <= refresh.saturating_add(millis(cfg.timeout)) {
        Freshness::Fresh
    } else if age <= refresh.saturating_add(millis(cfg.max_stale)) {
        Freshness::Stale
    } else {
        Freshness::Expired
    }
}

/// When the next fetch of a document is due, and who is fetching it now. One per issuer and
/// document, in shared data: every VM of the process reads and swaps the same one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedule {
    pub next_due_ms: u64,
    /// Consecutive failed fetches; drives the backoff.
    pub failures: u32,
    /// A VM holds the fetch until then; a crashed holder's lease simply runs out.
    pub lease_until_ms: u64,
    /// Client status of the last failure (0 after a success), for requests that waited on it.
    pub last_error: u16,
}

impl Schedule {
    pub fn leased(&self, now_ms: u64) -> bool {
        self.lease_until_ms > now_ms
    }

    pub fn due(&self, now_ms: u64) -> bool {
        !self.leased(now_ms) && self.next_due_ms <= now_ms
    }

    /// The schedule with the lease taken for `lease`, if a fetch is due and nobody holds it.
    pub fn take_lease(self, now_ms: u64, lease: Duration) -> Option<Schedule> {
        self.due(now_ms).then(|| Schedule {
            lease_until_ms: clock::after(now_ms, lease),
            ..self
        })
    }

    /// The schedule after a fetch (`Err(status)`: a failure): the lease released, the next
    /// fetch `next_in(consecutive failures)` later.
    pub fn finished(
        self,
        now_ms: u64,
        outcome: Result<(), u16>,
        next_in: impl Fn(u32) -> Duration,
    ) -> Schedule {
        let (failures, last_error) = match outcome {
            Ok(()) => (0, 0),
            Err(status) => (self.failures.saturating_add(1), status),
        };
        Schedule {
            next_due_ms: clock::after(now_ms, next_in(failures)),
            failures,
            lease_until_ms: 0,
            last_error,
        }
    }

    /// The schedule with a fetch due now; None when one is in flight (its result will do) or
    /// already due.
    pub fn made_due(self, now_ms: u64) -> Option<Schedule> {
        (!self.leased(now_ms) && self.next_due_ms > now_ms).then_some(Schedule {
            next_due_ms: now_ms,
            ..self
        })
    }
}

/// Delay before retrying after `failures` consecutive failures: exponential from 1 s, capped at
/// the refresh interval, with jitter in its upper half so that gateways do not retry in step;
/// never under 1 s.
pub fn backoff(failures: u32, refresh_interval: Duration, jitter: u64) -> Duration {
    let cap = millis(refresh_interval).max(1000);
    let exp = failures.saturating_sub(1).min(20);
    let base = 1000u64.saturating_mul(1 << exp).min(cap);
    let half = base / 2;
    let ms = half + jitter % (base - half + 1);
    Duration::from_millis(ms.max(1000))
}

/// What a request finding no usable copy should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cold {
    /// A fetch is in flight or due now: wait for it (coalesced with every other waiter).
    Wait,
    /// Answer this status now.
    Fail(u16),
}

/// Decides for a request that found no usable copy. `expired`: a copy exists but is past
/// `max_stale` (then the answer is 503, whatever the last fetch said); `deadline_ms`: when a
/// waiting request gives up with 504.
pub fn cold(schedule: &Schedule, now_ms: u64, expired: bool, deadline_ms: u64) -> Cold {
    if schedule.leased(now_ms) || schedule.next_due_ms <= now_ms {
        if now_ms >= deadline_ms {
            Cold::Fail(504)
        } else {
            Cold::Wait
        }
    } else if expired || schedule.last_error == 0 {
        Cold::Fail(503)
    } else {
        Cold::Fail(schedule.last_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_windows() {
        let c = Config::for_tests();
        assert_eq!(freshness(&c, 1000, 1000), Freshness::Fresh);
        assert_eq!(freshness(&c, 0, 62_000), Freshness::Fresh);
        assert_eq!(freshness(&c, 0, 62_001), Freshness::Stale);
        assert_eq!(freshness(&c, 0, 160_000), Freshness::Stale);
        assert_eq!(freshness(&c, 0, 160_001), Freshness::Expired);
        assert_eq!(freshness(&c, 5000, 0), Freshness::Fresh);
    }

    #[test]
    fn the_deadline_covers_the_call_and_the_lease_margin() {
        let cfg = Config::for_tests();
        assert_eq!(lease(&cfg), Duration::from_millis(3000));
        assert_eq!(deadline(&cfg, 10), 3010);
        assert_eq!(deadline(&cfg, u64::MAX), u64::MAX);
    }

    #[test]
    fn a_lease_is_taken_only_when_due_and_free() {
        let s = Schedule {
            next_due_ms: 5,
            failures: 2,
            lease_until_ms: 9,
            last_error: 504,
        };
        assert!(s.leased(8) && !s.leased(9));
        assert!(!s.due(8) && s.due(9));
        assert_eq!(s.take_lease(8, Duration::from_secs(1)), None, "held");
        let taken = s.take_lease(9, Duration::from_secs(1));
        assert_eq!(taken.map(|t| t.lease_until_ms), Some(1009));
        let later = Schedule {
            next_due_ms: 20,
            ..Schedule::default()
        };
        assert_eq!(
            later.take_lease(19, Duration::from_secs(1)),
            None,
            "not due"
        );
        assert_eq!(later.made_due(19).map(|s| s.next_due_ms), Some(19));
        assert_eq!(later.made_due(20), None, "already due");
        assert_eq!(s.made_due(8), None, "in flight");
    }

    #[test]
    fn backoff_grows_is_jittered_and_bounded() {
        let ri = Duration::from_secs(60);
        for jitter in [0, 1, 77, 999, u64::MAX] {
            for f in 0..40 {
                let d = backoff(f, ri, jitter);
                assert!(d >= Duration::from_secs(1), "{f} {jitter} {d:?}");
                assert!(d <= ri, "{f} {jitter} {d:?}");
            }
        }
        assert_eq!(backoff(1, ri, 0), Duration::from_secs(1));
        assert_eq!(backoff(4, ri, 0), Duration::from_secs(4));
        assert_eq!(backoff(4, ri, 4000), Duration::from_secs(8));
        assert_eq!(backoff(30, ri, 0), Duration::from_secs(30));
        assert_eq!(
            backoff(30, Duration::from_secs(5), 1_000_000_007),
            Duration::from_millis(2500 + 1_000_000_007 % 2501)
        );
    }
}
