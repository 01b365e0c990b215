//! Durability: group commit, the periodic background sync, and fail-stop.
//!
//! One caller at a time syncs (the leader); callers that need a durable LSN while a
//! sync runs wait for it, and if it did not cover them, one of them leads the next. So
//! N concurrent appenders in `Sync` mode share about one sync per round. A failed
//! sync poisons the log: it is never retried, and nothing after it is acknowledged.

use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::error::Error;
use crate::record::Lsn;
use crate::writer::{SyncTarget, Writer};

/// The group-commit state.
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// Every LSN up to this one is on stable storage.
    pub durable: Lsn,
    /// A leader is syncing now.
    pub leading: bool,
    /// Syncs performed (statistics).
    pub syncs: u64,
}

/// Durability bookkeeping shared by appenders, the background task and rotation.
#[derive(Debug, Default)]
pub(crate) struct Durable {
    state: Mutex<SyncState>,
    changed: Condvar,
    poison: OnceLock<String>,
}

impl Durable {
    pub(crate) fn new(durable: Lsn) -> Self {
        Self { state: Mutex::new(SyncState { durable, ..SyncState::default() }), ..Self::default() }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails if the log is poisoned.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match self.poison.get() {
            Some(cause) => Err(Error::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Stops the log for writes for good, keeping the first cause; wakes every waiter.
    pub(crate) fn poison(&self, err: &Error) {
        if self.poison.set(err.to_string()).is_ok() {
            tracing::error!(error = %err, "WAL poisoned: refusing further writes");
        }
        let _guard = self.state();
        self.changed.notify_all();
    }

    /// Records that everything through `lsn` is durable (used by rotation).
    pub(crate) fn advance(&self, lsn: Lsn) {
        let mut state = self.state();
        if lsn > state.durable {
            state.durable = lsn;
            self.changed.notify_all();
        }
    }

    /// Returns once `lsn` is durable, syncing as the leader when no one else is.
    pub(crate) fn wait_for(&self, lsn: Lsn, writer: &Mutex<Writer>) -> Result<(), Error> {
        let mut state = self.state();
        loop {
            self.check()?;
            if state.durable >= lsn {
                return Ok(());
            }
            if state.leading {
                state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.leading = true;
            drop(state);
            let target = writer.lock().unwrap_or_else(PoisonError::into_inner).sync_target();
            let result = sync_target(&target);
            crate::kill_point::hit(crate::kill_point::AFTER_SYNC);
            state = self.state();
            state.leading = false;
            state.syncs += 1;
            match result {
                Ok(()) => state.durable = state.durable.max(target.lsn),
                Err(e) => {
                    drop(state);
                    self.poison(&e);
                    return Err(e);
                }
            }
            self.changed.notify_all();
        }
    }
}

/// Syncs the active segment from its synced offset through `target.end`.
fn sync_target(target: &SyncTarget) -> Result<(), Error> {
    let from = target.synced_to.load(Ordering::Acquire);
    if target.end > from {
        target.file.sync_range(from, target.end - from).map_err(|e| {
            let what = format!("{} bytes {from}..{} (through LSN {})", target.name, target.end, target.lsn);
            Error::io("syncing", what, e)
        })?;
        target.synced_to.fetch_max(target.end, Ordering::AcqRel);
    }
    Ok(())
}
