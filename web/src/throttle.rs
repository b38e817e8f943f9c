//! Failed logins slow down what they came from: after a few failures an
//! account, or a client address, waits before its next try (doubling up to
//! a quarter of an hour), whatever the password. In memory, per process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What failed logins are counted against.
#[derive(Clone, Copy)]
pub enum Key<'a> {
    Account(&'a str),
    Address(std::net::IpAddr),
}

impl Key<'_> {
    fn id(&self) -> String {
        match self {
            Key::Account(name) => format!("user:{}", name.to_lowercase()),
            Key::Address(ip) => format!("addr:{ip}"),
        }
    }

    /// Failures allowed before the first wait: an address may stand for
    /// many people (an office, a proxy).
    fn free(&self) -> u32 {
        match self {
            Key::Account(_) => 3,
            Key::Address(_) => 20,
        }
    }
}

const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);
/// Entries kept before the expired ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    /// How long the longest of `keys`' waits still runs, if any does.
    pub fn wait_left(&self, keys: &[Key<'_>]) -> Option<Duration> {
        let map = self.lock();
        let now = Instant::now();
        keys.iter()
            .filter_map(|k| map.get(&k.id()))
            .map(|(_, until)| until.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
            .max()
    }

    /// Counts a failure against each key.
    pub fn failed(&self, keys: &[Key<'_>]) {
        let mut map = self.lock();
        let now = Instant::now();
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, (_, until)| *until > now);
        }
        for k in keys {
            let entry = map.entry(k.id()).or_insert((0, now));
            entry.0 += 1;
            if let Some(over) = entry.0.checked_sub(k.free()).filter(|n| *n > 0) {
                let wait = Duration::from_secs(1u64 << over.min(20)).min(LONGEST_WAIT);
                entry.1 = now + wait;
            }
        }
    }

    /// A success clears the account's failures.
    pub fn succeeded(&self, account: &str) {
        self.lock().remove(&Key::Account(account).id());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_start_after_the_free_failures_and_double() {
        let t = Throttle::default();
        let admin = [Key::Account("Admin")];
        for _ in 0..3 {
            assert!(t.wait_left(&admin).is_none());
            t.failed(&admin);
        }
        assert!(t.wait_left(&admin).is_none(), "three failures are free");
        t.failed(&admin);
        let first = t.wait_left(&[Key::Account("admin")]).unwrap();
        assert!(first <= Duration::from_secs(2) && first > Duration::ZERO);
        t.failed(&admin);
        assert!(t.wait_left(&admin).unwrap() > Duration::from_secs(2));
        t.succeeded("ADMIN");
        assert!(t.wait_left(&admin).is_none());
    }

    #[test]
    fn an_address_gets_more_free_failures_than_an_account() {
        let t = Throttle::default();
        let addr = [Key::Address(std::net::Ipv4Addr::LOCALHOST.into())];
        for _ in 0..20 {
            t.failed(&addr);
        }
        assert!(t.wait_left(&addr).is_none());
        t.failed(&addr);
        assert!(t.wait_left(&addr).is_some());
    }
}
