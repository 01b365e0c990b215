//! The flush path: dirty records to PostgreSQL in batches, then WAL truncation; and
//! eviction of idle clean records.
//!
//! ⚑ A flush holds no map lock across I/O: it takes a batch of dirty records (a short
//! lock per shard), writes it with one statement, then marks each record clean only if
//! its LSN is still the one written. One flush runs at a time (`flush_lock`).
//!
//! ⚑ Cancel-safe: the batch is a guard ([`crate::cache::Batch`]) that gives its records
//! back when the flush future is dropped at any await, and the WAL watermark is only
//! computed while no batch is out. ⚑ A batch is sent only once the WAL is durable
//! through its highest LSN (syncing if need be), so PostgreSQL never holds a record that
//! a power cut can take from the WAL.

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use memdb_wal::Lsn;

use crate::cache::{Batch, Clock, Dirty};
use crate::db::Inner;
use crate::error::{Error, Result};
use crate::store::Write;
use crate::tables::Table;

impl Inner {
    /// Flushes one table or all, then truncates the WAL below the watermark.
    pub(crate) async fn flush_all(&self, only: Option<&Arc<Table>>) -> Result<usize> {
        let _flushing = self.flush_lock.lock().await;
        // ⚑ The first connection's work (which may log records again, above
        // PostgreSQL's LSNs) is done before any batch is taken: a batch holds its
        // records off the dirty lists, where that work would not see them.
        self.pg().await?;
        let tables = only.map_or_else(|| self.tables.all(), |t| vec![Arc::clone(t)]);
        let mut flushed = 0;
        let mut outcome = Ok(());
        for table in &tables {
            match self.flush_table(table).await {
                Ok(n) => flushed += n,
                Err(e) => {
                    self.counters.flush_failures.incr();
                    outcome = Err(e);
                    break;
                }
            }
        }
        // After a failure (fail-stop) the WAL is left whole: the next run replays it.
        if flushed > 0 && self.failure.get().is_none() {
            self.counters.flushes.incr();
            self.counters.flushed_records.add(flushed as u64);
            // Records given back by a failed batch are dirty again, so the watermark
            // holds them: truncating after a partial flush is safe.
            memdb_wal::kill_point::hit(memdb_wal::kill_point::PG_COMMITTED);
            self.truncate_wal().await?;
        } else if outcome.is_ok() && !self.drain.is_done() && self.failure.get().is_none() {
            // The drain ends with a truncation, which a failed one may have missed.
            self.truncate_wal().await?;
        }
        if self.tables.awaiting_flush() == 0 {
            *self.last_clean.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
        tracing::debug!(flushed, ok = outcome.is_ok(), "flush");
        outcome.map(|()| flushed)
    }

    /// Returns once the WAL is durable through `lsn`, syncing it (off the runtime's
    /// threads) if it is not yet: in `Periodic` mode, and for writes still in flight.
    pub(crate) async fn durable_through(&self, lsn: Lsn) -> Result<()> {
        if self.wal.durable_lsn() >= lsn {
            return Ok(());
        }
        let wal = Arc::clone(&self.wal);
        Ok(tokio::task::spawn_blocking(move || wal.wait_durable(lsn)).await.map_err(|_| Error::Closed)??)
    }

    /// Writes a table's dirty records, at most as many as were dirty when it started (so
    /// a steady stream of writes cannot keep one flush going forever).
    async fn flush_table(&self, table: &Table) -> Result<usize> {
        self.ensure_pg_table(table).await?;
        let mut budget = table.cache.dirty();
        let mut written = 0;
        while budget > 0 {
            let batch = table.cache.take_dirty(self.config.flush_batch_rows.min(budget));
            if batch.is_empty() {
                break;
            }
            self.durable_through(batch.max_lsn()).await?;
            budget = budget.saturating_sub(batch.len());
            match self.pg().await?.write_batch(&table.name, &writes(batch.records())).await {
                Ok(superseded) => {
                    written += batch.len();
                    self.drain.flushed(batch.records());
                    batch.flushed(&superseded);
                }
                Err(e) if e.is_rejection() => {
                    tracing::warn!(table = %table.name, error = %e, "PostgreSQL rejected a batch; retrying its records one by one");
                    written += self.write_one_by_one(table, batch).await?;
                }
                // Dropping the batch gives its records back.
                Err(e) => return Err(e.into()),
            }
        }
        Ok(written)
    }

    /// Retries a rejected batch record by record; a record rejected alone is parked:
    /// kept dirty in memory and in the WAL, skipped by flushes until its next write.
    async fn write_one_by_one(&self, table: &Table, mut batch: Batch<'_>) -> Result<usize> {
        let mut written = 0;
        while let Some(one) = batch.take_first() {
            match self.pg().await?.write_batch(&table.name, &writes(one.records())).await {
                Ok(superseded) => {
                    self.drain.flushed(one.records());
                    one.flushed(&superseded);
                    written += 1;
                }
                Err(e) if e.is_rejection() => {
                    if let Some(record) = one.records().first() {
                        tracing::error!(table = %table.name, key = %record.key, lsn = record.lsn, error = %e,
                            "PostgreSQL rejects this record: parked (kept in memory and the WAL) until its next write");
                    }
                    one.failed(true);
                }
                // Dropping `one` and the rest of the batch gives their records back.
                Err(e) => return Err(e.into()),
            }
        }
        Ok(written)
    }

    /// Creates the table in PostgreSQL if it is not there yet, once its create record
    /// is durable (PostgreSQL is never ahead of the WAL, for tables either).
    pub(crate) async fn ensure_pg_table(&self, table: &Table) -> Result<()> {
        if table.pg_ready() {
            return Ok(());
        }
        // The first connection may change the schema (a table learnt from PostgreSQL):
        // it runs before the schema to send is read.
        let store = self.pg().await?;
        let Some((pending, schema)) = table.pending() else { return Ok(()) };
        self.durable_through(pending).await?;
        store.create_table(&table.name, &schema.to_json()).await?;
        table.mark_pg_ready(pending);
        Ok(())
    }

    /// Removes WAL segments below the watermark: every record at or below it is in
    /// PostgreSQL or superseded by a newer record still in the WAL.
    async fn truncate_wal(&self) -> Result<()> {
        // Read before the scan: every LSN below it is already applied to the map, so
        // the scan sees it if it is dirty; later writes are above it.
        let next = self.wal.next_lsn();
        let mut floor = next;
        for table in self.tables.all() {
            match table.wal_floor() {
                Ok(Some(f)) => floor = floor.min(f),
                Ok(None) => {}
                Err(crate::cache::BatchesOut) => {
                    tracing::debug!(table = %table.name, "WAL not truncated: a flush holds records");
                    return Ok(());
                }
            }
        }
        // ⚑ The catalogue is saved before the segments holding create records go.
        let catalogue = self.catalogue_snapshot();
        let wal = Arc::clone(&self.wal);
        let removed = tokio::task::spawn_blocking(move || {
            catalogue.save_if_changed(&wal)?;
            wal.truncate_through(floor - 1)
        })
        .await
        .map_err(|_| Error::Closed)??;
        // After the truncation: once the backlog counts as drained, the WAL holds no
        // more of it than it must.
        self.drain.check(floor);
        tracing::debug!(watermark = floor - 1, removed, "WAL truncated");
        Ok(())
    }

    /// Evicts clean records idle longer than the idle TTL.
    pub(crate) fn evict_idle(&self) -> usize {
        let cutoff = self.clock.now().saturating_sub(Clock::ticks(self.config.idle_ttl));
        self.evict_older_than(cutoff)
    }

    /// Above `max_cached_records`, evicts the least recently used clean records
    /// (approximately: by a cutoff drawn from a sample of access times).
    pub(crate) fn evict_over_capacity(&self) -> usize {
        let Some(max) = self.config.max_cached_records else { return 0 };
        let tables = self.tables.all();
        let cached: usize = tables.iter().map(|t| t.cache.cached()).sum();
        if cached <= max {
            return 0;
        }
        let mut sample = Vec::new();
        for t in &tables {
            t.cache.sample_access_times(8, &mut sample);
        }
        sample.sort_unstable();
        // Aim 10% under the cap so eviction does not run on every tick.
        let excess = cached - max * 9 / 10;
        let index = (sample.len() * excess / cached).min(sample.len().saturating_sub(1));
        let Some(&cutoff) = sample.get(index) else { return 0 };
        self.evict_older_than(cutoff.saturating_add(1))
    }

    fn evict_older_than(&self, cutoff: u32) -> usize {
        let evicted: usize = self.tables.all().iter().map(|t| t.cache.evict_older_than(cutoff)).sum();
        self.counters.evictions.add(evicted as u64);
        evicted
    }
}

fn writes(batch: &[Dirty]) -> Vec<Write<'_>> {
    batch.iter().map(|d| Write { key: &d.key, json: d.record.value(), lsn: d.lsn }).collect()
}
