//! Group commit for async writers in `Sync` mode: one thread syncs the WAL, writers
//! await the durable LSN it publishes, so every writer that arrives during a sync shares
//! the next one.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use memdb_wal::{Lsn, Wal};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// The durable LSN, or the error that stopped the WAL.
type Published = std::result::Result<Lsn, String>;

pub(crate) struct Syncer {
    wanted: Arc<(Mutex<Wanted>, Condvar)>,
    durable: watch::Receiver<Published>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Wanted {
    lsn: Lsn,
    stop: bool,
}

impl Syncer {
    pub(crate) fn start(wal: Arc<Wal>) -> Result<Self> {
        let wanted = Arc::new((Mutex::new(Wanted::default()), Condvar::new()));
        let (tx, durable) = watch::channel(Ok(wal.durable_lsn()));
        let shared = Arc::clone(&wanted);
        let thread = std::thread::Builder::new()
            .name("memdb-group-commit".into())
            .spawn(move || run(&wal, &shared, &tx))
            .map_err(|e| {
                Error::Wal(memdb_wal::Error::Io { op: "starting", target: "the group-commit thread".into(), source: e })
            })?;
        Ok(Self { wanted, durable, thread: Some(thread) })
    }

    /// Asks for every record through `lsn` to be synced, without waiting for it.
    pub(crate) fn request(&self, lsn: Lsn) {
        let (lock, cond) = &*self.wanted;
        let mut wanted = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if wanted.lsn < lsn {
            wanted.lsn = lsn;
            cond.notify_one();
        }
    }

    /// Returns once every record through `lsn` is on stable storage.
    pub(crate) async fn wait(&self, lsn: Lsn) -> Result<()> {
        self.request(lsn);
        let mut rx = self.durable.clone();
        let published = rx.wait_for(|p| p.as_ref().map_or(true, |d| *d >= lsn)).await.map_err(|_| Error::Closed)?;
        match &*published {
            Ok(_) => Ok(()),
            Err(cause) => Err(Error::Wal(memdb_wal::Error::Poisoned { cause: cause.clone() })),
        }
    }
}

fn run(wal: &Wal, wanted: &(Mutex<Wanted>, Condvar), tx: &watch::Sender<Published>) {
    let (lock, cond) = wanted;
    loop {
        {
            let mut w = lock.lock().unwrap_or_else(PoisonError::into_inner);
            // ⚑ Others make the log durable too (a flush, a rotation): publish that
            // before deciding a writer needs no sync, or the writer waits for ever.
            while !w.stop && w.lsn <= publish(tx, wal.durable_lsn()) {
                w = cond.wait(w).unwrap_or_else(PoisonError::into_inner);
            }
            if w.stop {
                return;
            }
        }
        // Everything written so far, not just what was asked: the group in this commit.
        match wal.sync() {
            Ok(lsn) => {
                publish(tx, lsn.max(wal.durable_lsn()));
            }
            Err(e) => {
                drop(tx.send_replace(Err(e.to_string())));
                return;
            }
        }
    }
}

/// Publishes `durable` if it is above what was published; returns it.
fn publish(tx: &watch::Sender<Published>, durable: Lsn) -> Lsn {
    tx.send_if_modified(|published| match published {
        Ok(current) if *current < durable => {
            *current = durable;
            true
        }
        _ => false,
    });
    durable
}

impl Drop for Syncer {
    fn drop(&mut self) {
        let (lock, cond) = &*self.wanted;
        lock.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        cond.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
