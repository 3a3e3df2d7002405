//! Wrong publish keys, per source address: after a few, every further wrong key from that
//! address is answered later and later (doubling from 250 ms up to a maximum), so guessing
//! keys costs the guesser time. The delay holds the guesser's connection, and connections per
//! address are limited, so an address can try at most `--max-connections-per-ip` keys per
//! maximum delay. A right key is never delayed: the delay comes after the registry said the
//! key is unknown.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::sync::lock;

/// Failures older than this are forgotten.
const WINDOW: Duration = Duration::from_secs(600);
/// The first delay after the free failures; each further failure doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// Addresses remembered before idle ones are swept.
const SWEEP_AT: usize = 10_000;

struct Entry {
    failures: u32,
    last: Instant,
}

pub(crate) struct KeyFailures {
    by_ip: Mutex<HashMap<IpAddr, Entry>>,
    /// Wrong keys per address answered at once (`--key-failures-before-delay`).
    free: u32,
    /// The longest delay (`--key-failure-max-delay`).
    max_delay: Duration,
}

impl KeyFailures {
    pub(crate) fn new(free: u32, max_delay: Duration) -> KeyFailures {
        KeyFailures { by_ip: Mutex::new(HashMap::new()), free, max_delay }
    }

    /// Records a wrong key from `ip`; returns how long to wait before answering it.
    pub(crate) fn failed(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut by_ip = lock(&self.by_ip);
        if by_ip.len() >= SWEEP_AT {
            by_ip.retain(|_, e| now.duration_since(e.last) < WINDOW);
        }
        let e = by_ip.entry(ip).or_insert(Entry { failures: 0, last: now });
        if now.duration_since(e.last) >= WINDOW {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if e.failures <= self.free {
            return Duration::ZERO;
        }
        let doublings = (e.failures - self.free - 1).min(16);
        FIRST_DELAY.saturating_mul(1 << doublings).min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_keys_are_free_then_slower_per_address() {
        let f = KeyFailures::new(2, Duration::from_secs(1));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let delays: Vec<_> = (0..6).map(|_| f.failed(a).as_millis()).collect();
        assert_eq!(delays, vec![0, 0, 250, 500, 1000, 1000]);
        assert_eq!(f.failed("10.0.0.2".parse().unwrap()), Duration::ZERO, "another address starts free");
    }
}
