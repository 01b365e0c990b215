//! The log: open (with recovery), append, sync, replay, truncate, close.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::error::Error;
use crate::options::{Durability, Options};
use crate::record::{Entry, Lsn};
use crate::recovery::{RecoveryReport, recover};
use crate::replay::{Replay, SegmentReplay};
use crate::storage::{Access, DirStorage, Storage, unsafe_permissions};
use crate::sync::Durable;
use crate::writer::{Active, Failure, Writer};

/// A write-ahead log over a directory of segments.
///
/// Cheap to share across threads (`&Wal` appends concurrently). Dropping it stops the
/// background sync and syncs once more; [`Wal::close`] does the same, reports errors and
/// releases the directory at once, even while other threads still hold the `Wal`.
pub struct Wal {
    shared: Arc<Shared>,
    /// Held across a truncation, and by `close` before it releases the directory: a
    /// truncation still running (its caller gone) never touches a released directory.
    truncating: Mutex<()>,
    background: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    report: RecoveryReport,
}

pub(crate) struct Shared {
    pub storage: Arc<dyn Storage>,
    pub opts: Options,
    pub writer: Mutex<Writer>,
    pub durable: Durable,
    /// LSN of the last record appended.
    pub written: AtomicU64,
}

/// Counters and sizes, for stats and operators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Segment files, the active one included.
    pub segments: usize,
    /// Bytes of valid data in all segments (headers included).
    pub bytes: u64,
    /// LSN of the oldest record still in the log (`next_lsn` when there is none).
    pub first_lsn: Lsn,
    /// The LSN the next append gets.
    pub next_lsn: Lsn,
    /// Every record through this LSN is on stable storage.
    pub durable_lsn: Lsn,
    /// Syncs performed by group commit and the background task.
    pub syncs: u64,
}

impl Wal {
    /// Opens (creating if needed) the log in directory `dir`, running recovery.
    ///
    /// # Errors
    /// I/O errors, [`Error::Corrupt`] on damage no crash explains, and
    /// [`Error::UnsupportedVersion`]; an `Io` error with `WouldBlock` when another process
    /// has the directory open.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Self, Error> {
        Self::open_with(Self::lock_dir(dir)?, opts)
    }

    /// Creates (if needed) and locks the directory `dir` for a log, without reading it:
    /// for a caller that must own the directory before it decides the log's
    /// [`Options`]; then [`Wal::open_with`].
    ///
    /// # Errors
    /// As [`Wal::open`].
    pub fn lock_dir(dir: impl AsRef<Path>) -> Result<Arc<dyn Storage>, Error> {
        Self::lock_dir_with(dir, Access::default())
    }

    /// [`Wal::lock_dir`] creating files with `access`'s modes (the directory too, if it
    /// is new).
    ///
    /// # Errors
    /// As [`Wal::open`]; [`Error::UnsafePermissions`] when the directory or one of its
    /// log files is owned by another user or writable by others.
    pub fn lock_dir_with(dir: impl AsRef<Path>, access: Access) -> Result<Arc<dyn Storage>, Error> {
        let dir = dir.as_ref();
        let storage = DirStorage::open_with(dir, access).map_err(|e| match unsafe_permissions(&e) {
            Some(refused) => Error::UnsafePermissions(refused.clone()),
            None => Error::io("opening", dir.display().to_string(), e),
        })?;
        Ok(Arc::new(storage))
    }

    /// Opens the log on any [`Storage`] (the simulated disk in tests), running recovery.
    ///
    /// # Errors
    /// As [`Wal::open`].
    pub fn open_with(storage: Arc<dyn Storage>, opts: Options) -> Result<Self, Error> {
        opts.validate()?;
        let rec = recover(storage.as_ref(), &opts)?;
        let active = Active {
            file: rec.active_file,
            name: rec.active.name,
            first_lsn: rec.active.first_lsn,
            offset: rec.active.used,
            synced_to: Arc::new(AtomicU64::new(rec.active.used)),
        };
        let next_lsn = rec.report.next_lsn;
        tracing::info!(report = ?rec.report, "WAL opened");
        let resume = (next_lsn != rec.active.last_lsn + 1).then_some(next_lsn);
        let shared = Arc::new(Shared {
            writer: Mutex::new(Writer::new(active, rec.sealed, rec.active.last_lsn + 1, resume, rec.dir_id)),
            // Recovery synced every record kept; the LSNs skipped hold none.
            durable: Durable::new(next_lsn - 1),
            written: AtomicU64::new(next_lsn - 1),
            storage,
            opts,
        });
        let background = match shared.opts.durability {
            Durability::Periodic(interval) => Some(spawn_periodic_sync(&shared, interval)?),
            Durability::Sync => None,
        };
        Ok(Self { shared, truncating: Mutex::new(()), background: Mutex::new(background), report: rec.report })
    }

    /// Appends a record and returns its LSN once it is as durable as the log's
    /// [`Durability`] promises.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`] (nothing written), [`Error::Poisoned`] after an earlier
    /// failure, or the I/O error that poisons the log now.
    pub fn append(&self, entry: &Entry<'_>) -> Result<Lsn, Error> {
        let lsn = self.append_nowait(entry)?;
        if self.shared.opts.durability == Durability::Sync {
            self.wait_durable(lsn)?;
        }
        Ok(lsn)
    }

    /// Appends a record and returns its LSN as soon as its bytes are in the kernel
    /// (safe from a killed process, not yet from power loss); pair with
    /// [`Wal::wait_durable`] to acknowledge later.
    ///
    /// # Errors
    /// As [`Wal::append`].
    pub fn append_nowait(&self, entry: &Entry<'_>) -> Result<Lsn, Error> {
        let shared = &self.shared;
        shared.durable.check()?;
        let mut writer = shared.writer();
        shared.durable.check()?;
        if writer.closed {
            return Err(Error::Closed);
        }
        let (lsn, rotated) = writer.append(shared.storage.as_ref(), &shared.opts, entry).map_err(|f| shared.fail(f))?;
        shared.written.store(lsn, Ordering::Release);
        drop(writer);
        if let Some(durable) = rotated {
            shared.durable.advance(durable);
        }
        Ok(lsn)
    }

    /// Returns once every record through `lsn` is on stable storage (group commit).
    ///
    /// # Errors
    /// [`Error::Poisoned`], or the sync error that poisons the log now.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), Error> {
        self.shared.durable.wait_for(lsn, &self.shared.writer)
    }

    /// Syncs everything appended so far and returns the durable LSN.
    ///
    /// # Errors
    /// As [`Wal::wait_durable`].
    pub fn sync(&self) -> Result<Lsn, Error> {
        let lsn = self.shared.written.load(Ordering::Acquire);
        self.wait_durable(lsn)?;
        Ok(lsn)
    }

    /// Every record with an LSN of at least `from`, oldest first, as appended so far.
    #[must_use]
    pub fn replay(&self, from: Lsn) -> Replay {
        let (segments, last) = self.segments();
        Replay::new(Arc::clone(&self.shared.storage), segments, from, last)
    }

    /// Calls `visit` on every record with an LSN of at least `from`, oldest first, as
    /// appended so far — borrowed from the segment being read, so nothing is copied per
    /// record: the fast way to load a whole log. Stops at the first error `visit`
    /// returns, and returns it.
    ///
    /// # Errors
    /// I/O errors and [`Error::Corrupt`] (as [`Wal::replay`]), or `visit`'s.
    pub fn replay_each<E: From<Error>>(
        &self,
        from: Lsn,
        mut visit: impl FnMut(crate::RecordRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.replay_segments(from).iter().try_for_each(|segment| segment.visit(&mut visit))
    }

    /// The log from `from` on, as appended so far, cut at its segments (oldest first):
    /// each [`SegmentReplay`] reads one segment on its own, so several threads can load
    /// a log together, and a caller that keeps the order of the parts has the log's.
    #[must_use]
    pub fn replay_segments(&self, from: Lsn) -> Vec<SegmentReplay> {
        let (segments, last) = self.segments();
        let skip = crate::replay::segments_before(&segments, from);
        segments
            .into_iter()
            .skip(skip)
            .map(|(name, _, used)| SegmentReplay { storage: Arc::clone(&self.shared.storage), name, used, from, last })
            .collect()
    }

    /// The segments to read, oldest first (name, first LSN, bytes of data), and the LSN
    /// of the last record appended.
    fn segments(&self) -> (Vec<(String, Lsn, u64)>, Lsn) {
        let writer = self.shared.writer();
        let mut segments: Vec<(String, Lsn, u64)> =
            writer.sealed.iter().map(|s| (s.name.clone(), s.first_lsn, s.used)).collect();
        segments.push((writer.active.name.clone(), writer.active.first_lsn, writer.active.offset));
        (segments, writer.next_lsn - 1)
    }

    /// Removes every segment whose records all have an LSN of at most `lsn` — the
    /// records the caller has made durable elsewhere — crash-safely and oldest first.
    /// When that includes the active segment, a new one is started first, so the LSN
    /// floor stays on disk. Returns the number of segments removed.
    ///
    /// # Errors
    /// I/O errors syncing the active segment (which poison the log), creating the new
    /// one or removing files (which do not: a file left behind is removed next time, or
    /// replayed harmlessly).
    pub fn truncate_through(&self, lsn: Lsn) -> Result<usize, Error> {
        let shared = &self.shared;
        let _truncating = self.truncating.lock().unwrap_or_else(PoisonError::into_inner);
        shared.durable.check()?;
        if shared.writer().closed {
            return Err(Error::Closed);
        }
        // Sealed segments go first: on a full disk that makes room for the new segment.
        let mut removed = self.remove_sealed_through(lsn)?;
        let rotated = {
            let mut writer = shared.writer();
            let covers_active = writer.active_has_records() && writer.next_lsn - 1 <= lsn;
            if covers_active {
                let durable = writer.rotate(shared.storage.as_ref(), &shared.opts).map_err(|f| shared.fail(f))?;
                shared.durable.advance(durable);
            }
            covers_active
        };
        if rotated {
            removed += self.remove_sealed_through(lsn)?;
        }
        Ok(removed)
    }

    /// Removes the sealed segments whose records are all at or below `lsn`, oldest first,
    /// then syncs the directory. The writer lock is held only to take them off the list.
    fn remove_sealed_through(&self, lsn: Lsn) -> Result<usize, Error> {
        let shared = &self.shared;
        let doomed = {
            let mut writer = shared.writer();
            let n = writer.sealed.iter().take_while(|s| s.last_lsn <= lsn).count();
            writer.sealed.drain(..n).collect::<Vec<_>>()
        };
        for segment in &doomed {
            shared.storage.remove(&segment.name).map_err(|e| Error::io("removing", &segment.name, e))?;
            crate::kill_point::hit(crate::kill_point::MID_TRUNCATION);
        }
        if !doomed.is_empty() {
            shared.storage.sync_dir().map_err(|e| Error::io("syncing", "the WAL directory", e))?;
            crate::kill_point::hit(crate::kill_point::AFTER_DIR_SYNC);
            tracing::debug!(through = lsn, removed = doomed.len(), "WAL truncated");
        }
        Ok(doomed.len())
    }

    /// Replaces the meta file (see [`crate::meta`]) with `payload`, crash-safely: when
    /// this returns, a crash or power cut leaves `payload` there.
    ///
    /// # Errors
    /// I/O errors (the old meta file is then still whole), [`Error::RecordTooLarge`]
    /// past [`crate::meta::MAX_META`], and [`Error::Closed`].
    pub fn write_meta(&self, payload: &[u8]) -> Result<(), Error> {
        // Held as a truncation is: `close` waits for it before releasing the directory.
        let _writing = self.truncating.lock().unwrap_or_else(PoisonError::into_inner);
        if self.shared.writer().closed {
            return Err(Error::Closed);
        }
        crate::meta::write(self.shared.storage.as_ref(), payload)
    }

    /// The meta file's payload, `None` when none was ever written.
    ///
    /// # Errors
    /// I/O errors, and [`Error::BadMeta`] when it is damaged.
    pub fn read_meta(&self) -> Result<Option<Vec<u8>>, Error> {
        crate::meta::read(self.shared.storage.as_ref())
    }

    /// Makes every later append get an LSN of at least `min_next`: the next append starts
    /// a restart segment there (rounded up to [`crate::format::RESTART_ALIGN`]) unless the
    /// log is past it already. For a caller that learns, after opening, of LSNs handed out
    /// elsewhere (memdb: PostgreSQL holds rows above a WAL restored from an old copy).
    /// Allocates nothing until the next append.
    ///
    /// # Errors
    /// [`Error::LsnExhausted`] when `min_next` is past [`crate::format::MAX_LSN`].
    pub fn advance_to(&self, min_next: Lsn) -> Result<(), Error> {
        let mut writer = self.shared.writer();
        if writer.next_lsn() < min_next {
            let restart = min_next
                .checked_next_multiple_of(crate::format::RESTART_ALIGN)
                .filter(|&lsn| lsn <= crate::format::MAX_LSN)
                .ok_or(Error::LsnExhausted)?;
            tracing::warn!(
                from = writer.next_lsn(),
                to = restart,
                "WAL advanced: LSNs up to here were handed out elsewhere"
            );
            writer.resume = Some(restart);
            // As on opening: the LSNs skipped hold no record, and `next_lsn` says so.
            self.shared.written.store(restart - 1, Ordering::Release);
        }
        Ok(())
    }

    /// What recovery found when the log was opened.
    #[must_use]
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The LSN the next append will get.
    #[must_use]
    pub fn next_lsn(&self) -> Lsn {
        self.shared.written.load(Ordering::Acquire) + 1
    }

    /// Every record through this LSN is on stable storage.
    #[must_use]
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable.state().durable
    }

    /// Sizes and counters.
    #[must_use]
    pub fn stats(&self) -> WalStats {
        let (segments, bytes, first_lsn, next_lsn) = {
            let w = self.shared.writer();
            let bytes = w.sealed.iter().map(|s| s.used).sum::<u64>() + w.active.offset;
            let first = w.sealed.first().map_or(w.active.first_lsn, |s| s.first_lsn);
            (w.sealed.len() + 1, bytes, first, w.next_lsn())
        };
        let state = self.shared.durable.state();
        WalStats { segments, bytes, first_lsn, next_lsn, durable_lsn: state.durable, syncs: state.syncs }
    }

    /// Stops the background sync, syncs everything appended, and releases the
    /// directory (another `Wal` may open it). Every later append fails with
    /// [`Error::Closed`]; closing again does nothing.
    ///
    /// # Errors
    /// As [`Wal::sync`].
    pub fn close(&self) -> Result<(), Error> {
        let _no_truncation = self.truncating.lock().unwrap_or_else(PoisonError::into_inner);
        self.stop_background();
        let synced = if self.shared.durable.check().is_ok() { self.sync().map(drop) } else { Ok(()) };
        let mut writer = self.shared.writer();
        if !writer.closed {
            writer.closed = true;
            self.shared.storage.release();
        }
        synced
    }

    fn stop_background(&self) {
        let background = self.background.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((stop, handle)) = background {
            drop(stop);
            let _ = handle.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "WAL sync on drop failed");
        }
    }
}

impl Shared {
    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The error to return for a failed append, poisoning the log if it was fatal.
    fn fail(&self, failure: Failure) -> Error {
        match failure {
            Failure::Refused(e) => e,
            Failure::Fatal(e) => {
                self.durable.poison(&e);
                e
            }
        }
    }
}

fn spawn_periodic_sync(
    shared: &Arc<Shared>,
    interval: std::time::Duration,
) -> Result<(mpsc::Sender<()>, JoinHandle<()>), Error> {
    let (stop, stopped) = mpsc::channel::<()>();
    let shared = Arc::clone(shared);
    let handle = std::thread::Builder::new()
        .name("memdb-wal-sync".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                let lsn = shared.written.load(Ordering::Acquire);
                if shared.durable.check().is_err() {
                    return;
                }
                if let Err(e) = shared.durable.wait_for(lsn, &shared.writer) {
                    tracing::error!(error = %e, "WAL periodic sync failed");
                    return;
                }
            }
        })
        .map_err(|e| Error::io("starting", "the WAL sync thread", e))?;
    Ok((stop, handle))
}
