//! Crash and fault drills on a real PostgreSQL: a restart without `close`, WAL
//! compaction, a stale WAL replayed over newer rows, a cache miss racing a write,
//! PostgreSQL restarted mid-run, and a hung PostgreSQL caught by the timeout.
//!
//! `MemDb::crash` (feature `internals`) drops the engine the way a killed process
//! would: nothing flushed, nothing closed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memdb::postgres::PrivateCluster;
use memdb::{Config, MemDb, StoreError};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

/// A WAL holding nothing but one segment header is this small.
const EMPTY_WAL_BYTES: u64 = 4096;

/// How long a drill waits for a condition before failing.
const PATIENCE: Duration = Duration::from_secs(30);

/// Waits (bounded by [`PATIENCE`]) until the async `condition` holds.
async fn wait_until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out after {PATIENCE:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The rows of a table in PostgreSQL as key → record.
async fn pg_map(dsn: &str, table: &str) -> BTreeMap<String, Value> {
    common::pg_rows(dsn, table).await.into_iter().map(|(key, data, _)| (key, data)).collect()
}

/// Copies a WAL directory as a backup tool would, without its `LOCK` file.
/// The test PostgreSQL's DSN, a proxy in front of it, and a config (WAL in a temp dir,
/// a 1 s PostgreSQL timeout) that goes through the proxy.
async fn behind_a_proxy() -> (String, Proxy, tempfile::TempDir, Config) {
    let dsn = memdb::postgres::test_dsn().await.expect("a PostgreSQL for tests");
    let (proxy, through) = proxy_for(&dsn).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(through, dir.path().join("wal"));
    config.pg_timeout = Duration::from_secs(1);
    (dsn, proxy, dir, config)
}

/// The LSN of each row of `table`.
async fn pg_lsns(dsn: &str, table: &str) -> BTreeMap<String, i64> {
    common::pg_rows(dsn, table).await.into_iter().map(|(k, _, lsn)| (k, lsn)).collect()
}

fn copy_wal_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's dir");
    for entry in std::fs::read_dir(from).expect("read the WAL dir") {
        let entry = entry.expect("dir entry");
        if entry.file_name() == "LOCK" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_wal_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a WAL file");
        }
    }
}

#[tokio::test]
async fn a_crash_without_close_loses_no_acknowledged_write() {
    let (config, _dir, dsn) = common::config(|_| {}).await;
    let db = MemDb::open(config.clone()).await.expect("open");
    let mut calls: BTreeMap<String, Value> = BTreeMap::new();
    let mut touched = BTreeSet::new();
    // A first round reaches PostgreSQL, so the replay must also overwrite and delete
    // rows that are already there.
    for i in 0..100 {
        let key = format!("c{i:03}");
        let value = json!({"i": i, "round": 1});
        db.insert("crash_calls", &key, &value).await.expect("insert");
        calls.insert(key.clone(), value);
        touched.insert(key);
    }
    assert_eq!(db.flush(None).await.expect("flush"), 100);
    for i in 0..400 {
        let key = format!("c{:03}", (i * 7) % 150);
        touched.insert(key.clone());
        match i % 4 {
            0 => {
                let value = json!({"i": i, "round": 2});
                db.upsert("crash_calls", &key, &value).await.expect("upsert");
                calls.insert(key, value);
            }
            1 => {
                let patched = db.patch("crash_calls", &key, &json!({"patched": i})).await.expect("patch");
                let expected = calls.entry(key).or_insert_with(|| json!({}));
                expected["patched"] = json!(i);
                assert_eq!(patched, *expected, "the patch result");
            }
            2 => {
                db.delete("crash_calls", &key).await.expect("delete");
                calls.remove(&key);
            }
            _ => {
                let value = json!({"i": i, "round": 3, "new": true});
                db.insert("crash_calls", &key, &value).await.expect("insert");
                calls.insert(key, value);
            }
        }
    }
    let mut sessions = BTreeMap::new();
    for i in 0..20 {
        let value = json!({"session": i});
        db.insert("crash_sessions", &format!("s{i}"), &value).await.expect("insert");
        sessions.insert(format!("s{i}"), value);
    }
    let before = db.stats();
    assert!(before.dirty_records > 0, "{before:?}");
    assert!(touched.iter().any(|k| !calls.contains_key(k)), "some keys end deleted");
    db.crash().await;

    let db = MemDb::open(config).await.expect("reopen after the crash");
    common::until_drained(&db).await;
    let after = db.stats();
    assert_eq!(after.wal_segments, 1, "{after:?}");
    assert!(after.wal_bytes <= EMPTY_WAL_BYTES, "the WAL was truncated: {} bytes before, {after:?}", before.wal_bytes);
    assert_eq!(pg_map(&dsn, "crash_calls").await, calls, "PostgreSQL holds every acknowledged write, deletes included");
    assert_eq!(pg_map(&dsn, "crash_sessions").await, sessions);
    for key in &touched {
        let got = db.get("crash_calls", key).await.expect("get").map(|j| j.to_value());
        assert_eq!(got.as_ref(), calls.get(key), "get({key}) after recovery");
    }
    db.close().await.expect("close");
}

#[tokio::test]
async fn compaction_shrinks_the_wal_to_one_segment() {
    let (config, _dir, _dsn) = common::config(|c| c.wal_segment_bytes = 64 << 10).await;
    let db = MemDb::open(config).await.expect("open");
    let filler = "x".repeat(600);
    for i in 0..500 {
        db.insert("compaction", &format!("c{i}"), &json!({"i": i, "filler": filler})).await.expect("insert");
    }
    let before = db.stats();
    assert!(before.wal_segments >= 3, "500 × ~650 B make several 64 KiB segments: {before:?}");
    assert_eq!(db.flush(None).await.expect("flush"), 500);
    let after = db.stats();
    assert_eq!(after.wal_segments, 1, "{after:?}");
    assert!(after.wal_bytes < before.wal_bytes && after.wal_bytes <= EMPTY_WAL_BYTES, "{before:?} → {after:?}");
    // LSNs go on from where they were: a new write lands and flushes.
    db.upsert("compaction", "c0", &json!({"i": "again"})).await.expect("upsert");
    assert_eq!(db.flush(None).await.expect("flush"), 1);
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_stale_wal_never_overwrites_newer_rows_and_later_writes_are_kept() {
    let (config, dir, dsn) = common::config(|_| {}).await;
    let db = MemDb::open(config.clone()).await.expect("open");
    db.insert("stale", "k", &json!({"v": 1})).await.expect("insert v1");
    db.crash().await;
    let stale_dir = dir.path().join("wal-stale");
    copy_wal_dir(&config.wal_dir, &stale_dir);

    let db = MemDb::open(config.clone()).await.expect("reopen, replaying v1");
    common::until_drained(&db).await;
    assert_eq!(pg_map(&dsn, "stale").await["k"], json!({"v": 1}));
    db.upsert("stale", "k", &json!({"v": 2})).await.expect("upsert v2");
    db.flush(None).await.expect("flush");
    db.close().await.expect("close");

    // The copy ends below PostgreSQL's LSNs: its v1 replays under the LSN guard, and the
    // log resumes above PostgreSQL's LSNs.
    let mut stale = config;
    stale.wal_dir = stale_dir;
    let db = MemDb::open(stale).await.expect("open the stale copy, replaying v1 again");
    common::until_drained(&db).await;
    assert_eq!(pg_map(&dsn, "stale").await["k"], json!({"v": 2}), "the old record did not overwrite the newer row");
    assert_eq!(
        db.get("stale", "k").await.expect("get").expect("present"),
        json!({"v": 2}),
        "memory does not serve the stale value"
    );
    db.upsert("stale", "k", &json!({"v": 3})).await.expect("upsert v3");
    db.flush(None).await.expect("flush");
    assert_eq!(pg_map(&dsn, "stale").await["k"], json!({"v": 3}), "a write after the stale replay is kept");
    db.close().await.expect("close");
}

/// A WAL copy restored from before a restart, opened while PostgreSQL does not answer,
/// twice (a crash between): its new writes get LSNs at or below rows PostgreSQL holds
/// from the original's later run. The first connection must move them above those rows
/// — the crashed run's too — or the LSN guard would drop acknowledged writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_a_restored_copy_before_postgres_answers_move_above_its_rows() {
    let (dsn, proxy, dir, config) = behind_a_proxy().await;
    let db = MemDb::open(config.clone()).await.expect("open");
    db.insert("restored", "seed", &json!({"v": 0})).await.expect("insert");
    db.close().await.expect("close");
    let copy = dir.path().join("copy");
    copy_wal_dir(&config.wal_dir, &copy);
    // The original runs on: a restart, then writes that end with `k`'s newest value.
    let db = MemDb::open(config.clone()).await.expect("reopen the original");
    for i in 0..50 {
        db.insert("restored", &format!("x{i}"), &json!({"v": i})).await.expect("insert");
    }
    db.upsert("restored", "k", &json!({"v": "original"})).await.expect("upsert");
    db.close().await.expect("close");
    let original_lsn = pg_lsns(&dsn, "restored").await["k"];

    proxy.pause(true);
    let mut on_copy = config;
    on_copy.wal_dir = copy;
    let db = MemDb::open(on_copy.clone()).await.expect("open the copy with PostgreSQL not answering");
    db.upsert("restored", "k", &json!({"v": "after restore"})).await.expect("a write on the copy");
    // That run never reaches PostgreSQL; the next one must still know its write is new.
    db.crash().await;
    let db = MemDb::open(on_copy).await.expect("reopen the copy, PostgreSQL still not answering");
    db.delete("restored", "x3").await.expect("a delete on the copy");
    proxy.pause(false);
    common::until_drained(&db).await;
    let rows = pg_map(&dsn, "restored").await;
    assert_eq!(rows.get("k"), Some(&json!({"v": "after restore"})), "the write on the copy is kept");
    assert!(!rows.contains_key("x3"), "the delete on the copy is kept");
    assert!(pg_lsns(&dsn, "restored").await["k"] > original_lsn, "moved above PostgreSQL's rows");
    assert_eq!(db.get("restored", "k").await.expect("get").map(|j| j.to_value()), Some(json!({"v": "after restore"})));
    db.close().await.expect("close");
}

/// A copy taken while a run had not reached PostgreSQL carries that run as unchecked;
/// the original then reached PostgreSQL (moving that run's writes, checking it) and
/// wrote newer values. Restored, the copy must not move that run's old writes above
/// the newer rows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_run_checked_since_does_not_roll_postgres_back() {
    let (dsn, proxy, dir, config) = behind_a_proxy().await;
    let db = MemDb::open(config.clone()).await.expect("open");
    db.insert("checked", "k", &json!({"v": 1})).await.expect("insert");
    db.close().await.expect("close");
    proxy.pause(true);
    let db = MemDb::open(config.clone()).await.expect("open with PostgreSQL not answering");
    db.upsert("checked", "k", &json!({"v": 2})).await.expect("a write of an unchecked run");
    db.crash().await;
    let copy = dir.path().join("copy");
    copy_wal_dir(&config.wal_dir, &copy);
    proxy.pause(false);
    let db = MemDb::open(config.clone()).await.expect("reopen the original");
    common::until_drained(&db).await;
    db.upsert("checked", "k", &json!({"v": 3})).await.expect("a newer write");
    db.close().await.expect("close");
    assert_eq!(pg_map(&dsn, "checked").await["k"], json!({"v": 3}));

    let mut on_copy = config;
    on_copy.wal_dir = copy;
    let db = MemDb::open(on_copy).await.expect("open the copy");
    common::until_drained(&db).await;
    assert_eq!(pg_map(&dsn, "checked").await["k"], json!({"v": 3}), "the copy's v2 did not overwrite v3");
    assert_eq!(db.get("checked", "k").await.expect("get").map(|j| j.to_value()), Some(json!({"v": 3})));
    db.close().await.expect("close");
}

/// A WAL copy from before a table was created does not know the table; while
/// PostgreSQL is not answering, calls on it fail instead of taking it for missing (a
/// delete reported done but dropped, a read of nothing), and work once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_copy_does_not_know_is_asked_of_postgres_not_taken_for_missing() {
    let (dsn, proxy, dir, config) = behind_a_proxy().await;
    MemDb::open(config.clone()).await.expect("open").close().await.expect("close");
    let copy = dir.path().join("copy");
    copy_wal_dir(&config.wal_dir, &copy);
    let db = MemDb::open(config.clone()).await.expect("reopen the original");
    db.create_table("late", &json!({"n": "integer"})).await.expect("create a table after the copy");
    db.insert("late", "k", &json!({"n": 1})).await.expect("insert");
    db.close().await.expect("close");

    proxy.pause(true);
    let mut on_copy = config;
    on_copy.wal_dir = copy;
    let db = MemDb::open(on_copy).await.expect("open the copy with PostgreSQL not answering");
    assert!(db.delete("late", "k").await.is_err(), "a delete on an unknown table is not reported done");
    assert!(db.get("late", "k").await.is_err(), "nor is a read of it answered with nothing");
    assert!(db.insert("late", "j", &json!({"n": "text"})).await.is_err(), "nor is its schema guessed");
    proxy.pause(false);
    common::eventually("a probe gets through", || db.stats().postgres_up).await;
    assert_eq!(db.get("late", "k").await.expect("get").map(|j| j.to_value()), Some(json!({"n": 1})));
    let violation = db.insert("late", "j", &json!({"n": "text"})).await;
    assert!(matches!(violation, Err(memdb::Error::SchemaViolation { .. })), "PostgreSQL's schema: {violation:?}");
    db.delete("late", "k").await.expect("delete");
    db.flush(None).await.expect("flush");
    assert!(pg_map(&dsn, "late").await.is_empty());
    db.close().await.expect("close");
}

/// The very first open of a WAL directory needs PostgreSQL once (to learn its tables
/// and LSN floor): without it, open fails saying so, and leaves nothing behind but an
/// empty log.
#[tokio::test]
async fn the_first_open_of_a_new_wal_directory_needs_postgres_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 1: nothing listens there.
    let mut config = Config::new("host=127.0.0.1 port=1 user=memdb dbname=memdb", dir.path().join("wal"));
    config.pg_timeout = Duration::from_secs(1);
    let opened = MemDb::open(config).await;
    let Err(memdb::Error::Unavailable { what, .. }) = &opened else {
        panic!("expected Unavailable, got {:?}", opened.err())
    };
    assert!(what.contains("first open"), "{what}");
    let message = opened.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("PostgreSQL is unavailable"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_miss_racing_a_write_does_not_overwrite_it() {
    // A generous timeout: the read is meant to wait on the lock, not to time out.
    let t = common::open(|c| {
        c.idle_ttl = Duration::from_millis(100);
        c.pg_timeout = Duration::from_secs(60);
    })
    .await;
    t.db.insert("race", "k", &json!({"v": 1})).await.expect("insert");
    t.db.flush(None).await.expect("flush");
    common::eventually("the record is evicted", || {
        let _ = t.db.evict_idle();
        t.db.stats().cached_records == 0
    })
    .await;

    let locker = common::pg(&t.dsn).await;
    locker.batch_execute("BEGIN; LOCK TABLE memdb_race IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let reader = {
        let db = t.db.clone();
        tokio::spawn(async move { db.get("race", "k").await })
    };
    let watcher = common::pg(&t.dsn).await;
    wait_until("the engine's read waits on the lock", async || {
        let row = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name LIKE 'memdb%' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("pg_stat_activity");
        row.get::<_, i64>(0) > 0
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), t.db.upsert("race", "k", &json!({"v": 2})))
        .await
        .expect("a write does not wait for PostgreSQL")
        .expect("upsert");
    locker.batch_execute("COMMIT").await.expect("unlock");

    let raced = reader.await.expect("reader task").expect("get").expect("present");
    assert!(raced == json!({"v": 1}) || raced == json!({"v": 2}), "the racing read saw {raced}");
    assert_eq!(
        t.db.get("race", "k").await.expect("get").expect("present"),
        json!({"v": 2}),
        "the load kept the newer write"
    );
    t.db.flush(None).await.expect("flush");
    assert_eq!(pg_map(&t.dsn, "race").await["k"], json!({"v": 2}));
    t.db.close().await.expect("close");
}

/// What the writer of [`postgres_restarted_mid_run_loses_nothing`] got acknowledged.
struct Written {
    keys: usize,
    hot: Option<u64>,
    errors: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_run_loses_nothing() {
    if std::env::var_os("PG_DSN").is_some_and(|v| !v.is_empty()) {
        eprintln!(
            "SKIPPED postgres_restarted_mid_run_loses_nothing: PG_DSN is set, and this drill must stop and start its own server"
        );
        return;
    }
    let cluster =
        Arc::new(tokio::task::spawn_blocking(PrivateCluster::start).await.expect("task").expect("a dedicated cluster"));
    let dsn = cluster.create_database("memdb_restart").await.expect("database");
    // The harness runs PostgreSQL with synchronous_commit off, which an immediate stop
    // punishes by losing the last commits; memdb relies on a commit being a commit.
    common::pg(&cluster.dsn())
        .await
        .batch_execute("ALTER DATABASE memdb_restart SET synchronous_commit = on")
        .await
        .expect("alter");
    let wal = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dsn.clone(), wal.path().join("wal"));
    config.flush_interval = Duration::from_millis(100);
    let db = MemDb::open(config).await.expect("open");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut written = Written { keys: 0, hot: None, errors: Vec::new() };
            let mut pace = tokio::time::interval(Duration::from_millis(1));
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                pace.tick().await;
                match db.insert("events", &format!("e{i:07}"), &json!({"i": i})).await {
                    Ok(()) => written.keys += 1,
                    Err(e) => written.errors.push(format!("insert e{i}: {e}")),
                }
                match db.upsert("events", "hot", &json!({"n": i})).await {
                    Ok(()) => written.hot = Some(i),
                    Err(e) => written.errors.push(format!("upsert hot {i}: {e}")),
                }
            }
            written
        })
    };
    common::eventually("the first records reach PostgreSQL", || db.stats().flushed_records > 0).await;

    let c = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || c.stop_server()).await.expect("task").expect("stop the server");
    let down = Instant::now();
    common::eventually("the engine sees PostgreSQL down", || {
        let s = db.stats();
        !s.postgres_up && s.flush_failures > 0
    })
    .await;
    // The outage itself: writes keep going meanwhile.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(down.elapsed())).await;
    let dirty_in_outage = db.stats().dirty_records;
    let c = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || c.start_server()).await.expect("task").expect("start the server");
    println!("PostgreSQL was down for {:?}; {dirty_in_outage} records dirty at the end", down.elapsed());
    common::eventually("the engine sees PostgreSQL up again", || db.stats().postgres_up).await;

    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("writer task");
    assert!(written.errors.is_empty(), "writers saw errors: {:?}", &written.errors[..written.errors.len().min(5)]);
    common::eventually("every record is flushed", || db.stats().dirty_records == 0).await;
    let stats = db.stats();
    assert!(stats.flush_failures > 0, "{stats:?}");
    println!("{} records written, {} flush failures", written.keys, stats.flush_failures);

    let rows = pg_map(&dsn, "events").await;
    let hot = written.hot.expect("the hot key was written");
    assert_eq!(rows.get("hot"), Some(&json!({"n": hot})), "the hot key holds its last acknowledged value");
    assert_eq!(rows.len(), written.keys + 1, "every acknowledged insert, once");
    for (i, (key, data)) in rows.iter().filter(|(k, _)| k.as_str() != "hot").enumerate() {
        assert_eq!(
            (key.as_str(), data),
            (format!("e{i:07}").as_str(), &json!({"i": i})),
            "rows are exactly the acknowledged ones"
        );
    }
    db.close().await.expect("close");
    let cluster = Arc::into_inner(cluster).expect("the only handle");
    tokio::task::spawn_blocking(move || cluster.stop()).await.expect("task").expect("stop the cluster");
}

/// Where the proxy forwards to.
enum Upstream {
    Tcp(String, u16),
    Unix(PathBuf),
}

/// A TCP proxy in front of PostgreSQL that can be paused: it then holds every byte in
/// both directions without closing anything, like a silently dropped network.
struct Proxy {
    port: u16,
    paused: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: Upstream) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        let (paused, _) = watch::channel(false);
        let gate = paused.clone();
        let upstream = Arc::new(upstream);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (gate, upstream) = (gate.subscribe(), Arc::clone(&upstream));
                tokio::spawn(async move {
                    let (client_rx, client_tx) = client.into_split();
                    match &*upstream {
                        Upstream::Tcp(host, port) => {
                            let Ok(server) = tokio::net::TcpStream::connect((host.as_str(), *port)).await else {
                                return;
                            };
                            let (server_rx, server_tx) = server.into_split();
                            tokio::join!(pump(client_rx, server_tx, gate.clone()), pump(server_rx, client_tx, gate));
                        }
                        Upstream::Unix(path) => {
                            let Ok(server) = tokio::net::UnixStream::connect(path).await else {
                                return;
                            };
                            let (server_rx, server_tx) = server.into_split();
                            tokio::join!(pump(client_rx, server_tx, gate.clone()), pump(server_rx, client_tx, gate));
                        }
                    }
                });
            }
        });
        Self { port, paused, accept }
    }

    fn pause(&self, paused: bool) {
        self.paused.send_replace(paused);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies bytes from `from` to `to`, holding them while the gate says paused; ends when
/// either side closes or the proxy is dropped.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    mut paused: watch::Receiver<bool>,
) {
    let mut buf = vec![0; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Quotes a value for a key=value DSN.
fn dsn_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

/// A proxy in front of the server `dsn` names, and a DSN for the same database through
/// it (with the same TLS settings: the proxy passes bytes, the handshake goes through).
/// `dsn` is key=value, as the test kit makes them.
async fn proxy_for(dsn: &str) -> (Proxy, String) {
    // tokio-postgres knows neither verify-full nor sslrootcert: memdb reads those.
    let (tls, rest): (Vec<&str>, Vec<&str>) =
        dsn.split_whitespace().partition(|t| t.starts_with("sslmode=") || t.starts_with("sslrootcert="));
    let parsed: tokio_postgres::Config = rest.join(" ").parse().expect("the test DSN parses");
    let port = parsed.get_ports().first().copied().unwrap_or(5432);
    let upstream = match parsed.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => Upstream::Tcp(host.clone(), port),
        Some(tokio_postgres::config::Host::Unix(dir)) => Upstream::Unix(dir.join(format!(".s.PGSQL.{port}"))),
        None => Upstream::Unix(PathBuf::from(format!("/var/run/postgresql/.s.PGSQL.{port}"))),
    };
    let proxy = Proxy::start(upstream).await;
    let mut through = format!("host=127.0.0.1 port={}", proxy.port);
    if let Some(user) = parsed.get_user() {
        through += &format!(" user={}", dsn_quote(user));
    }
    if let Some(dbname) = parsed.get_dbname() {
        through += &format!(" dbname={}", dsn_quote(dbname));
    }
    if let Some(password) = parsed.get_password() {
        through += &format!(" password={}", dsn_quote(&String::from_utf8_lossy(password)));
    }
    for setting in tls {
        through += &format!(" {setting}");
    }
    (proxy, through)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_postgres_is_caught_by_the_timeout() {
    let dsn = memdb::postgres::test_dsn().await.expect("a PostgreSQL for tests");
    let (proxy, through) = proxy_for(&dsn).await;
    let wal = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(through, wal.path().join("wal"));
    config.flush_interval = Duration::from_secs(3600);
    config.pg_timeout = Duration::from_secs(1);
    let db = MemDb::open(config).await.expect("open through the proxy");
    db.insert("hung", "before", &json!({"v": 0})).await.expect("insert");
    db.flush(None).await.expect("flush");
    assert!(db.get("hung", "absent").await.expect("a miss reaches PostgreSQL").is_none());

    proxy.pause(true);
    let write = |key: &'static str| {
        let db = db.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(5), db.insert("hung", key, &json!({"k": key})))
                .await
                .unwrap_or_else(|_| panic!("writing {key} waited for the hung PostgreSQL"))
                .unwrap_or_else(|e| panic!("writing {key}: {e}"));
        }
    };
    write("during-1").await;
    let started = Instant::now();
    let missed = db.get("hung", "absent-too").await;
    let took = started.elapsed();
    println!("a get miss against the hung PostgreSQL failed after {took:?}: {missed:?}");
    assert!(matches!(missed, Err(memdb::Error::Postgres(StoreError::Timeout { .. }))), "{missed:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    write("during-2").await;
    let started = Instant::now();
    let flushed = db.flush(None).await;
    let took = started.elapsed();
    println!("a flush against the hung PostgreSQL failed after {took:?}: {flushed:?}");
    // The timed-out miss opened the breaker: calls that need PostgreSQL fail at once.
    assert!(matches!(flushed, Err(memdb::Error::Unavailable { .. })), "{flushed:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(!db.stats().postgres_up, "{:?}", db.stats());
    write("during-3").await;

    proxy.pause(false);
    common::eventually("a probe gets through and closes the breaker", || db.stats().postgres_up).await;
    // The background task drains what piled up once the breaker closes (or this does).
    db.flush(None).await.expect("flush after the pause");
    assert!(db.stats().postgres_up);
    let rows = pg_map(&dsn, "hung").await;
    let keys: Vec<_> = rows.keys().map(String::as_str).collect();
    assert_eq!(keys, ["before", "during-1", "during-2", "during-3"]);
    db.close().await.expect("close");
}

/// The drill's "deleted key reads back" (CI, seed 0x18eb892a8439be53): a killed
/// process's flush can still be running in PostgreSQL and commit after the next run
/// recovered — rewriting a row that recovery had deleted, with no row left for the LSN
/// guard to stop it. Opening ends the dead run's sessions first.
#[tokio::test]
async fn a_dead_runs_postgresql_session_is_ended_before_recovery() {
    let (config, _dir, dsn) = common::config(|_| {}).await;
    let db = MemDb::open(config.clone()).await.expect("open");
    db.insert("zombie", "k", &json!({"v": 1})).await.expect("insert");
    assert_eq!(db.flush(None).await.expect("flush"), 1);
    let watcher = common::pg(&dsn).await;
    let instance: String = watcher
        .query_one(
            "SELECT application_name FROM pg_stat_activity
             WHERE datname = current_database() AND application_name LIKE 'memdb %' LIMIT 1",
            &[],
        )
        .await
        .expect("the engine's session")
        .get(0);
    db.delete("zombie", "k").await.expect("delete");
    db.crash().await;

    // The dead run's session, a write of the old value still in flight.
    let zombie = memdb::connect_postgres(&format!("{dsn} application_name={}", dsn_quote(&instance)))
        .await
        .expect("connect as the dead run");
    zombie.batch_execute("BEGIN").await.expect("begin");

    // Recovery replays the delete; the first connection ends the dead run's session
    // before the drain flushes the delete: PostgreSQL has no row `k`.
    let db = MemDb::open(config.clone()).await.expect("reopen");
    common::until_drained(&db).await;
    let late = zombie
        .batch_execute(
            "INSERT INTO memdb_zombie (key, data, lsn) VALUES ('k', '{\"v\": 1}', 1)
             ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, lsn = EXCLUDED.lsn WHERE memdb_zombie.lsn < 1;
             COMMIT",
        )
        .await;
    assert!(late.is_err(), "the dead run's session must have been ended at open");
    assert_eq!(db.get("zombie", "k").await.expect("get"), None, "a deleted key stays deleted");
    assert!(pg_map(&dsn, "zombie").await.is_empty());
    db.close().await.expect("close");
}
