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
use memdb_wal::{Op, SegmentReplay, Wal};
use tokio::sync::Notify;

use crate::cache::{Clock, Gathered};
use crate::config::Config;
use crate::db::{Inner, MemDb};
use crate::drain::Drain;
use crate::durability::Syncer;
use crate::error::{Error, Result};
use crate::pg::Pg;
use crate::record::Record;
use crate::schema::Schema;
use crate::stats::Counters;
use crate::store::{Store, StoreSettings};
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
            let (dir, access) = (config.wal_dir.clone(), config.wal_access);
            tokio::task::spawn_blocking(move || Wal::lock_dir_with(dir, access)).await.map_err(|_| Error::Closed)??
        }
    };
    let store = Store::new(&StoreSettings::of(&config, instance_name(&config.wal_dir)))?;
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

/// Records a reader gathers before applying them: enough for each shard's run to fill
/// its table's cache lines (2^18: about 64 MiB of 214-byte records)...
const GATHER_RECORDS: usize = 1 << 18;
/// ...and bytes of keys and values: superseded versions of a key (a log of updates of
/// large records) never pile up in memory past this, per reader.
const GATHER_BYTES: usize = 64 << 20;

/// Loads every record of the WAL into memory as dirty (highest LSN wins per key): the
/// log is cut into runs of whole segments read side by side, one per core, each record
/// borrowed from its segment's bytes, gathered by table and shard and applied a shard
/// at a time (see `cache::Gathered`).
fn replay_wal(wal: &Wal, tables: &Tables, now: u32) -> Result<u64> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let runs = split_evenly(wal.replay_segments(1), threads, SegmentReplay::len);
    let readers = runs.len();
    let loaded: Vec<Result<Loaded>> = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .into_iter()
            .enumerate()
            .map(|(i, run)| s.spawn(move || load(&run, tables, crate::cache::SHARDS * i / readers, now)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    // The oldest run's error first: the one a reader of the whole log meets first.
    let loaded = loaded.into_iter().collect::<Result<Vec<_>>>()?;
    let mut count = 0;
    // Each reader's newly dirty keys, oldest part of the log first: the dirty lists run
    // in LSN order, as the flush and the WAL truncation after it want.
    for part in loaded {
        count += part.count;
        for (table, gathered) in part.tables {
            table.cache.list_gathered(gathered);
        }
    }
    Ok(count)
}

/// What one reader read: its records are in the maps, their keys not yet listed dirty.
struct Loaded {
    count: u64,
    tables: Vec<(Arc<crate::tables::Table>, Gathered)>,
}

/// Cuts `items` (segments) into at most `n` runs of consecutive ones, of about equal
/// `len` (bytes) each.
fn split_evenly<T>(items: Vec<T>, n: usize, len: impl Fn(&T) -> u64) -> Vec<Vec<T>> {
    let total = u128::from(items.iter().map(&len).sum::<u64>().max(1));
    let mut runs: Vec<Vec<T>> = Vec::new();
    let (mut before, mut run_of_last) = (0u128, None);
    for item in items {
        // Each item goes to the run its middle byte falls in: runs in order, each about
        // a `1/n`th of the bytes.
        let size = u128::from(len(&item));
        let run = (2 * before + size) * n as u128 / (2 * total);
        before += size;
        match runs.last_mut() {
            Some(last) if run_of_last == Some(run) => last.push(item),
            _ => runs.push(vec![item]),
        }
        run_of_last = Some(run);
    }
    runs
}

/// Reads a run of segments into the tables' maps, applying what it gathered every
/// [`GATHER_RECORDS`] records or [`GATHER_BYTES`], starting at shard `first`.
/// Create-table records set their table's schema (the newest wins, whoever reads it).
fn load(segments: &[SegmentReplay], tables: &Tables, first: usize, now: u32) -> Result<Loaded> {
    let mut count = 0;
    let mut gathered: Vec<(Arc<crate::tables::Table>, Gathered)> = Vec::new();
    let (mut pending, mut pending_bytes) = (0, 0);
    let apply = |gathered: &mut Vec<(Arc<crate::tables::Table>, Gathered)>| {
        for (table, records) in gathered {
            table.cache.apply_gathered(records, first, now);
        }
    };
    // Runs of records of one table are the rule: the last one's index is kept.
    let mut last = 0;
    for segment in segments {
        segment.visit(|record| {
            count += 1;
            let entry = record.entry;
            let invalid = |reason: &str| Error::InvalidValue {
                table: entry.table.to_owned(),
                key: entry.key.to_owned(),
                reason: format!("{reason} (WAL record at LSN {})", record.lsn),
            };
            let text = std::str::from_utf8(entry.value).map_err(|_| invalid("a WAL record that is not UTF-8"))?;
            if gathered.get(last).is_none_or(|(t, _)| t.name != entry.table) {
                last = match gathered.iter().position(|(t, _)| t.name == entry.table) {
                    Some(i) => i,
                    None => {
                        gathered.push((tables.get_or_insert(entry.table, Schema::default(), false).0, Gathered::new()));
                        gathered.len() - 1
                    }
                };
            }
            let Some((table, into)) = gathered.get_mut(last) else { unreachable!("`last` indexes `gathered`") };
            match entry.op {
                Op::CreateTable => {
                    let schema = Schema::from_json(
                        entry.table,
                        &serde_json::from_str(text).map_err(|e| invalid(&e.to_string()))?,
                    )?;
                    table.recover_schema(schema, record.lsn);
                }
                Op::Put | Op::Delete => {
                    let value = Record::new(entry.key, (entry.op == Op::Put).then_some(text));
                    table.cache.gather(into, value, record.lsn);
                    pending += 1;
                    pending_bytes += entry.key.len() + entry.value.len();
                    if pending == GATHER_RECORDS || pending_bytes >= GATHER_BYTES {
                        apply(&mut gathered);
                        (pending, pending_bytes) = (0, 0);
                    }
                }
            }
            Ok::<_, Error>(())
        })?;
    }
    apply(&mut gathered);
    Ok(Loaded { count, tables: gathered })
}

#[cfg(test)]
mod tests {
    use super::split_evenly;

    #[test]
    fn segments_are_split_into_runs_of_about_equal_bytes_in_order() {
        let split = |sizes: &[u64], n| split_evenly(sizes.to_vec(), n, |s| *s);
        assert_eq!(split(&[64, 64, 64, 64], 2), vec![vec![64, 64], vec![64, 64]]);
        assert_eq!(split(&[64, 64, 64, 64, 1], 2), vec![vec![64, 64], vec![64, 64, 1]]);
        assert_eq!(split(&[64, 64, 64, 64], 3), vec![vec![64], vec![64, 64], vec![64]]);
        assert_eq!(split(&[64, 64, 64, 64], 8), vec![vec![64], vec![64], vec![64], vec![64]]);
        assert_eq!(split(&[64], 2), vec![vec![64]], "one segment, one run");
        assert_eq!(split(&[], 2), Vec::<Vec<u64>>::new());
        assert_eq!(split(&[5, 5, 5], 1), vec![vec![5, 5, 5]]);
        // Whatever the sizes: at most `n` runs, the segments in their order.
        let sizes: Vec<u64> = (1..40).map(|i| (i * 7919) % 97 + 1).collect();
        for n in 1..6 {
            let runs = split(&sizes, n);
            assert!(runs.len() <= n && runs.concat() == sizes, "{n}: {runs:?}");
        }
    }
}
