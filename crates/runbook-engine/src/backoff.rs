//! Retry waits as data: the delays between the attempts of a step.
//!
//! Keeping the policy a plain iterator (instead of sleeping inside a loop)
//! lets the step runner own the waiting, through `tokio::time`, and lets the
//! tests check the arithmetic without waiting at all.

use runbook_model::{Backoff, Retry};
use std::time::Duration;

/// The waits before attempt 2, 3, ... of a step: `attempts - 1` delays,
/// starting at `delay`, doubling for exponential backoff, never above
/// `max_delay`.
#[derive(Clone, Debug)]
pub(crate) struct Delays {
    next: Duration,
    remaining: u32,
    backoff: Backoff,
    max_delay: Duration,
}

impl Delays {
    /// The delays of `retry`.
    pub(crate) fn new(retry: &Retry) -> Self {
        Delays {
            next: retry.delay.min(retry.max_delay),
            remaining: retry.attempts.saturating_sub(1),
            backoff: retry.backoff,
            max_delay: retry.max_delay,
        }
    }

    /// Whether no wait is left: the attempt about to be made is the last.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.remaining == 0
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.next;
        self.next = match self.backoff {
            Backoff::Exponential => current.saturating_mul(2).min(self.max_delay),
            Backoff::Fixed => current,
        };
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(attempts: u32, delay_ms: u64, backoff: Backoff, max_ms: u64) -> Retry {
        Retry {
            attempts,
            delay: Duration::from_millis(delay_ms),
            backoff,
            max_delay: Duration::from_millis(max_ms),
        }
    }

    fn ms(delays: Delays) -> Vec<u128> {
        delays.map(|d| d.as_millis()).collect()
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let delays = Delays::new(&retry(6, 100, Backoff::Exponential, 1000));
        assert_eq!(ms(delays), [100, 200, 400, 800, 1000]);
    }

    #[test]
    fn fixed_repeats_the_delay() {
        let delays = Delays::new(&retry(4, 250, Backoff::Fixed, 60_000));
        assert_eq!(ms(delays), [250, 250, 250]);
    }

    #[test]
    fn one_attempt_never_waits() {
        assert_eq!(ms(Delays::new(&Retry::default())), Vec::<u128>::new());
    }

    #[test]
    fn a_delay_above_the_cap_is_capped() {
        let delays = Delays::new(&retry(3, 5000, Backoff::Fixed, 1000));
        assert_eq!(ms(delays), [1000, 1000]);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let delays = Delays::new(&retry(200, 1000, Backoff::Exponential, 60_000));
        let all: Vec<u128> = ms(delays);
        assert_eq!(all.len(), 199);
        assert_eq!(all.last().copied(), Some(60_000));
    }
}
