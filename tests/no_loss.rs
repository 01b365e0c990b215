//! No acknowledged write is lost to a cancelled call, a close under load, a power cut
//! after a flush, a restored WAL copy or a panicking background task — each a loss that
//! was reproduced on an earlier main, checked here against a real PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use memdb::wal::storage::{SimFaults, SimStorage};
use memdb::{Durability, Error, MemDb};
use serde_json::{Value, json};

/// `table/key` reads `value` from the engine and from PostgreSQL.
async fn assert_everywhere(db: &MemDb, dsn: &str, table: &str, key: &str, value: &Value, what: &str) {
    let got = db.get(table, key).await.expect("get").map(|j| j.to_value());
    assert_eq!(got.as_ref(), Some(value), "{what}: {table}/{key} in the engine");
    let rows = common::pg_rows(dsn, table).await;
    let row = rows.iter().find(|(k, _, _)| k == key).map(|(_, v, _)| v);
    assert_eq!(row, Some(value), "{what}: {table}/{key} in PostgreSQL");
}

/// Issue 11, loss 1: a flush (or query) future dropped while its batch is out.
async fn cancelled_call_loses_no_write(call: &str) {
    let (config, _dir, dsn) = common::config(|_| {}).await;
    let db = MemDb::open(config.clone()).await.expect("open");
    let mut finished = 0;
    for polls in 1..=24 {
        let table = format!("cancel_{call}_{polls}");
        db.insert(&table, "a", &json!({"v": 1})).await.expect("insert");
        db.flush(None).await.expect("flush");
        db.upsert(&table, "a", &json!({"v": 2})).await.expect("upsert");
        let done = match call {
            "flush" => common::poll_then_drop(db.flush(None), polls).await.map(|r| r.map(drop)),
            _ => common::poll_then_drop(db.query(&table, "", 10), polls).await.map(|r| r.map(drop)),
        };
        finished += usize::from(done.is_some());
        db.upsert(&table, "a", &json!({"v": 3})).await.expect("upsert");
        db.insert(&table, "b", &json!({"v": 1})).await.expect("insert");
        db.flush(None).await.expect("flush");
        assert_eq!(db.stats().dirty_records, 0, "{call} dropped after {polls} polls left a record untracked");
        assert_everywhere(&db, &dsn, &table, "a", &json!({"v": 3}), &format!("{call} dropped after {polls} polls"))
            .await;
    }
    println!("{call}: {finished} of 24 calls finished before they were dropped");
    assert!(finished < 24, "no call was dropped mid-way: the test proves nothing");
    db.close().await.expect("close");
    let db = MemDb::open(config).await.expect("reopen");
    for polls in 1..=24 {
        let table = format!("cancel_{call}_{polls}");
        assert_everywhere(&db, &dsn, &table, "a", &json!({"v": 3}), &format!("reopened, {call} {polls}")).await;
    }
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_dropped_at_any_await_loses_no_write() {
    cancelled_call_loses_no_write("flush").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_dropped_at_any_await_loses_no_write() {
    cancelled_call_loses_no_write("query").await;
}

/// Issue 11, loss 1 (close): `close` while writers run and the background task flushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_under_load_loses_no_acknowledged_write() {
    // MEMDB_CLOSE_ROUNDS: closes under load (default 100).
    let rounds: usize = std::env::var("MEMDB_CLOSE_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    const WRITERS: usize = 64;
    const KEYS: usize = 100;
    let (config, _dir, dsn) = common::config(|c| {
        c.flush_interval = Duration::from_millis(5);
        c.flush_dirty_threshold = 50;
    })
    .await;
    let mut checked = 0;
    for round in 0..rounds {
        let table = format!("load_{round}");
        let db = MemDb::open(config.clone()).await.expect("open");
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (db, table) = (db.clone(), table.clone());
            writers.push(tokio::spawn(async move {
                // The last acknowledged value of each of this writer's keys.
                let mut acked = std::collections::HashMap::new();
                for i in 0.. {
                    let key = format!("w{w}k{}", i % KEYS);
                    let value = json!({"round": round, "i": i});
                    match db.upsert(&table, &key, &value).await {
                        Ok(()) => drop(acked.insert(key, value)),
                        Err(Error::Closed) => break,
                        Err(e) => panic!("write failed: {e}"),
                    }
                }
                acked
            }));
        }
        // Close once the writers and at least one background flush are under way.
        let flushes = db.stats().flushes;
        common::eventually("a background flush ran", || db.stats().flushes > flushes + round as u64 % 3).await;
        db.close().await.expect("close under load");
        let mut last = std::collections::BTreeMap::new();
        for writer in writers {
            last.extend(writer.await.expect("writer"));
        }
        let db = MemDb::open(config.clone()).await.expect("reopen");
        db.flush(None).await.expect("flush");
        let rows: std::collections::HashMap<String, Value> =
            common::pg_rows(&dsn, &table).await.into_iter().map(|(k, v, _)| (k, v)).collect();
        for (key, value) in &last {
            let got = db.get(&table, key).await.expect("get").map(|j| j.to_value());
            assert_eq!(got.as_ref(), Some(value), "round {round}: {key} lost from the engine");
            assert_eq!(rows.get(key), Some(value), "round {round}: {key} lost from PostgreSQL");
        }
        checked += last.len();
        db.close().await.expect("close");
    }
    common::report(&format!(
        "closes under load: {rounds}, {WRITERS} writers each, last acknowledged values checked: {checked}, lost 0"
    ));
}

/// A key rewritten all the time still reaches PostgreSQL, and `query` sees every write
/// acknowledged before it (read-your-writes), whatever lands during its flush.
/// In `Sync` mode the flushes' own syncs race the group commit's: a writer must never
/// be left waiting for a durability that others already reached.
async fn hot_key_during_flushes(durability: Durability) {
    let (config, _dir, _dsn) = common::config(|c| c.durability = durability).await;
    let db = MemDb::open(config).await.expect("open");
    db.insert("hot", "k", &json!({"n": 0})).await.expect("insert");
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, acked, stop) = (db.clone(), Arc::clone(&acked), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let value = json!({"n": n});
                let done = tokio::time::timeout(Duration::from_secs(20), db.upsert("hot", "k", &value)).await;
                done.expect("a write never returned").expect("upsert");
                acked.store(n, std::sync::atomic::Ordering::Release);
                tokio::task::yield_now().await;
            }
        })
    };
    for _ in 0..200 {
        let before = acked.load(std::sync::atomic::Ordering::Acquire);
        let rows = db.query("hot", "", 10).await.expect("query");
        let seen = rows.first().and_then(|r| r.data.to_value()["n"].as_u64()).expect("the row");
        assert!(seen >= before, "query saw n={seen}, but n={before} was acknowledged before it");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.expect("writer");
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rewritten_during_flushes_is_still_read_your_writes() {
    hot_key_during_flushes(Durability::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_write_racing_flushes_always_returns() {
    hot_key_during_flushes(Durability::Sync).await;
}

/// Issue 11, loss 2: a flush that ran ahead of the WAL sync, then a power cut. Each
/// flush must sync the WAL first, so PostgreSQL never holds what the WAL can lose.
async fn power_cut_after_a_flush(durability: Durability) {
    let (config, _dir, dsn) = common::config(|c| c.durability = durability).await;
    for seed in 0..12u64 {
        let table = format!("cut_{}_{seed}", matches!(durability, Durability::Sync));
        let other = format!("{table}_other");
        let disk = SimStorage::new(SimFaults::default());
        let db = MemDb::open_on(config.clone(), Arc::new(disk.clone())).await.expect("open");
        db.insert(&table, "a", &json!({"v": 1})).await.expect("insert");
        db.flush(None).await.expect("flush");
        // A record of another table stays dirty, so the WAL truncation after the flush
        // below cannot cover (and sync) the active segment: only the flush's own sync can.
        db.insert(&other, "x", &json!({"v": 1})).await.expect("insert");
        db.upsert(&table, "a", &json!({"v": 2})).await.expect("upsert");
        db.flush(Some(&table)).await.expect("flush");
        // The power goes while the engine runs (its drop would sync the WAL).
        let image = disk.power_cut_image(seed);
        db.crash().await;
        let what = format!("{durability:?}, power cut {seed}");
        let db = MemDb::open_on(config.clone(), Arc::new(image.clone()))
            .await
            .unwrap_or_else(|e| panic!("{what}: reopen after the power cut: {e}"));
        if durability == Durability::Sync {
            let other_x = db.get(&other, "x").await.expect("get").map(|j| j.to_value());
            assert_eq!(other_x, Some(json!({"v": 1})), "{what}: an acknowledged Sync write lost");
        }
        db.upsert(&table, "a", &json!({"v": 3})).await.expect("upsert after the power cut");
        db.flush(None).await.expect("flush");
        assert_everywhere(&db, &dsn, &table, "a", &json!({"v": 3}), &what).await;
        db.close().await.expect("close");
        let db = MemDb::open_on(config.clone(), Arc::new(image)).await.expect("reopen");
        assert_everywhere(&db, &dsn, &table, "a", &json!({"v": 3}), &format!("{what}, reopened")).await;
        db.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_after_a_periodic_flush_loses_no_later_write() {
    // No background sync during the test: only the flush's own sync makes data durable.
    power_cut_after_a_flush(Durability::Periodic(Duration::from_secs(3600))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_after_a_sync_flush_loses_no_later_write() {
    power_cut_after_a_flush(Durability::Sync).await;
}

/// Issue 11, loss 2 (restored copy): a WAL directory older than PostgreSQL. The log
/// resumes above PostgreSQL's LSNs, so a write after opening it is kept; the copy's old
/// record replays without overwriting the newer row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_restored_from_an_older_copy_keeps_every_later_write() {
    let (config, dir, dsn) = common::config(|_| {}).await;
    let db = MemDb::open(config.clone()).await.expect("open");
    db.insert("restored", "k", &json!({"v": 1})).await.expect("insert");
    let copy = dir.path().join("copy");
    copy_dir_without_lock(&config.wal_dir, &copy);
    db.upsert("restored", "k", &json!({"v": 2})).await.expect("upsert");
    db.close().await.expect("close");

    let mut on_copy = config.clone();
    on_copy.wal_dir = copy;
    let db = MemDb::open(on_copy.clone()).await.expect("open the restored copy");
    // Open does not wait for PostgreSQL; once the copy's backlog has drained, the guard
    // has kept PostgreSQL's newer row and memory holds it too.
    common::eventually("the restored copy's backlog drains", || db.stats().replay_backlog == 0).await;
    assert_everywhere(&db, &dsn, "restored", "k", &json!({"v": 2}), "the copy's v1 replayed").await;
    db.upsert("restored", "k", &json!({"v": 3})).await.expect("upsert");
    db.flush(None).await.expect("flush");
    assert_eq!(db.stats().dirty_records, 0);
    assert_everywhere(&db, &dsn, "restored", "k", &json!({"v": 3}), "a write on the restored copy").await;
    let listed = db.query("restored", "", 10).await.expect("query");
    assert_eq!(listed.iter().map(|r| r.data.to_value()).collect::<Vec<_>>(), vec![json!({"v": 3})]);
    db.close().await.expect("close");
    for wal_dir in [on_copy, config] {
        let db = MemDb::open(wal_dir).await.expect("reopen");
        assert_everywhere(&db, &dsn, "restored", "k", &json!({"v": 3}), "reopened").await;
        db.close().await.expect("close");
    }
}

fn copy_dir_without_lock(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Issue 11, loss 3: a panic in the background task fails the engine for writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_panic_stops_writes_and_close_reports_it() {
    let (config, _dir, dsn) = common::config(|_| {}).await;
    let db = MemDb::open(config.clone()).await.expect("open");
    db.insert("panics", "a", &json!({"v": 1})).await.expect("insert");
    db.panic_background();
    common::eventually("the engine notices the panic", || db.stats().failure.is_some()).await;
    let cause = db.stats().failure.unwrap_or_default();
    assert!(cause.contains("injected by MemDb::panic_background"), "{cause}");
    assert!(matches!(db.upsert("panics", "b", &json!({"v": 1})).await, Err(Error::Failed { .. })));
    assert!(matches!(db.delete("panics", "a").await, Err(Error::Failed { .. })));
    let read = db.get("panics", "a").await.expect("reads go on").map(|j| j.to_value());
    assert_eq!(read, Some(json!({"v": 1})));
    assert!(matches!(db.close().await, Err(Error::Failed { .. })), "close reports the failure");
    let db = MemDb::open(config).await.expect("reopen");
    assert_everywhere(&db, &dsn, "panics", "a", &json!({"v": 1}), "after the panic").await;
    assert_eq!(db.get("panics", "b").await.expect("get"), None, "the refused write is not there");
    db.close().await.expect("close");
}

/// A `Sync` write in a `Periodic` engine (`insert_with`) is on stable storage when it
/// returns: it survives every power cut, while a plain write after it may not.
#[tokio::test]
async fn a_sync_write_in_a_periodic_engine_survives_a_power_cut() {
    let (config, _dir, _dsn) = common::config(|c| c.durability = Durability::Periodic(Duration::from_secs(3600))).await;
    let mut plain_lost = 0;
    for seed in 0..12u64 {
        let disk = SimStorage::new(SimFaults::default());
        let db = MemDb::open_on(config.clone(), Arc::new(disk.clone())).await.expect("open");
        let calls = db.table("calls").await.expect("table");
        calls.insert_with("sync", &json!({"v": seed}), Durability::Sync).await.expect("sync write");
        calls.insert("plain", &json!({"v": seed})).await.expect("plain write");
        let image = disk.power_cut_image(seed);
        db.crash().await;
        let db = MemDb::open_on(config.clone(), Arc::new(image)).await.expect("reopen after the power cut");
        let sync = db.get("calls", "sync").await.expect("get").map(|j| j.to_value());
        assert_eq!(sync, Some(json!({"v": seed})), "power cut {seed}: an acknowledged Sync write lost");
        plain_lost += usize::from(db.get("calls", "plain").await.expect("get").is_none());
        db.crash().await;
    }
    common::report(&format!("power cuts: the plain (Periodic) write lost in {plain_lost} of 12, the Sync one in none"));
    assert!(plain_lost > 0, "the power cuts never lost an unsynced write: this test would not catch a missing sync");
}
