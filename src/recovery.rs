//! Opening: the WAL directory (locked), its table catalogue, and the replay of every
//! record the WAL still holds into memory as dirty — then open returns. PostgreSQL is
//! not waited for: the background flush drains the backlog into it, and works with it
//! down (writes go on into the WAL and memory). Only a directory without a catalogue (a
//! new one) needs PostgreSQL at open, to learn its tables and LSN floor once.
//!
//! Replay is idempotent: records PostgreSQL already has are rewritten under the LSN
//! guard, which changes nothing; a crash during recovery just recovers again.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use memdb_wal::storage::Storage;
use memdb_wal::{Op, Wal};
use tokio::sync::Notify;

use crate::cache::Clock;
use crate::config::Config;
use crate::db::{Inner, MemDb};
use crate::drain::Drain;
use crate::durability::Syncer;
use crate::error::{Error, Result};
use crate::pg::Pg;
use crate::record::Record;
use crate::schema::Schema;
use crate::stats::Counters;
use crate::store::Store;
use crate::tables::Tables;

/// Room in a WAL record for the key and encoding beside the largest value.
const RECORD_OVERHEAD: usize = 64 << 10;

pub(crate) async fn open(config: Config) -> Result<MemDb> {
    open_on(config, None).await
}

/// Opens on `storage` instead of the directory `config.wal_dir` when it is given (the
/// simulated disk of the fault drills, through `MemDb::open_on`).
pub(crate) async fn open_on(config: Config, storage: Option<Arc<dyn Storage>>) -> Result<MemDb> {
    config.validate()?;
    let started = Instant::now();
    // The WAL directory first: owning it proves no live process runs this instance, so
    // the sessions the first connection fences off are a dead one's.
    let storage = match storage {
        Some(storage) => storage,
        None => {
            let dir = config.wal_dir.clone();
            tokio::task::spawn_blocking(move || Wal::lock_dir(dir)).await.map_err(|_| Error::Closed)??
        }
    };
    let store = Store::new(&config.pg_dsn, &instance_name(&config.wal_dir), config.max_connections, config.pg_timeout)?;
    let opts = memdb_wal::Options {
        durability: config.durability,
        segment_size: config.wal_segment_bytes,
        max_record_size: config.max_record_bytes + RECORD_OVERHEAD,
        ..memdb_wal::Options::default()
    };
    let wal = tokio::task::spawn_blocking(move || Wal::open_with(storage, opts)).await.map_err(|_| Error::Closed)??;
    let wal = Arc::new(wal);
    let syncer = match config.durability {
        memdb_wal::Durability::Sync => Some(Syncer::start(Arc::clone(&wal))?),
        memdb_wal::Durability::Periodic(_) => None,
    };
    let run_start = wal.recovery_report().next_lsn;
    // The catalogue first, then the WAL's create records over it (the newest wins).
    let tables = Tables::default();
    let catalogue = crate::catalogue::load(&wal, &tables)?;
    let clock = Clock::new();
    let replay = (Arc::clone(&wal), clock.now());
    let (tables, replayed) = tokio::task::spawn_blocking(move || {
        let replayed = replay_wal(&replay.0, &tables, replay.1)?;
        Ok::<_, Error>((tables, replayed))
    })
    .await
    .map_err(|_| Error::Closed)??;
    memdb_wal::kill_point::hit(memdb_wal::kill_point::DURING_RECOVERY);
    let backlog = tables.dirty();
    // Writes from here on are unverified against PostgreSQL's LSN floor until the first
    // connection — and so are those of earlier runs that never connected.
    let mut unverified = catalogue.as_ref().map(|c| c.unverified.clone()).unwrap_or_default();
    unverified.push(crate::catalogue::Unverified::new(run_start));
    let wake = Arc::new(Notify::new());
    let inner = Arc::new(Inner {
        config,
        wal,
        pg: Pg::new(store),
        unverified: Mutex::new(unverified),
        tables,
        clock,
        counters: Counters::default(),
        drain: Drain::new(replayed, run_start - 1, backlog),
        catalogue_saved: Arc::new(Mutex::new(crate::catalogue::Saved::loaded(
            catalogue.as_ref().map(|c| c.payload.clone()).unwrap_or_default(),
        ))),
        syncer,
        flush_lock: tokio::sync::Mutex::new(()),
        wake: Arc::clone(&wake),
        over_budget: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        last_clean: Mutex::new(Instant::now()),
        background: Mutex::new(None),
        failure: std::sync::OnceLock::new(),
        #[cfg(feature = "internals")]
        inject_panic: AtomicBool::new(false),
    });
    match catalogue {
        None => learn_from_postgres(&inner).await?,
        // ⚑ Saved before any write of this run is acknowledged: a crash before the first
        // connection leaves the next run knowing where this run's writes begin.
        Some(_) => inner.save_catalogue().await?,
    }
    tracing::info!(replayed, backlog, elapsed = ?started.elapsed(), "memdb opened; the backlog drains in the background");
    let task = crate::background::spawn(&inner, wake);
    *inner.background.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
    Ok(MemDb { inner })
}

/// A WAL directory without a catalogue (new, or from a memdb that kept none) learns its
/// tables from PostgreSQL once, then keeps them: PostgreSQL must answer this one open.
async fn learn_from_postgres(inner: &Arc<Inner>) -> Result<()> {
    let what = "the first open of a WAL directory (it learns its tables and LSN floor from PostgreSQL once, then keeps them locally)";
    match inner.pg().await {
        Ok(_) => {}
        Err(Error::Unavailable { down_for, cause, .. }) => return Err(Error::Unavailable { what, down_for, cause }),
        Err(Error::Postgres(
            e @ (crate::store::StoreError::Unavailable { .. } | crate::store::StoreError::Timeout { .. }),
        )) => {
            return Err(Error::Unavailable { what, down_for: std::time::Duration::ZERO, cause: e.to_string() });
        }
        Err(e) => return Err(e),
    }
    inner.save_catalogue().await
}

/// The `application_name` of this instance's PostgreSQL sessions: `memdb` and a stable
/// hash (FNV-1a) of the host and the WAL directory, the instance's identity.
fn instance_name(wal_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let dir = std::fs::canonicalize(wal_dir).unwrap_or_else(|_| wal_dir.to_path_buf());
    let identity = format!("{}\0{}", host.trim(), dir.display());
    let hash =
        identity.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("memdb {hash:016x}")
}

/// Loads every record of the WAL into memory as dirty (highest LSN wins per key),
/// straight from the segments' bytes (no owned copy of each record).
fn replay_wal(wal: &Wal, tables: &Tables, now: u32) -> Result<u64> {
    let mut count = 0;
    let mut last: Option<Arc<crate::tables::Table>> = None;
    wal.replay_each(1, |record| {
        count += 1;
        let entry = record.entry;
        let invalid = |reason: &str| Error::InvalidValue {
            table: entry.table.to_owned(),
            key: entry.key.to_owned(),
            reason: format!("{reason} (WAL record at LSN {})", record.lsn),
        };
        let text = std::str::from_utf8(entry.value).map_err(|_| invalid("a WAL record that is not UTF-8"))?;
        // Runs of records of one table are the rule: look it up once per run.
        let table = match last.take() {
            Some(t) if t.name == entry.table => t,
            _ => tables.get_or_insert(entry.table, Schema::default(), false).0,
        };
        match entry.op {
            Op::CreateTable => {
                let schema =
                    Schema::from_json(entry.table, &serde_json::from_str(text).map_err(|e| invalid(&e.to_string()))?)?;
                table.recover_schema(schema, record.lsn);
            }
            Op::Put | Op::Delete => {
                let value = Record::new(entry.key, (entry.op == Op::Put).then_some(text));
                table.cache.recover(entry.key, value, record.lsn, now);
            }
        }
        last = Some(table);
        Ok::<_, Error>(())
    })?;
    Ok(count)
}
