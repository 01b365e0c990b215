//! The background task: flush on the interval or past a threshold (with backoff while
//! PostgreSQL fails), evict idle and over-capacity records, watch the write budget.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::db::Inner;

/// How often the task wakes to look around.
const TICK: Duration = Duration::from_millis(100);
/// The longest pause between flush attempts while PostgreSQL fails.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the task. It holds the database only weakly, so dropping every handle ends it.
pub(crate) fn spawn(inner: &Arc<Inner>, wake: Arc<Notify>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(inner);
    tokio::spawn(run(weak, wake))
}

async fn run(weak: Weak<Inner>, wake: Arc<Notify>) {
    let mut last_flush = Instant::now();
    let mut last_evict = Instant::now();
    let mut backoff = Duration::ZERO;
    loop {
        let tick = match weak.upgrade() {
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
        let config = &inner.config;
        let dirty = inner.tables.dirty();
        let wal_bytes = inner.wal.stats().bytes;
        inner
            .over_budget
            .store(dirty > config.max_dirty_records || wal_bytes > config.max_wal_bytes, Ordering::Relaxed);
        let pressing = dirty >= config.flush_dirty_threshold || wal_bytes >= config.flush_wal_bytes_threshold;
        let waited = last_flush.elapsed();
        let due = waited >= config.flush_interval.max(backoff) || (pressing && waited >= backoff);
        let pending_tables = inner.tables.all().iter().any(|t| !t.pg_ready());
        if due && (dirty > 0 || pending_tables) {
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
