//! `--bwlimit`: holds a transfer to a rate, averaged from its start.
//!
//! The sender sleeps whenever it is ahead of the schedule `bytes / rate`; the socket's own
//! buffers smooth the bursts. Averaging from the start (not per second) means a stall, such
//! as a reconnect, is made up afterwards only up to the limit's total, never above it for
//! long, and the measured rate over the whole transfer is the limit.

use std::time::{Duration, Instant};

/// Paces bytes to at most `rate` per second, or not at all.
#[derive(Debug)]
pub(crate) struct Throttle {
    rate: Option<u64>,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    /// A throttle at `rate` bytes per second (`None`: unlimited).
    pub(crate) fn new(rate: Option<u64>) -> Self {
        Self {
            rate: rate.filter(|rate| *rate > 0),
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `len` bytes moved and waits until the schedule allows them.
    pub(crate) async fn pace(&mut self, len: u64) {
        if let Some(wait) = self.wait_after(len) {
            tokio::time::sleep(wait).await;
        }
    }

    /// How long to wait after `len` more bytes; `None` when on schedule.
    fn wait_after(&mut self, len: u64) -> Option<Duration> {
        let rate = self.rate?;
        self.bytes += len;
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        due.checked_sub(self.started.elapsed())
            .filter(|wait| !wait.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_schedule_of_the_bytes_moved() {
        let mut unlimited = Throttle::new(None);
        assert_eq!(unlimited.wait_after(1 << 30), None);
        let mut throttle = Throttle::new(Some(1000));
        let wait = throttle.wait_after(2000).expect("two seconds ahead");
        assert!(wait > Duration::from_millis(1900) && wait <= Duration::from_secs(2));
        let later = throttle.wait_after(1000).expect("three seconds ahead");
        assert!(later > wait);
    }
}
