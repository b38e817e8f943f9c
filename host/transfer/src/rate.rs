//! A rate limit shared by the transfers of one poller.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Spaces out chunks so that the bytes sent stay at `bytes_per_sec` on
/// average: each chunk reserves its share of time after the previous ones.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_sec: f64,
    next_free: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limit in megabits per second (the unit of the original form).
    pub fn mbps(mbps: f64) -> Self {
        Self {
            bytes_per_sec: mbps * 1_000_000.0 / 8.0,
            next_free: Mutex::new(None),
        }
    }

    /// A chunk size that keeps the rate smooth: a tenth of a second's worth,
    /// between 4 KiB and `max`.
    pub fn chunk(&self, max: usize) -> usize {
        ((self.bytes_per_sec / 10.0) as usize).clamp(4096, max)
    }

    /// How long to wait before sending `n` bytes.
    pub fn reserve(&self, n: u64) -> Duration {
        let now = Instant::now();
        let mut next = self
            .next_free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Idle time is not saved up: at most a tenth of a second of burst.
        let floor = now.checked_sub(Duration::from_millis(100)).unwrap_or(now);
        let start = next.map_or(now, |t| t.max(floor));
        *next = Some(start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec));
        start.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_to_the_rate() {
        let r = RateLimiter::mbps(8.0); // 1,000,000 bytes/s
        assert_eq!(r.reserve(500_000), Duration::ZERO);
        let second = r.reserve(500_000);
        assert!(
            second > Duration::from_millis(450) && second <= Duration::from_millis(500),
            "{second:?}"
        );
        let third = r.reserve(1_000_000);
        assert!(
            third > Duration::from_millis(950) && third <= Duration::from_millis(1000),
            "{third:?}"
        );
    }
}
