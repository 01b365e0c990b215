//! Shared set-up of the engine's integration tests: a fresh database on the private
//! PostgreSQL (or `PG_DSN`), a WAL in a temp dir, and a direct client to check PostgreSQL.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::time::Duration;

use memdb::{Config, MemDb};

/// A test database: the engine, its WAL directory, and its DSN.
pub struct TestDb {
    pub db: MemDb,
    pub dir: tempfile::TempDir,
    pub dsn: String,
}

/// A config for tests: a fresh PostgreSQL database, a temp WAL dir, no automatic flush
/// (tests flush when they mean to) unless `tweak` says otherwise.
pub async fn config(tweak: impl FnOnce(&mut Config)) -> (Config, tempfile::TempDir, String) {
    let dsn = memdb::postgres::test_dsn().await.expect("a PostgreSQL for tests (PG_DSN or the private cluster)");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dsn.clone(), dir.path().join("wal"));
    config.flush_interval = Duration::from_secs(3600);
    config.wal_segment_bytes = 1 << 20;
    tweak(&mut config);
    (config, dir, dsn)
}

pub async fn open(tweak: impl FnOnce(&mut Config)) -> TestDb {
    let (config, dir, dsn) = config(tweak).await;
    let db = MemDb::open(config).await.expect("open");
    TestDb { db, dir, dsn }
}

/// A plain client on the test database, to look at PostgreSQL directly.
pub async fn pg(dsn: &str) -> tokio_postgres::Client {
    memdb::connect_postgres(dsn).await.expect("connect")
}

/// The rows of a memdb table in PostgreSQL: (key, data as JSON, lsn), ordered by key.
pub async fn pg_rows(dsn: &str, table: &str) -> Vec<(String, serde_json::Value, i64)> {
    let client = pg(dsn).await;
    let sql = format!("SELECT key, data::text, lsn FROM memdb_{table} ORDER BY key");
    client
        .query(&sql, &[])
        .await
        .expect("select")
        .iter()
        .map(|r| (r.get(0), serde_json::from_str(r.get::<_, &str>(1)).expect("json"), r.get(2)))
        .collect()
}

/// Waits (bounded) until `condition` holds, checking every few milliseconds.
/// Waits until the backlog replayed at open has drained into PostgreSQL (open does not
/// wait for it) and nothing else is dirty.
pub async fn until_drained(db: &memdb::MemDb) {
    eventually("the backlog replayed at open drains into PostgreSQL", || {
        let stats = db.stats();
        stats.replay_backlog == 0 && stats.dirty_records == 0
    })
    .await;
}

pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `fut` up to `polls` times, 1 ms apart (so its I/O moves on between polls), and
/// drops it if it has not finished: what a `timeout` or a `select!` does to a call.
/// Returns its output if it finished.
pub async fn poll_then_drop<F: std::future::Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    for _ in 0..polls {
        let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
        if let std::task::Poll::Ready(out) = polled {
            return Some(out);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// Prints a drill's closing figures past the test harness's capture, so they show in
/// the CI log of a passing run too.
pub fn report(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}
