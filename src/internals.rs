//! Test hooks behind the `internals` feature: [`MemDb::crash`] simulates the process dying,
//! [`MemDb::open_on`] puts the WAL on a simulated disk.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::db::{Inner, MemDb};

/// How often `crash` looks whether a blocking WAL call still holds the log.
const POLL: Duration = Duration::from_millis(1);

impl MemDb {
    /// Opens the database with its WAL on `storage` (e.g. the simulated disk,
    /// [`memdb_wal::storage::SimStorage`], to inject `EIO` or a full disk) instead of the
    /// directory `config.wal_dir`.
    ///
    /// # Errors
    /// As [`MemDb::open`].
    ///
    /// # Cancel safety
    /// As [`MemDb::open`].
    pub async fn open_on(config: crate::Config, storage: Arc<dyn memdb_wal::storage::Storage>) -> crate::Result<Self> {
        crate::recovery::open_on(config, Some(storage)).await
    }

    /// Makes the background task panic at its next tick, as a bug would: the engine must
    /// fail-stop ([`crate::Error::Failed`] on writes, from `close`, in `stats().failure`).
    pub fn panic_background(&self) {
        self.inner.inject_panic.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }

    /// Simulates the process dying (a `kill -9`): stops the background task at whatever
    /// await point it is at, then drops the engine **without** flushing to PostgreSQL or
    /// closing. Nothing in memory survives; what the next [`MemDb::open`] finds is the
    /// WAL as written (the WAL's own drop may sync it, which a killed process does not
    /// do — but a killed process keeps the page cache, so the data seen is the same) and
    /// PostgreSQL as last flushed.
    ///
    /// Once it returns, the WAL directory's lock is released, so the same process can
    /// reopen the directory at once — **provided the caller holds no other clone** of this
    /// database (and no task still runs with one). If other clones exist, they are
    /// marked closed (their calls fail with [`crate::Error::Closed`], their
    /// [`MemDb::close`] flushes nothing) and the engine, with the lock, goes when the
    /// last of them is dropped.
    ///
    /// # Cancel safety
    /// Dropped part way, the engine is still dead (closed for every clone); the WAL lock
    /// goes when the last reference does.
    pub async fn crash(self) {
        let MemDb { inner } = self;
        // Whatever else holds a clone is as dead as the process now: no more writes, no
        // flush on close, and the background task stops at its next look.
        inner.closed.store(true, Ordering::Release);
        let task = inner.background.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            task.abort().await;
        }
        // The background task holds the engine only weakly, so with no other clone this
        // is the last strong reference.
        let Some(Inner { wal, syncer, .. }) = Arc::into_inner(inner) else {
            tracing::warn!("MemDb::crash with other clones alive: the WAL stays locked until they are dropped");
            return;
        };
        // The group-commit thread holds the WAL; dropping the syncer joins it.
        drop(syncer);
        // An aborted flush may have left a blocking WAL call (truncation) running on the
        // blocking pool with its own handle on the log: it is bounded local I/O, so wait
        // for it to let go, then drop the log here, which releases the directory lock.
        let mut wal = wal;
        let wal = loop {
            match Arc::try_unwrap(wal) {
                Ok(wal) => break wal,
                Err(shared) => {
                    wal = shared;
                    tokio::time::sleep(POLL).await;
                }
            }
        };
        // Dropping the log joins its sync thread and syncs: blocking work.
        let _ = tokio::task::spawn_blocking(move || drop(wal)).await;
    }
}
