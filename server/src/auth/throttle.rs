//! Failed logins slow down their address: each failure pushes the next attempt from that
//! address back, so tokens cannot be guessed at line rate even over many connections.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Delay added by each failed attempt from an address.
pub(crate) const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);

/// Longest an address is made to wait, however many failures it piled up.
pub(crate) const MAX_LOGIN_DELAY: Duration = Duration::from_secs(10);

/// Addresses remembered at most; beyond, the oldest entries are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 4096;

/// When each address that failed recently may try again.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    not_before: Mutex<HashMap<IpAddr, Instant>>,
}

impl LoginThrottle {
    /// How long an attempt from `address` must wait now: until the slot its earlier failures
    /// left, which this attempt then takes (so parallel attempts queue up one by one).
    pub fn wait_for(&self, address: IpAddr) -> Duration {
        let now = Instant::now();
        let mut map = self.lock();
        match map.get_mut(&address) {
            Some(slot) if *slot > now => {
                let wait = (*slot - now).min(MAX_LOGIN_DELAY);
                *slot = now + wait + FAILED_LOGIN_DELAY;
                wait
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failed attempt from `address`.
    pub fn failed(&self, address: IpAddr) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED_ADDRESSES && !map.contains_key(&address) {
            map.retain(|_, slot| *slot > now);
            if map.len() >= MAX_TRACKED_ADDRESSES {
                map.clear();
            }
        }
        let slot = map.entry(address).or_insert(now);
        *slot = (*slot).max(now) + FAILED_LOGIN_DELAY;
        if *slot > now + MAX_LOGIN_DELAY {
            *slot = now + MAX_LOGIN_DELAY;
        }
    }

    /// Forgets an address's failures (it logged in).
    pub fn succeeded(&self, address: IpAddr) {
        self.lock().remove(&address);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        // Only instants: a map left by a panicking thread is still sound.
        self.not_before
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_delay_only_their_address() {
        let throttle = LoginThrottle::default();
        let (bad, good): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(throttle.wait_for(bad), Duration::ZERO);
        throttle.failed(bad);
        throttle.failed(bad);
        let first = throttle.wait_for(bad);
        assert!(first > FAILED_LOGIN_DELAY, "{first:?}");
        let second = throttle.wait_for(bad);
        assert!(
            second > first,
            "parallel attempts queue: {first:?} then {second:?}"
        );
        assert_eq!(throttle.wait_for(good), Duration::ZERO);
        throttle.succeeded(bad);
        assert_eq!(throttle.wait_for(bad), Duration::ZERO);
    }
}
