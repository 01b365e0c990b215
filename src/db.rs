//! `MemDb`: the public API — open/close, tables, writes, reads, queries, flush, stats.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use memdb_wal::{Durability, Lsn, Wal};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;

use crate::background::Background;
use crate::cache::Clock;
use crate::config::Config;
use crate::drain::Drain;
use crate::durability::Syncer;
use crate::error::{Error, Result};
use crate::json::{Json, Row};
use crate::pg::Pg;
use crate::schema::Schema;
use crate::stats::{Counters, Stats};
use crate::tables::{Table, Tables};
use crate::validate;

/// An embedded write-behind database: JSON records by `(table, key)` in memory, made
/// durable in a local WAL before each write returns, flushed to PostgreSQL behind.
///
/// Cheap to clone; all clones share one database. Call [`MemDb::close`] to flush and
/// stop; a database that is dropped without it (or a crashed process) loses nothing
/// acknowledged — the next [`MemDb::open`] replays the WAL into PostgreSQL.
#[derive(Clone)]
pub struct MemDb {
    pub(crate) inner: Arc<Inner>,
}

/// The WAL directory and whether the database is open: enough to tell instances apart
/// in a log line, without locking anything.
impl std::fmt::Debug for MemDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        f.debug_struct("MemDb")
            .field("wal_dir", &inner.config.wal_dir)
            .field("closed", &inner.closed.load(Ordering::Relaxed))
            .field("failed", &inner.failure.get().is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub config: Config,
    pub wal: Arc<Wal>,
    /// ⚑ PostgreSQL, only through [`Inner::pg`] (after the first connection's work).
    pub pg: Pg,
    /// The runs (this one, and earlier ones that never connected) whose writes are not
    /// yet checked against PostgreSQL's LSN floor; empty once checked. Saved in the
    /// catalogue (see [`crate::catalogue`]).
    pub unverified: Mutex<Vec<crate::catalogue::Unverified>>,
    pub tables: Tables,
    pub clock: Clock,
    pub counters: Counters,
    pub drain: Drain,
    /// The catalogue as last saved in the WAL directory (see [`crate::catalogue`]).
    pub catalogue_saved: Arc<Mutex<crate::catalogue::Saved>>,
    pub syncer: Option<Syncer>,
    /// One flush at a time (the WAL watermark depends on it).
    pub flush_lock: tokio::sync::Mutex<()>,
    /// Wakes the background task early (thresholds, backpressure, close).
    pub wake: Arc<Notify>,
    /// Writers wait while the background task finds the budget exceeded.
    pub over_budget: AtomicBool,
    pub closed: AtomicBool,
    /// When the dirty set was last seen empty (for `oldest_unflushed`).
    pub last_clean: Mutex<Instant>,
    pub background: Mutex<Option<Background>>,
    /// Set once when the engine fails (fail-stop): writes are refused from then on.
    pub failure: OnceLock<String>,
    /// Makes the background task panic at its next tick (fail-stop drills).
    #[cfg(feature = "internals")]
    pub inject_panic: AtomicBool,
}

impl MemDb {
    /// Opens the database: locks and opens the WAL, loads the table catalogue kept in
    /// its directory, replays every record PostgreSQL may not have seen into memory, and
    /// starts the background task — then returns, without waiting for PostgreSQL. The
    /// backlog drains into PostgreSQL in the background (`stats().replay_backlog`), also
    /// if PostgreSQL only answers later.
    ///
    /// # Errors
    /// Configuration and WAL errors (e.g. corruption, or the WAL directory being in use
    /// by another process). The first open of a WAL directory (it has no catalogue yet)
    /// needs PostgreSQL once: [`Error::Unavailable`] without it.
    ///
    /// # Cancel safety
    /// Dropped before it returns, nothing is lost: the WAL directory is released when
    /// the half-opened engine is dropped, and the next open recovers as this one would.
    pub async fn open(config: Config) -> Result<Self> {
        crate::recovery::open(config).await
    }

    /// Stops the background task (letting a flush it is in finish, up to the PostgreSQL
    /// timeout and a second), flushes everything, syncs and releases the WAL. Later calls
    /// on any clone fail with [`Error::Closed`]. Writes that race the close either fail
    /// with `Closed` or are in the WAL when it is released.
    ///
    /// # Errors
    /// A flush or sync error: the records stay in the WAL and are replayed next open.
    /// [`Error::Failed`] if the engine had failed (fail-stop) before.
    ///
    /// # Cancel safety
    /// Cancel-safe in that nothing acknowledged is lost: dropped at any await, the
    /// database is closed for new calls, and whatever was not flushed is in the WAL for
    /// the next open; the WAL directory is released when the last handle is dropped.
    pub async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        inner.wake.notify_one();
        let task = inner.background.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            task.stop(inner.config.pg_timeout + std::time::Duration::from_secs(1)).await;
        }
        let flushed = inner.flush_all(None).await;
        let wal = Arc::clone(&inner.wal);
        // Syncs and releases the WAL directory, so the database can be opened again.
        let synced = tokio::task::spawn_blocking(move || wal.close()).await.map_err(|_| Error::Closed)?;
        tracing::info!(?flushed, "memdb closed");
        if let Some(cause) = inner.failure.get() {
            return Err(Error::Failed { cause: cause.clone() });
        }
        flushed?;
        synced?;
        Ok(())
    }

    /// Creates a table (or replaces its schema hints). `schema` maps field names to
    /// types (`string`, `number`, `integer`, `boolean`, `timestamp`, `object`, `array`);
    /// declared fields are checked on every write, undeclared ones pass. The schema is
    /// stored in PostgreSQL and survives restarts.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`], [`Error::InvalidSchema`], WAL errors. If PostgreSQL
    /// is down the table is created there by the next flush.
    ///
    /// # Cancel safety
    /// Dropped before it returns, the write may or may not have happened (it is then in
    /// the WAL and memory, or nowhere); it is never half done and never acknowledged, and
    /// nothing else is affected.
    pub async fn create_table(&self, name: &str, schema: &serde_json::Value) -> Result<()> {
        self.check_writable()?;
        validate::table_name(name)?;
        let parsed = Schema::from_json(name, schema)?;
        let inner = &self.inner;
        let (table, _) = inner.tables.get_or_insert(name, Schema::default(), false);
        let lsn = inner.log_schema(&table, parsed)?;
        inner.wait_durable(lsn).await?;
        if let Err(e) = inner.ensure_pg_table(&table).await {
            tracing::warn!(table = name, error = %e, "table not yet created in PostgreSQL; the next flush retries");
        }
        Ok(())
    }

    /// Sets the whole record `key` of `table` to `value` (a JSON object). A table that
    /// does not exist yet is created with an empty schema, as in the original.
    ///
    /// # Errors
    /// Validation errors (nothing written), [`Error::Backpressure`], WAL errors;
    /// [`Error::Unavailable`] for a table this WAL directory does not know while
    /// PostgreSQL is down (it may be there, with a schema).
    ///
    /// # Cancel safety
    /// Dropped before it returns, the write may or may not have happened (it is then in
    /// the WAL and memory, or nowhere); it is never half done and never acknowledged, and
    /// nothing else is affected.
    pub async fn insert<T: Serialize + ?Sized>(&self, table: &str, key: &str, value: &T) -> Result<()> {
        self.insert_with(table, key, value, self.inner.config.durability).await
    }

    /// [`MemDb::insert`], acknowledged as `durability` says rather than as the engine
    /// is configured: `Durability::Sync` returns once the write is on stable storage
    /// (it survives a power cut) also in a `Periodic` engine — for the few writes that
    /// must; `Periodic(_)` returns once it is in the WAL (it survives a crash of the
    /// process), without waiting for a sync, also in a `Sync` engine — where the sync
    /// starts at once, not waited for (the engine's periodic sync, or this one, decides
    /// when; the interval given is not used).
    ///
    /// # Errors
    /// As [`MemDb::insert`].
    ///
    /// # Cancel safety
    /// As [`MemDb::insert`]; dropped while it waits for the sync, the write is in the WAL
    /// and memory, not acknowledged, and the sync goes on.
    pub async fn insert_with<T: Serialize + ?Sized>(
        &self,
        table: &str,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> Result<()> {
        self.check_writable()?;
        // A call that never waits must still let its task yield: a loop of writes is one
        // task, and it must not starve the runtime (tokio's cooperative budget).
        tokio::task::coop::consume_budget().await;
        let inner = &self.inner;
        let record = inner.prepare_put(table, key, value).await?;
        let (lsn, dirty) = match inner.tables.with(table, |t| inner.put(t, key, &record)) {
            Some(written) => written?,
            // Boxed: the common path's future stays small.
            None => inner.put(&*Box::pin(inner.table_for_write(table)).await?, key, &record)?,
        };
        inner.acknowledge(lsn, dirty, durability).await
    }

    /// The same as [`MemDb::insert`]: both set the whole record, as in the original.
    ///
    /// # Errors
    /// As [`MemDb::insert`].
    ///
    /// # Cancel safety
    /// Dropped before it returns, the write may or may not have happened (it is then in
    /// the WAL and memory, or nowhere); it is never half done and never acknowledged, and
    /// nothing else is affected.
    pub async fn upsert<T: Serialize + ?Sized>(&self, table: &str, key: &str, value: &T) -> Result<()> {
        self.insert(table, key, value).await
    }

    /// Applies an RFC 7396 merge patch to the record (loading it from PostgreSQL if it
    /// is not in memory; a missing record is patched from `{}`) and returns the result.
    ///
    /// # Errors
    /// As [`MemDb::insert`], and PostgreSQL errors while loading.
    ///
    /// # Cancel safety
    /// Dropped before it returns, the write may or may not have happened (it is then in
    /// the WAL and memory, or nowhere); it is never half done and never acknowledged, and
    /// nothing else is affected.
    pub async fn patch(&self, table: &str, key: &str, patch: &serde_json::Value) -> Result<Json> {
        self.check_writable()?;
        tokio::task::coop::consume_budget().await; // see `upsert`
        let t = self.inner.table_for_write(table).await?;
        self.inner.patch_in(&t, key, patch).await
    }

    /// Deletes the record. It stays deleted (a tombstone in memory) until the flush
    /// removes it from PostgreSQL, so it never reads back.
    ///
    /// # Errors
    /// Validation, backpressure and WAL errors.
    ///
    /// # Cancel safety
    /// Dropped before it returns, the write may or may not have happened (it is then in
    /// the WAL and memory, or nowhere); it is never half done and never acknowledged, and
    /// nothing else is affected.
    pub async fn delete(&self, table: &str, key: &str) -> Result<()> {
        self.check_writable()?;
        validate::table_name(table)?;
        validate::key(key)?;
        let Some(t) = self.inner.table(table).await? else { return Ok(()) };
        tokio::task::coop::consume_budget().await; // see `upsert`
        self.inner.delete_in(&t, key).await
    }

    /// Reads a record: from memory on a hit (no copy), from PostgreSQL on a miss, then
    /// cached as clean.
    ///
    /// # Errors
    /// Validation errors and PostgreSQL errors on a miss; [`Error::Unavailable`] at once
    /// on a miss while PostgreSQL is known to be down.
    ///
    /// # Cancel safety
    /// Cancel-safe: a read changes nothing but the cache (a miss caches the record only
    /// if no write raced it).
    pub async fn get(&self, table: &str, key: &str) -> Result<Option<Json>> {
        self.check_open()?;
        tokio::task::coop::consume_budget().await; // see `upsert`
        let inner = &self.inner;
        // The hit path borrows the table from the registry's snapshot: no lock taken
        // but the shard's, no reference count touched but the value's.
        let found = inner.tables.with(table, |t| inner.lookup(t, key).map_err(|epoch| (Arc::clone(t), epoch)));
        match found {
            Some(Ok(value)) => Ok(value),
            // Boxed: the hit path's future stays a few words, not the PostgreSQL read's.
            Some(Err((t, epoch))) => Box::pin(inner.get_miss(&t, key, epoch)).await,
            None => {
                validate::table_name(table)?;
                match Box::pin(inner.table(table)).await? {
                    // Learnt from PostgreSQL's catalogue just now: read it there.
                    Some(_) => Box::pin(self.get(table, key)).await,
                    None => Ok(None),
                }
            }
        }
    }

    /// Reads the latest acknowledged value without adding it to the cache (the
    /// original's `use_cache=False`): memory if it holds the record, else PostgreSQL.
    ///
    /// # Errors
    /// As [`MemDb::get`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a read changes nothing but the cache (a miss caches the record only
    /// if no write raced it).
    pub async fn get_uncached(&self, table: &str, key: &str) -> Result<Option<Json>> {
        self.check_open()?;
        tokio::task::coop::consume_budget().await; // see `upsert`
        validate::table_name(table)?;
        let Some(t) = self.inner.table(table).await? else { return Ok(None) };
        if let Some((value, _)) = t.cache.peek(key) {
            return Ok(value.map(Json::new));
        }
        validate::key(key)?;
        self.inner.ensure_pg_table(&t).await?;
        Ok(self.inner.pg().await?.get(table, key).await?.map(|(json, _)| Json::put(key, &json)))
    }

    /// Reads a record and deserialises it into `T`.
    ///
    /// # Errors
    /// As [`MemDb::get`], and [`Error::Deserialize`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a read changes nothing but the cache (a miss caches the record only
    /// if no write raced it).
    pub async fn get_as<T: DeserializeOwned>(&self, table: &str, key: &str) -> Result<Option<T>> {
        self.get(table, key).await?.map(|json| json.deserialize_in(table, key)).transpose()
    }

    /// Rows of `table` matching `where_sql`, ordered by key, at most `limit`. It sees
    /// every write acknowledged before the call (the table is flushed first).
    ///
    /// `where_sql` is **trusted SQL**, spliced into the statement as written (as in the
    /// original): never build it from user input — use [`MemDb::query_params`].
    /// Records are in the `data` JSONB column, e.g. `data->>'status' = 'active'`.
    ///
    /// # Errors
    /// PostgreSQL errors (including bad SQL) and flush errors; [`Error::Unavailable`] at
    /// once while PostgreSQL is known to be down.
    ///
    /// # Cancel safety
    /// Cancel-safe: it flushes the table first; dropped at any await, the records it had taken go back to their
    /// dirty lists (a guard), the WAL is never truncated past them, and the next flush
    /// writes them. Whatever PostgreSQL committed before the drop is rewritten under the
    /// LSN guard, which changes nothing.
    pub async fn query(&self, table: &str, where_sql: &str, limit: usize) -> Result<Vec<Row>> {
        self.query_params(table, where_sql, &[], limit).await
    }

    /// [`MemDb::query`] with `$1`, `$2`, … in `where_sql` bound to `params`.
    ///
    /// # Errors
    /// As [`MemDb::query`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it flushes the table first; dropped at any await, the records it had taken go back to their
    /// dirty lists (a guard), the WAL is never truncated past them, and the next flush
    /// writes them. Whatever PostgreSQL committed before the drop is rewritten under the
    /// LSN guard, which changes nothing.
    pub async fn query_params(
        &self,
        table: &str,
        where_sql: &str,
        params: &[&(dyn ToSql + Sync)],
        limit: usize,
    ) -> Result<Vec<Row>> {
        self.check_open()?;
        validate::table_name(table)?;
        let Some(t) = self.inner.table(table).await? else { return Ok(Vec::new()) };
        self.inner.query_in(&t, where_sql, params, limit).await
    }

    /// Flushes the dirty records of one table, or of all, to PostgreSQL now. Returns the
    /// number of records written.
    ///
    /// # Errors
    /// PostgreSQL errors ([`Error::Unavailable`] at once while it is known to be down);
    /// the records stay dirty and are retried.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropped at any await, the records it had taken go back to their
    /// dirty lists (a guard), the WAL is never truncated past them, and the next flush
    /// writes them. Whatever PostgreSQL committed before the drop is rewritten under the
    /// LSN guard, which changes nothing.
    pub async fn flush(&self, table: Option<&str>) -> Result<usize> {
        self.check_open()?;
        let only = match table {
            Some(name) => {
                validate::table_name(name)?;
                match self.inner.table(name).await? {
                    Some(t) => Some(t),
                    None => return Ok(0),
                }
            }
            None => None,
        };
        self.inner.flush_all(only.as_ref()).await
    }

    /// Evicts clean records idle for longer than the idle TTL; returns how many (a
    /// count to log or ignore: the eviction is done either way).
    pub fn evict_idle(&self) -> usize {
        self.inner.evict_idle()
    }

    /// Counters and sizes.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    #[inline]
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) { Err(Error::Closed) } else { Ok(()) }
    }

    /// Open, and not failed: writes are accepted.
    #[inline]
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        match self.inner.failure.get() {
            Some(cause) => Err(Error::Failed { cause: cause.clone() }),
            None => Ok(()),
        }
    }
}

impl Inner {
    /// The table named `name`, if it exists. ⚑ One this directory does not know may
    /// still be in PostgreSQL (a WAL restored from before it was created): until the
    /// first connection has loaded PostgreSQL's catalogue, PostgreSQL is asked first —
    /// at once [`Error::Unavailable`] while it is down — so an unknown table is never
    /// taken for a missing one (a delete dropped, a schema replaced).
    pub(crate) async fn table(&self, name: &str) -> Result<Option<Arc<Table>>> {
        if let Some(t) = self.tables.get(name) {
            return Ok(Some(t));
        }
        if !self.pg.connected() {
            self.pg().await?;
        }
        Ok(self.tables.get(name))
    }

    /// The table for a write, created (empty schema) if it does not exist.
    pub(crate) async fn table_for_write(&self, name: &str) -> Result<Arc<Table>> {
        validate::table_name(name)?;
        if let Some(t) = self.table(name).await? {
            return Ok(t);
        }
        let (table, created) = self.tables.get_or_insert(name, Schema::default(), false);
        if created {
            let lsn = self.log_schema(&table, Schema::default())?;
            self.wait_durable(lsn).await?;
            if let Err(e) = self.ensure_pg_table(&table).await {
                tracing::warn!(table = name, error = %e, "table not yet created in PostgreSQL; the next flush retries");
            }
        }
        Ok(table)
    }

    /// After a write: acknowledged as the engine's durability says (see
    /// [`Inner::acknowledge`]).
    pub(crate) async fn after_write(&self, lsn: Lsn, dirty: usize) -> Result<()> {
        self.acknowledge(lsn, dirty, self.config.durability).await
    }

    /// After a write: with `Sync`, wait until it is on stable storage (group commit);
    /// nudge the flusher when the written table alone has passed the dirty threshold
    /// (`dirty` records; the background task checks the total on every tick).
    pub(crate) async fn acknowledge(&self, lsn: Lsn, dirty: usize, durability: Durability) -> Result<()> {
        if dirty >= self.config.flush_dirty_threshold {
            self.wake.notify_one();
        }
        match (durability, &self.syncer) {
            (Durability::Sync, _) => Box::pin(self.sync_through(lsn)).await?,
            // A `Sync` engine has no periodic sync: its syncer starts one now, unwaited.
            (Durability::Periodic(_), Some(syncer)) => syncer.request(lsn),
            (Durability::Periodic(_), None) => {}
        }
        Ok(())
    }

    /// Returns once every record through `lsn` is on stable storage, whatever the
    /// engine's durability: through the `Sync` engine's syncer, or (a `Sync` write in a
    /// `Periodic` engine) a sync of the WAL's own, shared with any running at once.
    async fn sync_through(&self, lsn: Lsn) -> Result<()> {
        if let Some(syncer) = &self.syncer {
            return syncer.wait(lsn).await;
        }
        let wal = Arc::clone(&self.wal);
        tokio::task::spawn_blocking(move || wal.wait_durable(lsn)).await.map_err(|_| Error::Closed)??;
        Ok(())
    }

    pub(crate) async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        match &self.syncer {
            Some(syncer) => syncer.wait(lsn).await,
            None => Ok(()),
        }
    }

    /// Fails the engine for good (fail-stop): writes are refused with the cause.
    pub(crate) fn fail(&self, cause: String) {
        tracing::error!(%cause, "memdb failed: refusing writes from now on");
        let _ = self.failure.set(cause);
        self.over_budget.store(false, Ordering::Relaxed);
    }

    /// Makes writers wait while over the dirty/WAL budget, then fail.
    pub(crate) async fn backpressure(&self) -> Result<()> {
        if !self.over_budget.load(Ordering::Relaxed) {
            return Ok(());
        }
        let start = Instant::now();
        while self.over_budget.load(Ordering::Relaxed) {
            self.wake.notify_one();
            if start.elapsed() >= self.config.backpressure_timeout {
                return Err(Error::Backpressure {
                    dirty: self.tables.dirty(),
                    wal_bytes: self.wal.stats().bytes,
                    waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> Stats {
        let tables = self.tables.all();
        let wal = self.wal.stats();
        let dirty: usize = tables.iter().map(|t| t.cache.dirty()).sum();
        let parked: usize = tables.iter().map(|t| t.cache.parked()).sum();
        // Parked records wait for their next write, not for a flush: they are not lag.
        let oldest = if dirty.saturating_sub(parked) == 0 {
            Default::default()
        } else {
            self.last_clean.lock().unwrap_or_else(PoisonError::into_inner).elapsed()
        };
        let c = &self.counters;
        Stats {
            cache_hits: c.cache_hits.get(),
            cache_misses: c.cache_misses.get(),
            inserts: c.inserts.get(),
            deletes: c.deletes.get(),
            flushes: c.flushes.get(),
            flushed_records: c.flushed_records.get(),
            flush_failures: c.flush_failures.get(),
            evictions: c.evictions.get(),
            cached_records: tables.iter().map(|t| t.cache.cached()).sum(),
            dirty_records: dirty,
            parked_records: parked,
            tables: tables.len(),
            wal_bytes: wal.bytes,
            wal_segments: wal.segments,
            oldest_unflushed: oldest,
            postgres_up: self.pg.is_up(),
            replayed_records: self.drain.replayed,
            replay_backlog: self.drain.left(),
            failure: self.failure.get().cloned(),
        }
    }
}
