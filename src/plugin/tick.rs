//! The root context's tick: its three periods, and the one place that decides which to ask
//! of the host.

use crate::host::Host;
use std::cell::Cell;
use std::time::Duration;

/// Tick while nothing waits: refresh times and backoff are whole seconds.
pub const IDLE_TICK: Duration = Duration::from_millis(1000);
/// Tick while requests wait for a fetch made by another worker VM.
pub const WAIT_TICK: Duration = Duration::from_millis(20);
/// Tick that starts a fetch right after a request found no copy (or after plugin start).
pub const KICK_TICK: Duration = Duration::from_millis(1);

/// What may change the tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// The plugin started: prefetch every issuer's documents at once.
    Started,
    /// A request started waiting: start its fetch if it is this VM's to make, or watch for
    /// another VM's.
    Waiting,
    /// A tick ran. `more`: it answered a full batch of waiters and more may be answerable;
    /// `waiting`: requests still wait.
    Ticked { more: bool, waiting: bool },
}

impl Cause {
    /// The tick period this cause asks for.
    pub(super) const fn period(self) -> Duration {
        match self {
            Cause::Started | Cause::Waiting | Cause::Ticked { more: true, .. } => KICK_TICK,
            Cause::Ticked { waiting: true, .. } => WAIT_TICK,
            Cause::Ticked { .. } => IDLE_TICK,
        }
    }
}

/// The tick period last asked of the host.
#[derive(Debug, Default)]
pub(super) struct Ticker {
    period: Cell<Duration>,
}

impl Ticker {
    /// Asks the host for the period `cause` calls for, only when it changes.
    pub(super) fn set(&self, host: &impl Host, cause: Cause) {
        let period = cause.period();
        if self.period.replace(period) != period {
            host.set_tick_period(period);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kicks_while_there_is_work_waits_while_requests_wait_and_idles_otherwise() {
        let ticked = |more, waiting| Cause::Ticked { more, waiting }.period();
        assert_eq!(Cause::Started.period(), KICK_TICK);
        assert_eq!(Cause::Waiting.period(), KICK_TICK);
        assert_eq!(ticked(true, true), KICK_TICK);
        assert_eq!(ticked(true, false), KICK_TICK);
        assert_eq!(ticked(false, true), WAIT_TICK);
        assert_eq!(ticked(false, false), IDLE_TICK);
    }
}
