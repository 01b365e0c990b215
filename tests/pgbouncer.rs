//! memdb through PgBouncer in transaction pooling mode (`MEMDB_PG_POOLER=transaction`):
//! two engines share two server connections, every call works and nothing is lost; and
//! a pooler memdb was not told about is detected and named.
//!
//! Needs `pgbouncer` (Debian: `apt-get install pgbouncer`; `.ci/run` installs it as
//! root). Without it the tests say SKIPPED, unless `MEMDB_REQUIRE_PGBOUNCER=1` (CI)
//! makes that a failure.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use memdb::postgres::{PgBouncer, PrivateCluster};
use memdb::{Config, Error, MemDb, Misconfiguration, Pooler, StoreError};
use serde_json::json;

/// The cluster and two PgBouncers in transaction mode with two server connections —
/// the second drops memdb's startup options instead of refusing them — or `None` (said)
/// when PgBouncer is not installed.
async fn setup() -> Option<&'static (PrivateCluster, PgBouncer, PgBouncer)> {
    static SETUP: OnceLock<(PrivateCluster, PgBouncer, PgBouncer)> = OnceLock::new();
    if PgBouncer::find().is_none() {
        let required = std::env::var_os("MEMDB_REQUIRE_PGBOUNCER").is_some_and(|v| v == "1");
        assert!(!required, "MEMDB_REQUIRE_PGBOUNCER=1 but pgbouncer is not installed");
        common::report("SKIPPED: pgbouncer is not installed (apt-get install pgbouncer)");
        return None;
    }
    if let Some(setup) = SETUP.get() {
        return Some(setup);
    }
    let started = tokio::task::spawn_blocking(|| {
        let cluster = PrivateCluster::start()?;
        let bouncer = PgBouncer::start(&cluster, "transaction", 2, false)?;
        let ignoring = PgBouncer::start(&cluster, "transaction", 2, true)?;
        Ok::<_, memdb::postgres::ClusterError>((cluster, bouncer, ignoring))
    })
    .await
    .expect("task")
    .expect("cluster and pgbouncer");
    Some(SETUP.get_or_init(|| started))
}

fn config(dsn: String, dir: &std::path::Path, pooler: Pooler) -> Config {
    let mut config = Config::new(dsn, dir.join("wal"));
    config.flush_interval = Duration::from_secs(3600);
    config.pg_pooler = pooler;
    config.max_connections = 4;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_work_through_transaction_pooling_and_lose_nothing() {
    let Some((cluster, bouncer, _)) = setup().await else { return };
    let direct = cluster.create_database("pooled").await.expect("database");
    let dirs = [tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir")];
    let open = |i: usize| MemDb::open(config(bouncer.dsn("pooled"), dirs[i].path(), Pooler::Transaction));
    let engines = [open(0).await.expect("open a"), open(1).await.expect("open b")];
    let tables = ["pooled_a", "pooled_b"];
    let write = |db: &MemDb, table: &'static str| {
        let db = db.clone();
        tokio::spawn(async move {
            for i in 0..2_000 {
                db.insert(table, &format!("k{i}"), &json!({"n": i, "who": table})).await.expect("insert");
            }
            db.flush(None).await.expect("flush")
        })
    };
    let writers = [write(&engines[0], tables[0]), write(&engines[1], tables[1])];
    for writer in writers {
        assert_eq!(writer.await.expect("writer"), 2_000);
    }
    // Concurrent reads that miss memory: the engines' client connections take turns on
    // the two server connections.
    let readers: Vec<_> = (0..16)
        .map(|r| {
            let (db, table) = (engines[r % 2].clone(), tables[r % 2]);
            tokio::spawn(async move {
                for i in 0..50 {
                    let key = format!("k{}", (r * 50 + i) % 2_000);
                    assert!(db.get_uncached(table, &key).await.expect("get through the pooler").is_some());
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.expect("reader");
    }
    for (db, table) in engines.iter().zip(tables) {
        // Reads that miss memory, with and without parameters, interleaved across the
        // two engines on the two shared server connections.
        assert_eq!(db.evict_idle(), 0, "nothing idle yet");
        let read = db.get_uncached(table, "k1234").await.expect("get").expect("row");
        assert_eq!(read.to_value()["who"], table);
        let rows = db.query_params(table, "data->>'who' = $1", &[&table], 10).await.expect("query with a parameter");
        assert_eq!(rows.len(), 10);
        assert_eq!(db.query(table, "(data->>'n')::int < 5", 100).await.expect("query").len(), 5);
    }
    // Unflushed writes, then a drop without close: the reopened engine replays them
    // through the pooler.
    for i in 2_000..2_500 {
        engines[0].upsert(tables[0], &format!("k{i}"), &json!({"n": i})).await.expect("upsert");
    }
    let [a, b] = engines;
    drop(a);
    let a = open(0).await.expect("reopen a");
    common::until_drained(&a).await;
    a.close().await.expect("close a");
    b.close().await.expect("close b");

    let pg = common::pg(&direct).await;
    for (table, expected) in [("pooled_a", 2_500), ("pooled_b", 2_000)] {
        let count: i64 = pg.query_one(&format!("SELECT count(*) FROM memdb_{table}"), &[]).await.expect("count").get(0);
        assert_eq!(count, expected, "{table}: every acknowledged write reached PostgreSQL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_not_declared_is_detected_and_named() {
    let Some((cluster, refusing, ignoring)) = setup().await else { return };
    cluster.create_database("undeclared").await.expect("database");
    // One refuses memdb's startup option; the other drops it, and memdb sees it gone.
    for (bouncer, how) in [(refusing, "refusing startup options"), (ignoring, "ignoring startup options")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let err =
            MemDb::open(config(bouncer.dsn("undeclared"), dir.path(), Pooler::None)).await.expect_err("undeclared");
        let message = err.to_string();
        assert!(
            matches!(err, Error::Postgres(StoreError::Misconfigured { problem: Misconfiguration::Pooler, .. })),
            "{how}: {err:?}"
        );
        assert!(message.contains("MEMDB_PG_POOLER"), "{how}: {message}");
    }
}
