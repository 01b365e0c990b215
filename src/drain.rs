//! The drain of the backlog replayed at open into PostgreSQL: how much is left, and a
//! `tracing` event when it is done. Open does not wait for it; the flush does the work.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use memdb_wal::Lsn;

use crate::cache::Dirty;

pub(crate) struct Drain {
    /// WAL records replayed at open.
    pub replayed: u64,
    /// The last LSN the replay covered: every record of the backlog is at or below it.
    through: Lsn,
    /// Dirty records the replay left in memory.
    backlog: usize,
    /// Of those, the ones flushed since.
    flushed: AtomicUsize,
    done: AtomicBool,
    opened: Instant,
}

impl Drain {
    pub(crate) fn new(replayed: u64, through: Lsn, backlog: usize) -> Self {
        Self {
            replayed,
            through,
            backlog,
            flushed: AtomicUsize::new(0),
            done: AtomicBool::new(backlog == 0),
            opened: Instant::now(),
        }
    }

    /// Whether PostgreSQL holds the whole backlog (and the WAL was truncated past it).
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Counts the backlog's records in a batch PostgreSQL has committed.
    pub(crate) fn flushed(&self, batch: &[Dirty]) {
        if !self.done.load(Ordering::Relaxed) {
            let n = batch.iter().filter(|d| d.lsn <= self.through).count();
            self.flushed.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Called with the lowest LSN the WAL must keep: once it is above the replay,
    /// PostgreSQL holds the whole backlog.
    pub(crate) fn check(&self, floor: Lsn) {
        if floor > self.through && !self.done.swap(true, Ordering::AcqRel) {
            tracing::info!(
                records = self.backlog,
                replayed = self.replayed,
                since_open = ?self.opened.elapsed(),
                "the WAL backlog replayed at open is drained into PostgreSQL"
            );
        }
    }

    /// Records of the backlog not yet in PostgreSQL: an upper bound (a backlog record
    /// overwritten before its flush is counted until the drain is done), and 0 exactly
    /// when the drain is done — PostgreSQL holds the whole backlog and the WAL was
    /// truncated past it.
    pub(crate) fn left(&self) -> usize {
        if self.done.load(Ordering::Acquire) {
            0
        } else {
            self.backlog.saturating_sub(self.flushed.load(Ordering::Relaxed)).max(1)
        }
    }
}
