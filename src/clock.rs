//! Time as the plugin counts it: milliseconds since the Unix epoch in a `u64`, as
//! [`crate::host::Host::now_ms`] gives it, and the configuration's durations converted to it.
//! Every sum saturates: a far deadline never wraps around into the past.

use std::time::Duration;

/// A duration in whole milliseconds (`u64::MAX` past it).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The moment `d` after `at_ms`.
pub fn after(at_ms: u64, d: Duration) -> u64 {
    at_ms.saturating_add(millis(d))
}

/// Whole seconds from `since_ms` to `now_ms`: a copy's age (0 if the clock went back).
pub fn age_s(since_ms: u64, now_ms: u64) -> u64 {
    now_ms.saturating_sub(since_ms) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_saturate_and_ages_never_go_negative() {
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(after(10, Duration::from_millis(3000)), 3010);
        assert_eq!(after(u64::MAX - 1, Duration::from_secs(1)), u64::MAX);
        assert_eq!(age_s(1_000, 62_999), 61);
        assert_eq!(age_s(5_000, 0), 0);
    }
}
