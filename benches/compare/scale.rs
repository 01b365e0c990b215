//! The scale series: at each size, insert and get throughput, memory and WAL bytes per
//! record, then a crash and the recovery (reopen: WAL replay plus drain into PostgreSQL)
//! beside the flush of as many fresh records — so cost growth with the data shows.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use memdb::{Durability, MemDb};

use crate::common::heap::{COUNTING, Heap};
use crate::common::record::{Call, Keys};
use crate::common::setup::config;
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

        // Kill, reopen: the WAL replays into memory and drains into PostgreSQL.
        db.crash().await;
        let start = Instant::now();
        let db = MemDb::open(config(&ctx.dsn, dir.path(), Durability::default())).await.expect("reopen");
        let recovery = start.elapsed();
        let stats = db.stats();
        assert_eq!(stats.dirty_records, 0, "recovery drained every record into PostgreSQL");
        let client = connect(&ctx.dsn).await;
        let rows: i64 = client.query_one(&format!("SELECT count(*) FROM memdb_{a}"), &[]).await.expect("count").get(0);
        assert_eq!(rows as u64, n, "PostgreSQL holds every recovered record");
        eprintln!("  scale {n}: recovery {recovery:.2?} ({} rows/s)", fmt_rate(n as f64 / recovery.as_secs_f64()));

        // The flush of as many fresh records into an empty table, for comparison.
        db.create_table(&b, &serde_json::json!({})).await.expect("create table");
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
            recovery_s: recovery.as_secs_f64(),
        }
    })
}
