//! The circuit breaker in front of PostgreSQL: once a call finds it unreachable, calls
//! fail at once (no timeout paid per call) until a probe with backoff gets through.
//!
//! Only [`crate::store::Store::probe`] passes an open breaker; the background task sends
//! it when [`Breaker::probe_due`] says so. Any call that reaches PostgreSQL closes it,
//! any that finds it unreachable opens it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Misconfiguration;

/// The first pause between probes; it doubles up to [`MAX_PROBE_INTERVAL`].
const FIRST_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// The longest pause between probes: PostgreSQL back is noticed within this.
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(crate) struct Breaker {
    /// Mirrors `open.is_some()`, changed only under its lock: the closed path reads one
    /// atomic.
    tripped: AtomicBool,
    open: Mutex<Option<Open>>,
}

struct Open {
    since: Instant,
    cause: String,
    problem: Option<Misconfiguration>,
    interval: Duration,
    next_probe: Instant,
}

/// Why a call was refused without trying: PostgreSQL is known to be down.
#[derive(Clone, Debug)]
pub(crate) struct Down {
    pub down_for: Duration,
    pub cause: String,
    /// The misconfiguration that opened it, if that is why (not an outage).
    pub problem: Option<Misconfiguration>,
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Err` while open.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), Down> {
        if !self.tripped.load(Ordering::Acquire) {
            return Ok(());
        }
        match &*self.state() {
            Some(open) => {
                Err(Down { down_for: open.since.elapsed(), cause: open.cause.clone(), problem: open.problem })
            }
            None => Ok(()),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        !self.tripped.load(Ordering::Acquire)
    }

    /// A call found PostgreSQL unreachable (or cannot connect as configured, `problem`):
    /// open (or, if open, back off the next probe).
    pub(crate) fn trip(&self, cause: String, problem: Option<Misconfiguration>) {
        let mut state = self.state();
        let now = Instant::now();
        match &mut *state {
            Some(open) => {
                open.interval = (open.interval * 2).min(MAX_PROBE_INTERVAL);
                open.next_probe = now + open.interval;
                open.cause = cause;
                open.problem = problem;
            }
            None => {
                tracing::warn!(%cause, "PostgreSQL unreachable: calls that need it fail fast until a probe gets through");
                *state = Some(Open {
                    since: now,
                    cause,
                    problem,
                    interval: FIRST_PROBE_INTERVAL,
                    next_probe: now + FIRST_PROBE_INTERVAL,
                });
            }
        }
        // Under the lock, as in `reset`: the flag always matches the state.
        self.tripped.store(true, Ordering::Release);
    }

    /// A call reached PostgreSQL: close.
    pub(crate) fn reset(&self) {
        if !self.tripped.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state();
        if let Some(open) = state.take() {
            tracing::info!(down_for = ?open.since.elapsed(), "PostgreSQL reachable again");
        }
        self.tripped.store(false, Ordering::Release);
    }

    /// Whether the breaker is open and it is time to probe.
    pub(crate) fn probe_due(&self) -> bool {
        self.tripped.load(Ordering::Acquire) && self.state().as_ref().is_some_and(|o| Instant::now() >= o.next_probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_backs_off_and_closes() {
        let breaker = Breaker::default();
        assert!(breaker.check().is_ok() && breaker.is_closed() && !breaker.probe_due());
        breaker.trip("connection refused".into(), None);
        let down = breaker.check().expect_err("open");
        assert_eq!(down.cause, "connection refused");
        assert!(!breaker.probe_due(), "the first probe waits its interval");
        std::thread::sleep(FIRST_PROBE_INTERVAL);
        assert!(breaker.probe_due());
        breaker.trip("still refused".into(), Some(Misconfiguration::AuthenticationFailed));
        assert!(!breaker.probe_due(), "a failed probe pushes the next one out");
        let down = breaker.check().expect_err("still open");
        assert_eq!(
            (down.cause.as_str(), down.problem),
            ("still refused", Some(Misconfiguration::AuthenticationFailed))
        );
        breaker.reset();
        assert!(breaker.check().is_ok() && breaker.is_closed() && !breaker.probe_due());
    }
}
