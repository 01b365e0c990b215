//! A long PostgreSQL outage under steady writes, on a dedicated private cluster stopped
//! with `pg_ctl stop -m immediate`: writers see no error, the backlog drains once it is
//! back, and PostgreSQL ends with every acknowledged row exactly once. Then an engine
//! crash during a second outage and a restart while PostgreSQL is still down: open
//! serves at once, enforces the schemas declared before the crash, fails reads that
//! need PostgreSQL fast with `Unavailable`, takes more writes and deletes; once
//! PostgreSQL starts the breaker closes and the backlog drains, losing nothing and
//! resurrecting no delete.
//!
//! `MEMDB_OUTAGE_SECS` sets the first outage's length (default 30).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memdb::postgres::PrivateCluster;
use memdb::{Config, Error, MemDb};
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
    db.create_table("typed", &json!({"n": "integer"})).await.expect("create a table with a schema");
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

    // 3. Restart while PostgreSQL is still down: open serves at once.
    let opened = Instant::now();
    let db = MemDb::open(config.clone()).await.expect("open with PostgreSQL down");
    println!("open with PostgreSQL down returned in {:?} ({unflushed} unflushed records)", opened.elapsed());
    let stats = db.stats();
    assert!(stats.replay_backlog >= unflushed, "{} to drain, {unflushed} were unflushed", stats.replay_backlog);
    let mut expected = written.rows;
    expected.extend(second.rows);
    let hot = db.get("events", "hot").await.expect("a record in memory reads with PostgreSQL down");
    assert_eq!(hot.map(|j| j.to_value()).as_ref(), expected.get("hot"));
    let violation = db.insert("typed", "t1", &json!({"n": "not a number"})).await;
    assert!(
        matches!(violation, Err(Error::SchemaViolation { .. })),
        "the schema declared before the crash: {violation:?}"
    );
    db.insert("typed", "t2", &json!({"n": 2})).await.expect("a valid write");
    // Reads that need PostgreSQL fail, then fail at once (the breaker).
    let _ = db.get("events", "never-written").await;
    common::eventually("the engine sees PostgreSQL down", || !db.stats().postgres_up).await;
    let asked = Instant::now();
    let missed = db.get("events", "never-written").await;
    let took = asked.elapsed();
    println!("a miss with PostgreSQL known down failed in {took:?}");
    assert!(matches!(missed, Err(Error::Unavailable { .. })), "{missed:?}");
    assert!(took < config.pg_timeout / 4, "failed fast, not after a timeout: {took:?}");
    assert!(matches!(db.get_uncached("events", "never-written").await, Err(Error::Unavailable { .. })));
    assert!(matches!(db.query("events", "", 1).await, Err(Error::Unavailable { .. })));
    // More writes and deletes while it is down.
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(db.clone(), Arc::clone(&stop), "c");
    let inserts = db.stats().inserts;
    common::eventually("writes go on with PostgreSQL down", || db.stats().inserts > inserts + 200).await;
    let deleted: Vec<String> = expected.keys().filter(|k| k.starts_with('a')).step_by(7).cloned().collect();
    for key in &deleted {
        db.delete("events", key).await.expect("a delete with PostgreSQL down");
        expected.remove(key);
    }
    stop.store(true, Ordering::Relaxed);
    let third = writing.await.expect("writer");
    assert!(third.errors.is_empty(), "writers saw errors: {:?}", &third.errors[..third.errors.len().min(5)]);
    expected.extend(third.rows);

    // 4. PostgreSQL starts: the breaker closes and everything drains.
    start_server().await;
    common::eventually("the breaker closes", || db.stats().postgres_up).await;
    common::eventually("the backlog drains", || {
        let stats = db.stats();
        stats.replay_backlog == 0 && stats.dirty_records == 0
    })
    .await;
    let rows = pg_events(&dsn).await;
    let resurrected = deleted.iter().filter(|k| rows.contains_key(*k)).count();
    assert_eq!(resurrected, 0, "no delete resurrected");
    assert_eq!(rows, expected, "every acknowledged row, once, with its last value");
    let typed = common::pg_rows(&dsn, "typed").await;
    assert_eq!(
        typed.iter().map(|(k, v, _)| (k.as_str(), v.clone())).collect::<Vec<_>>(),
        vec![("t2", json!({"n": 2}))]
    );
    db.close().await.expect("close");
    let cluster = Arc::into_inner(cluster).expect("the only handle");
    tokio::task::spawn_blocking(move || cluster.stop()).await.expect("task").expect("stop the cluster");
}
