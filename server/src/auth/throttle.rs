//! Failed logins slow down their address: each failure pushes the next attempt from that
//! address back, so tokens cannot be guessed at line rate even over many connections. A
//! success does not wipe them (a user with a valid token must not be able to reset the
//! penalty of the guesses made between its logins); they are forgotten a minute after the
//! address's last turn.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Delay added by each failed attempt from an address.
pub(crate) const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);

/// Longest an attempt is made to wait; an address whose failures push its next turn further
/// out is refused at once, without a check (so a queue of parallel guesses gains nothing).
pub(crate) const MAX_LOGIN_DELAY: Duration = Duration::from_secs(10);

/// How long an address's failures are remembered after its last turn: while they are, each
/// of its attempts waits its turn, however many come at once.
const REMEMBERED: Duration = Duration::from_secs(60);

/// Addresses remembered at most; beyond, the one whose turn came longest ago is forgotten
/// (never all at once: a flood of new addresses must not wipe every penalty).
const MAX_TRACKED_ADDRESSES: usize = 4096;

/// When each address that failed recently may try next.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    next_turn: Mutex<HashMap<IpAddr, Instant>>,
}

/// An attempt's place in its address's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Check the credentials after waiting this long.
    After(Duration),
    /// Refused without a check: the address's failures make it wait longer than
    /// [`MAX_LOGIN_DELAY`]; it may try again after this long.
    Refused(Duration),
}

impl LoginThrottle {
    /// The turn of an attempt from `address`. An address without recent failures goes at
    /// once (parallel logins of honest clients are not slowed). One with failures waits
    /// until its next turn, and takes it: the next attempt comes [`FAILED_LOGIN_DELAY`]
    /// later, so parallel attempts queue up one by one.
    pub fn turn(&self, address: IpAddr) -> Turn {
        let now = Instant::now();
        let mut map = self.lock();
        let Some(next) = map.get_mut(&address) else {
            return Turn::After(Duration::ZERO);
        };
        if *next + REMEMBERED < now {
            map.remove(&address);
            return Turn::After(Duration::ZERO);
        }
        let start = (*next).max(now);
        let wait = start - now;
        if wait > MAX_LOGIN_DELAY {
            return Turn::Refused(wait - MAX_LOGIN_DELAY);
        }
        *next = start + FAILED_LOGIN_DELAY;
        Turn::After(wait)
    }

    /// Records a failed attempt from `address`: its next turn moves [`FAILED_LOGIN_DELAY`]
    /// further out (failures add up, also when they happen at once).
    pub fn failed(&self, address: IpAddr) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED_ADDRESSES && !map.contains_key(&address) {
            map.retain(|_, next| *next + REMEMBERED >= now);
            if map.len() >= MAX_TRACKED_ADDRESSES {
                let oldest = map.iter().min_by_key(|(_, next)| **next).map(|(a, _)| *a);
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                }
            }
        }
        let next = map.entry(address).or_insert(now);
        *next = (*next).max(now) + FAILED_LOGIN_DELAY;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        // Only instants: a map left by a panicking thread is still sound.
        self.next_turn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(turn: Turn) -> Duration {
        match turn {
            Turn::After(wait) => wait,
            Turn::Refused(_) => panic!("refused"),
        }
    }

    #[test]
    fn failures_delay_only_their_address_and_parallel_attempts_queue() {
        let throttle = LoginThrottle::default();
        let (bad, good): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(throttle.turn(bad), Turn::After(Duration::ZERO));
        throttle.failed(bad);
        throttle.failed(bad);
        let first = waits(throttle.turn(bad));
        assert!(first > FAILED_LOGIN_DELAY, "{first:?}");
        let second = waits(throttle.turn(bad));
        assert!(
            second >= first + FAILED_LOGIN_DELAY / 2,
            "parallel attempts queue: {first:?} then {second:?}"
        );
        assert_eq!(throttle.turn(good), Turn::After(Duration::ZERO));
    }

    /// A burst of parallel failures adds up, and attempts queued beyond the longest wait are
    /// refused without a check: at most one guess per delay, however many connections.
    #[test]
    fn a_burst_of_failures_locks_the_address_out_for_a_while() {
        let throttle = LoginThrottle::default();
        let address: IpAddr = "10.0.0.3".parse().unwrap();
        for _ in 0..64 {
            throttle.failed(address);
        }
        match throttle.turn(address) {
            Turn::Refused(retry) => assert!(retry > Duration::from_secs(20), "{retry:?}"),
            other => panic!("{other:?}"),
        }
        // Twenty queued attempts fill the longest wait; the next is refused.
        let queued = LoginThrottle::default();
        queued.failed(address);
        let admitted = (0..40)
            .take_while(|_| matches!(queued.turn(address), Turn::After(_)))
            .count();
        let most = (MAX_LOGIN_DELAY.as_millis() / FAILED_LOGIN_DELAY.as_millis()) as usize;
        assert!(admitted <= most + 1, "{admitted} admitted");
        assert!(admitted >= most - 1, "{admitted} admitted");
    }

    /// A flood of new addresses does not wipe the penalties of the others.
    #[test]
    fn many_addresses_do_not_reset_a_penalty() {
        let throttle = LoginThrottle::default();
        let bad: IpAddr = "10.0.0.4".parse().unwrap();
        for _ in 0..30 {
            throttle.failed(bad);
        }
        for n in 0..(MAX_TRACKED_ADDRESSES as u32 + 100) {
            throttle.failed(IpAddr::from(std::net::Ipv6Addr::from(u128::from(n) + 1)));
        }
        assert!(matches!(throttle.turn(bad), Turn::Refused(_)));
    }
}
