//! The scale series: at each size, insert and get throughput, memory and WAL bytes per
//! record, then a crash and the recovery — the WAL-only replay of the log as a baseline,
//! open with PostgreSQL unreachable, open with it up, and the drain into PostgreSQL in the
//! background with a paced foreground's p99.9 measured meanwhile — beside the flush of as
//! many fresh records, so cost growth with the data shows.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use memdb::{Durability, MemDb};

use crate::common::heap::{COUNTING, Heap};
use crate::common::record::{Call, Keys};
use crate::common::setup::config;
use crate::hist::Hist;
use crate::phases::Ctx;
use crate::report::{ScalePoint, fmt_rate};
use crate::systems::memdb::MemdbSystem;
use crate::systems::postgres::connect;

/// Writer tasks of the inserts, and reader threads of the gets: one per core.
const WORKERS: u64 = 2;

/// Inserts keys `0..n` of `keys` into `table` from [`WORKERS`] tasks; the time it took.
async fn insert_all(db: &MemDb, table: &str, keys: &Arc<Keys>, n: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (db, table, keys) = (db.clone(), table.to_owned(), Arc::clone(keys));
            tokio::spawn(async move {
                let mut call = Call::new(w);
                for i in (w..n).step_by(WORKERS as usize) {
                    call.vary(i);
                    db.insert(&table, keys.get(i), &call).await.expect("insert");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("insert task");
    }
    start.elapsed()
}

/// `count` gets, uniformly over the first `n` keys, from [`WORKERS`] threads.
fn get_rate(db: &MemDb, table: &str, n: u64, count: u64) -> f64 {
    let picks = Keys::random(n, usize::try_from(count).unwrap_or(1 << 22), 5);
    let each = count / WORKERS;
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let picks = &picks;
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
                rt.block_on(async {
                    for i in w * each..(w + 1) * each {
                        assert!(db.get(table, picks.get(i)).await.expect("get").is_some(), "a hit");
                    }
                });
            });
        }
    });
    (each * WORKERS) as f64 / start.elapsed().as_secs_f64()
}

pub fn point(ctx: &Ctx, n: u64) -> ScalePoint {
    let (a, b) = (ctx.table(&format!("scale{n}_a")), ctx.table(&format!("scale{n}_b")));
    let keys = Arc::new(Keys::sequential(n));
    ctx.rt.block_on(async {
        let system = MemdbSystem::open(&ctx.dsn, &ctx.root, Durability::default(), &a).await;
        let MemdbSystem { db, table: _, dir } = system;
        let wal_before = db.stats().wal_bytes;
        COUNTING.store(true, Ordering::SeqCst);
        let heap_before = Heap::now();
        let insert_time = insert_all(&db, &a, &keys, n).await;
        let heap_after = Heap::now();
        COUNTING.store(false, Ordering::SeqCst);
        let (heap_bytes, _, rss_bytes, _) = heap_after.per_record(&heap_before, n);
        let wal_bytes = (db.stats().wal_bytes - wal_before) as f64 / n as f64;
        eprintln!(
            "  scale {n}: {} inserts/s, {heap_bytes:.0} B heap/record",
            fmt_rate(n as f64 / insert_time.as_secs_f64())
        );

        let gets = ctx.settings.scale_gets;
        let get_per_s = tokio::task::block_in_place(|| get_rate(&db, &a, n, gets));
        eprintln!("  scale {n}: {} gets/s", fmt_rate(get_per_s));

        // Kill; the WAL-only replay (the floor any open must pay), then open with
        // PostgreSQL unreachable, then with it up: open returns once the WAL is in memory.
        db.crash().await;
        let wal_replay = wal_only_replay(dir.path());
        // Port 1: nothing listens; the directory's catalogue lets open go on without it.
        let down = config("host=127.0.0.1 port=1 user=memdb dbname=memdb", dir.path(), Durability::default());
        let start = Instant::now();
        let db = MemDb::open(down).await.expect("open with PostgreSQL unreachable");
        let open_down = start.elapsed();
        assert_eq!(db.stats().replay_backlog as u64, n, "the whole backlog is in memory");
        db.crash().await;
        let start = Instant::now();
        let db = MemDb::open(config(&ctx.dsn, dir.path(), Durability::default())).await.expect("reopen");
        let open_up = start.elapsed();
        let (drain, gets, inserts) = foreground_until_drained(&db, &a, &b, &keys, n).await;
        let client = connect(&ctx.dsn).await;
        let rows: i64 = client.query_one(&format!("SELECT count(*) FROM memdb_{a}"), &[]).await.expect("count").get(0);
        assert_eq!(rows as u64, n, "PostgreSQL holds every recovered record");
        eprintln!(
            "  scale {n}: WAL-only replay {wal_replay:.2?}; open {open_up:.2?} (PostgreSQL down: {open_down:.2?}); \
             drained {drain:.2?} ({} rows/s), foreground p99.9 get {:.1} µs, insert {:.1} µs",
            fmt_rate(n as f64 / drain.as_secs_f64()),
            gets.quantile(0.999) as f64 / 1e3,
            inserts.quantile(0.999) as f64 / 1e3
        );

        // The flush of as many fresh records into an empty table, for comparison (the
        // foreground wrote other keys of it during the drain).
        db.flush(None).await.expect("flush the foreground's writes");
        let keys_b = Arc::new(Keys::of(n..2 * n));
        insert_all(&db, &b, &keys_b, n).await;
        let start = Instant::now();
        let flushed = db.flush(None).await.expect("flush");
        let flush = start.elapsed();
        assert_eq!(flushed as u64, n, "the flush wrote every record");
        eprintln!("  scale {n}: flush {flush:.2?} ({} rows/s)", fmt_rate(n as f64 / flush.as_secs_f64()));
        db.close().await.expect("close");
        drop(db);
        drop(dir);
        ctx.drop_memdb_table(&a).await;
        ctx.drop_memdb_table(&b).await;
        ScalePoint {
            records: n,
            insert_per_s: n as f64 / insert_time.as_secs_f64(),
            get_per_s,
            heap_bytes_per_record: heap_bytes,
            rss_bytes_per_record: rss_bytes,
            wal_bytes_per_record: wal_bytes,
            flush_s: flush.as_secs_f64(),
            wal_replay_s: wal_replay.as_secs_f64(),
            open_up_s: open_up.as_secs_f64(),
            open_down_s: open_down.as_secs_f64(),
            drain_s: drain.as_secs_f64(),
            drain_get_p999_us: gets.quantile(0.999) as f64 / 1e3,
            drain_insert_p999_us: inserts.quantile(0.999) as f64 / 1e3,
        }
    })
}

/// Opens the WAL alone and reads every record: what any recovery must pay at least.
fn wal_only_replay(dir: &std::path::Path) -> Duration {
    let start = Instant::now();
    let wal = memdb::wal::Wal::open(dir, memdb::wal::Options::default()).expect("open the WAL alone");
    // The fastest way to read the log: records borrowed from the segments' bytes.
    let mut records = 0u64;
    wal.replay_each(1, |_| {
        records += 1;
        Ok::<_, memdb::wal::Error>(())
    })
    .expect("a valid log");
    let took = start.elapsed();
    assert!(records > 0, "the WAL holds the backlog");
    drop(wal);
    took
}

/// Calls the foreground offers per millisecond during the drain (a get and an insert
/// each), as the paced workload under a flush does (see `phases::under_flush`).
const DRAIN_PAIRS_PER_MS: u64 = 5;

/// One paced foreground task — each millisecond, [`DRAIN_PAIRS_PER_MS`] gets of backlog
/// records and as many inserts of new ones into `other` — timed while the backlog
/// drains; returns the time until drained and the latencies.
async fn foreground_until_drained(db: &MemDb, table: &str, other: &str, keys: &Keys, n: u64) -> (Duration, Hist, Hist) {
    let start = Instant::now();
    let (mut gets, mut inserts) = (Hist::default(), Hist::default());
    let mut call = Call::new(9);
    let mut pace = tokio::time::interval(Duration::from_millis(1));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i = 0u64;
    while db.stats().replay_backlog > 0 {
        pace.tick().await;
        for _ in 0..DRAIN_PAIRS_PER_MS {
            let t = Instant::now();
            assert!(db.get(table, keys.get((i * 7919) % n)).await.expect("get").is_some(), "a backlog record");
            gets.record(t.elapsed().as_nanos() as u64);
            call.vary(i);
            let t = Instant::now();
            db.insert(other, &format!("drain-{i}"), &call).await.expect("insert");
            inserts.record(t.elapsed().as_nanos() as u64);
            i += 1;
        }
    }
    (start.elapsed(), gets, inserts)
}
