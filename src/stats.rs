//! Counters: the original's set plus what an operator needs, cheap on the hot path.

use crate::counter::Counter;
use std::time::Duration;

/// The engine's running counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub inserts: Counter,
    pub deletes: Counter,
    pub flushes: Counter,
    pub flushed_records: Counter,
    pub flush_failures: Counter,
    pub evictions: Counter,
}

/// A snapshot of the engine's state, from [`crate::MemDb::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Reads answered from memory.
    pub cache_hits: u64,
    /// Reads that went to PostgreSQL.
    pub cache_misses: u64,
    /// Inserts, upserts and patches acknowledged.
    pub inserts: u64,
    /// Deletes acknowledged.
    pub deletes: u64,
    /// Flushes that wrote at least one record.
    pub flushes: u64,
    /// Records written to PostgreSQL by flushes.
    pub flushed_records: u64,
    /// Flush attempts that failed (PostgreSQL down or rejecting).
    pub flush_failures: u64,
    /// Records evicted from memory.
    pub evictions: u64,
    /// Records in memory (tombstones included).
    pub cached_records: usize,
    /// Records newer in memory than in PostgreSQL (parked ones included).
    pub dirty_records: usize,
    /// Records PostgreSQL rejected, kept in memory and the WAL, retried on their next write.
    pub parked_records: usize,
    /// Logical tables.
    pub tables: usize,
    /// Bytes in the write-ahead log.
    pub wal_bytes: u64,
    /// Segment files of the write-ahead log.
    pub wal_segments: usize,
    /// How long the oldest unflushed write has waited, at most (the flush lag); zero
    /// when every dirty record is flushed or parked (parked records are counted in
    /// `parked_records` and wait for their next write).
    pub oldest_unflushed: Duration,
    /// Whether PostgreSQL is taken to be up: `false` from a call that found it
    /// unreachable until a background probe gets through (meanwhile calls that need it
    /// fail at once with [`crate::Error::Unavailable`]).
    pub postgres_up: bool,
    /// WAL records replayed into memory when the database was opened.
    pub replayed_records: u64,
    /// Records of that replay not yet in PostgreSQL (at most); 0 exactly once the
    /// backlog is drained — in PostgreSQL, and the WAL truncated past it — which a
    /// `tracing` event also reports.
    pub replay_backlog: usize,
    /// Why the engine stopped accepting writes (fail-stop: a background task panicked),
    /// or `None` while it is healthy.
    pub failure: Option<String>,
}
