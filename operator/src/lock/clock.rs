//! Wall-clock time for lease expiry.
//!
//! lockgate compares `time.Now()` with `ExpireAtTimestamp` (unix seconds) written by whichever
//! process holds the lease, so expiry is judged on wall clocks, not monotonic ones; Kiln does
//! the same to interoperate. The [`Clock`] trait lets unit tests drive time.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time as a [`Duration`] since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, as time since 1970-01-01T00:00:00Z.
    fn now(&self) -> Duration;
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;

/// The system's real-time clock (`SystemTime::now`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        // A clock set before 1970 reads as the epoch: every lease then looks unexpired, which
        // errs on the side of waiting rather than taking over.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

/// A clock that follows tokio's (pausable) timer from a fixed starting wall time, so tests
/// under `#[tokio::test(start_paused = true)]` see lease expiry and renewal periods advance
/// together without real waiting.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start_wall: Duration,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start_wall` now and advancing with `tokio::time::Instant`.
    pub fn starting_at(start_wall: Duration) -> Self {
        TokioClock {
            start_wall,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.start_wall + self.start.elapsed()
    }
}

/// Whether a lease expiring at `expire_at` (unix seconds) is expired at `now`: strictly after
/// the expiry second began, as Go's `time.Now().After(time.Unix(expire_at, 0))`.
pub fn is_expired(expire_at: i64, now: Duration) -> bool {
    match u64::try_from(expire_at) {
        Ok(secs) => now > Duration::from_secs(secs),
        Err(_) => true,
    }
}

/// Expiry timestamp of a lease written at `now` with `ttl`: whole seconds, truncated, as Go's
/// `time.Now().Unix() + DistributedLockLeaseTTLSeconds`.
pub fn expiry_after(now: Duration, ttl: Duration) -> i64 {
    (now.as_secs() + ttl.as_secs()) as i64
}

/// Time left until a lease expiring at `expire_at` becomes expired (zero if it already is).
pub fn until_expiry(expire_at: i64, now: Duration) -> Duration {
    let end = Duration::from_secs(u64::try_from(expire_at).unwrap_or(0));
    end.saturating_sub(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_strictly_after_the_timestamp() {
        assert!(!is_expired(100, Duration::from_secs(99)));
        assert!(!is_expired(100, Duration::from_secs(100)));
        assert!(is_expired(100, Duration::from_millis(100_001)));
        assert!(is_expired(-5, Duration::ZERO));
    }

    #[test]
    fn expiry_truncates_now_to_seconds_then_adds_ttl() {
        assert_eq!(
            expiry_after(Duration::from_millis(1_000_999), Duration::from_secs(10)),
            1_010
        );
    }

    #[test]
    fn until_expiry_counts_down_to_zero() {
        assert_eq!(
            until_expiry(110, Duration::from_millis(105_500)),
            Duration::from_millis(4_500)
        );
        assert_eq!(until_expiry(110, Duration::from_secs(111)), Duration::ZERO);
        assert_eq!(until_expiry(-1, Duration::from_secs(1)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::starting_at(Duration::from_secs(1_000));
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert_eq!(clock.now(), Duration::from_secs(1_012));
        assert!(SystemClock.now() > Duration::from_secs(1_700_000_000));
    }
}
