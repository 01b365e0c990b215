//! A long PostgreSQL outage under steady writes, on a dedicated private cluster stopped
//! with `pg_ctl stop -m immediate`: writers see no error, the backlog drains once it is
//! back, and PostgreSQL ends with every acknowledged row exactly once. Then an engine
//! crash during a second outage: the next open, once PostgreSQL answers, loses nothing.
//!
//! `MEMDB_OUTAGE_SECS` sets the first outage's length (default 30).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memdb::postgres::PrivateCluster;
use memdb::{Config, MemDb};
use serde_json::{Value, json};

/// What a writer got acknowledged.
#[derive(Default)]
struct Written {
    rows: BTreeMap<String, Value>,
    errors: Vec<String>,
}

/// Writes steadily (a new key and an overwrite of a hot key per round) until `stop`.
fn writer(db: MemDb, stop: Arc<AtomicBool>, prefix: &'static str) -> tokio::task::JoinHandle<Written> {
    tokio::spawn(async move {
        let mut written = Written::default();
        let mut pace = tokio::time::interval(Duration::from_millis(2));
        for i in 0u64.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            pace.tick().await;
            let (key, value) = (format!("{prefix}{i:07}"), json!({"i": i}));
            match db.insert("events", &key, &value).await {
                Ok(()) => drop(written.rows.insert(key, value)),
                Err(e) => written.errors.push(format!("insert {key}: {e}")),
            }
            let hot = json!({"n": i, "prefix": prefix});
            match db.upsert("events", "hot", &hot).await {
                Ok(()) => drop(written.rows.insert("hot".into(), hot)),
                Err(e) => written.errors.push(format!("upsert hot {i}: {e}")),
            }
        }
        written
    })
}

async fn pg_events(dsn: &str) -> BTreeMap<String, Value> {
    let rows = common::pg_rows(dsn, "events").await;
    let count = rows.len();
    let map: BTreeMap<_, _> = rows.into_iter().map(|(k, v, _)| (k, v)).collect();
    assert_eq!(map.len(), count, "no duplicate keys");
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_and_a_crash_during_one_lose_nothing() {
    if std::env::var_os("PG_DSN").is_some_and(|v| !v.is_empty()) {
        eprintln!("SKIPPED: PG_DSN is set, and this drill must stop and start its own server");
        return;
    }
    let outage =
        Duration::from_secs(std::env::var("MEMDB_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30));
    let cluster =
        Arc::new(tokio::task::spawn_blocking(PrivateCluster::start).await.expect("task").expect("a dedicated cluster"));
    let dsn = cluster.create_database("memdb_outage").await.expect("database");
    // The harness runs with synchronous_commit off, which an immediate stop punishes.
    common::pg(&cluster.dsn())
        .await
        .batch_execute("ALTER DATABASE memdb_outage SET synchronous_commit = on")
        .await
        .expect("alter");
    let wal = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dsn.clone(), wal.path().join("wal"));
    config.flush_interval = Duration::from_millis(100);
    config.pg_timeout = Duration::from_secs(2);
    let stop_server = || {
        let c = Arc::clone(&cluster);
        async move { tokio::task::spawn_blocking(move || c.stop_server()).await.expect("task").expect("stop") }
    };
    let start_server = || {
        let c = Arc::clone(&cluster);
        async move { tokio::task::spawn_blocking(move || c.start_server()).await.expect("task").expect("start") }
    };

    // 1. A long outage under steady writes.
    let db = MemDb::open(config.clone()).await.expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(db.clone(), Arc::clone(&stop), "a");
    common::eventually("the first records reach PostgreSQL", || db.stats().flushed_records > 0).await;
    stop_server().await;
    let down = Instant::now();
    common::eventually("the engine sees PostgreSQL down", || !db.stats().postgres_up).await;
    tokio::time::sleep(outage.saturating_sub(down.elapsed())).await;
    let backlog = db.stats().dirty_records;
    start_server().await;
    println!("PostgreSQL was down for {:?} under writes; {backlog} records dirty at the end", down.elapsed());
    common::eventually("the engine sees PostgreSQL up again", || db.stats().postgres_up).await;
    stop.store(true, Ordering::Relaxed);
    let written = writing.await.expect("writer");
    assert!(written.errors.is_empty(), "writers saw errors: {:?}", &written.errors[..written.errors.len().min(5)]);
    let drain = Instant::now();
    common::eventually("the backlog drains", || db.stats().dirty_records == 0).await;
    println!("{} rows acknowledged; the backlog drained in {:?}", written.rows.len(), drain.elapsed());
    assert!(backlog > 1000, "the outage built a backlog: {backlog}");
    assert_eq!(pg_events(&dsn).await, written.rows, "every acknowledged row, once, with its last value");

    // 2. The engine crashes during a second outage; it reopens once PostgreSQL is back.
    let stop = Arc::new(AtomicBool::new(false));
    let inserts = db.stats().inserts;
    let writing = writer(db.clone(), Arc::clone(&stop), "b");
    common::eventually("writes go on", || db.stats().inserts > inserts + 200).await;
    stop_server().await;
    common::eventually("the engine sees PostgreSQL down", || !db.stats().postgres_up).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let second = writing.await.expect("writer");
    assert!(second.errors.is_empty(), "writers saw errors: {:?}", &second.errors[..second.errors.len().min(5)]);
    let unflushed = db.stats().dirty_records;
    assert!(unflushed > 0, "the crash leaves unflushed records");
    db.crash().await;
    start_server().await;
    let db = MemDb::open(config).await.expect("reopen after the crash");
    let mut expected = written.rows;
    expected.extend(second.rows);
    assert_eq!(pg_events(&dsn).await, expected, "recovery replayed the {unflushed} unflushed records, none lost");
    db.close().await.expect("close");
    let cluster = Arc::into_inner(cluster).expect("the only handle");
    tokio::task::spawn_blocking(move || cluster.stop()).await.expect("task").expect("stop the cluster");
}
