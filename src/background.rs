//! The background task: flush on the interval or past a threshold (with backoff while
//! PostgreSQL fails), probe PostgreSQL while it is known to be down (and drain the
//! backlog as soon as a probe gets through), evict idle and over-capacity records,
//! watch the write budget.
//!
//! ⚑ It is stopped, never cut short: `close` sets `closed`, wakes it, and waits for it
//! to finish the flush it is in (bounded; past the bound it is aborted, which the
//! flush's batch guard makes safe). ⚑ A panic in it is not lost: a supervisor sees it
//! and fails the engine (writes refused with [`crate::Error::Failed`], `close` returns
//! it, `stats().failure` shows it).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

use crate::db::Inner;

/// How often the task wakes to look around.
const TICK: Duration = Duration::from_millis(100);
/// The longest pause between flush attempts while PostgreSQL fails.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The running task: its supervisor (which ends when it does) and a way to abort it.
pub(crate) struct Background {
    supervisor: JoinHandle<()>,
    work: AbortHandle,
}

impl Background {
    /// Waits up to `bound` for the task to stop (it was told to: `closed` is set and it
    /// was woken), then aborts it.
    pub(crate) async fn stop(self, bound: Duration) {
        let Self { mut supervisor, work } = self;
        if tokio::time::timeout(bound, &mut supervisor).await.is_err() {
            tracing::warn!(?bound, "the background task did not stop in time: aborted (its batch goes back)");
            Self { supervisor, work }.abort().await;
        }
    }

    /// Aborts the task at whatever await it is at (a simulated crash, or past the bound).
    pub(crate) async fn abort(self) {
        self.work.abort();
        let _ = self.supervisor.await;
    }
}

/// Starts the task. It holds the database only weakly, so dropping every handle ends it.
pub(crate) fn spawn(inner: &Arc<Inner>, wake: Arc<Notify>) -> Background {
    let weak = Arc::downgrade(inner);
    let work = tokio::spawn(run(weak.clone(), wake));
    let abort = work.abort_handle();
    let supervisor = tokio::spawn(async move {
        let Err(e) = work.await else { return };
        if !e.is_panic() {
            return;
        }
        let payload = e.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string payload".into());
        if let Some(inner) = weak.upgrade() {
            inner.fail(format!("the background flush task panicked: {message}"));
        }
    });
    Background { supervisor, work: abort }
}

async fn run(weak: Weak<Inner>, wake: Arc<Notify>) {
    let mut last_flush = Instant::now();
    let mut last_evict = Instant::now();
    let mut backoff = Duration::ZERO;
    loop {
        let tick = match weak.upgrade() {
            Some(inner) if inner.closed.load(Ordering::Acquire) => return,
            Some(inner) => TICK.min(inner.config.flush_interval),
            None => return,
        };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        inner.clock.tick();
        #[cfg(feature = "internals")]
        if inner.inject_panic.swap(false, Ordering::AcqRel) {
            panic!("injected by MemDb::panic_background");
        }
        let config = &inner.config;
        let dirty = inner.tables.dirty();
        let wal_bytes = inner.wal.stats().bytes;
        inner
            .over_budget
            .store(dirty > config.max_dirty_records || wal_bytes > config.max_wal_bytes, Ordering::Relaxed);
        let pressing = dirty >= config.flush_dirty_threshold || wal_bytes >= config.flush_wal_bytes_threshold;
        // While PostgreSQL is known to be down no flush is tried (it would fail at once);
        // a probe that gets through makes the next flush due now.
        let back = inner.pg.probe_due() && inner.pg.probe().await.is_ok();
        if back {
            backoff = Duration::ZERO;
        }
        let waited = last_flush.elapsed();
        // The backlog replayed at open drains at once, not a flush interval later.
        let draining = inner.drain.left() > 0 && inner.tables.awaiting_flush() > 0;
        let due = back || waited >= config.flush_interval.max(backoff) || ((pressing || draining) && waited >= backoff);
        let pending_tables = inner.tables.all().iter().any(|t| !t.pg_ready());
        if due && inner.pg.is_up() && (dirty > 0 || pending_tables) {
            match inner.flush_all(None).await {
                Ok(_) => backoff = Duration::ZERO,
                Err(e) => {
                    backoff = (backoff * 2).clamp(TICK, MAX_BACKOFF);
                    tracing::warn!(error = %e, retry_in = ?backoff, dirty, "flush failed; writes go on into the WAL");
                }
            }
            last_flush = Instant::now();
        }
        if last_evict.elapsed() >= Duration::from_secs(1) || inner.evict_over_capacity_needed() {
            let idle = inner.evict_idle();
            let lru = inner.evict_over_capacity();
            if idle + lru > 0 {
                tracing::debug!(idle, lru, "evicted");
            }
            last_evict = Instant::now();
        }
    }
}

impl Inner {
    fn evict_over_capacity_needed(&self) -> bool {
        self.config
            .max_cached_records
            .is_some_and(|max| self.tables.all().iter().map(|t| t.cache.cached()).sum::<usize>() > max)
    }
}
