//! `memdb demo`: the original's "memory vs database" walk-through, live — writes, the
//! automatic flush, a query that sees unflushed writes, eviction, a read that loads an
//! evicted record back, the hot paths timed, then a writer child killed with SIGKILL and
//! its recovery: memdb restarts with PostgreSQL stopped and serves at once, then the
//! backlog drains when PostgreSQL starts.

mod crash;
mod show;
pub mod writer;

use std::path::Path;
use std::time::{Duration, Instant};

use memdb::{Config, MemDb};
use serde_json::json;

use self::show::{Pg, header, state, watch_until};
use crate::failure::Failure;
use crate::live::{Live, thousands};

/// The demo's logical table (PostgreSQL table `memdb_demo_calls`).
pub const TABLE: &str = "demo_calls";
/// The table the hot paths are timed on (PostgreSQL table `memdb_demo_bench`).
const BENCH_TABLE: &str = "demo_bench";

pub const HELP: &str = "\
Uses PG_DSN (environment or ./.env) when set — the demo then writes to tables
memdb_demo_calls and memdb_demo_bench there, emptied first — otherwise starts a private throwaway PostgreSQL
(initdb + pg_ctl in a temp dir, as user nobody when run as root) and removes it at the end.
The WAL lives in a temp dir. Needs PostgreSQL 15's server binaries (pg_config --bindir).

Examples:
  cargo run --release -- demo
  memdb demo --quick          # smaller and faster (what the tests run)";

#[derive(clap::Args)]
pub struct Args {
    /// Records to write in the first part.
    #[arg(long, default_value_t = 2_000)]
    records: u64,
    /// Flush interval and idle TTL, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    interval: f64,
    /// Writes the child acknowledges before it is killed.
    #[arg(long, default_value_t = 2_000)]
    kill_after: u64,
    /// A smaller, faster run: 200 records, 0.5 s intervals, kill after 200 writes, 10k hot-path operations.
    #[arg(long)]
    quick: bool,
}

/// How the demo runs, from its arguments.
pub struct Plan {
    records: u64,
    interval: Duration,
    kill_after: u64,
    hot_path_ops: u64,
}

pub fn run(args: &Args) -> Result<u8, Failure> {
    let plan = if args.quick {
        Plan { records: 200, interval: Duration::from_millis(500), kill_after: 200, hot_path_ops: 10_000 }
    } else {
        let interval = Duration::try_from_secs_f64(args.interval)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Failure::new("--interval must be a positive number of seconds", "e.g. --interval 2"))?;
        Plan { records: args.records.max(1), interval, kill_after: args.kill_after.max(1), hot_path_ops: 100_000 }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::from_error("starting the async runtime", &e, "check the system's thread limits"))?;
    runtime.block_on(walk_through(&plan))?;
    Ok(0)
}

/// The engine's configuration on `dsn` and `wal_dir`. When `dsn` is the configured
/// `PG_DSN`, its companions come with it (`PG_PASSWORD_FILE`, `MEMDB_SCHEMA`,
/// `MEMDB_PG_POOLER`), as a daemon would have them; the private cluster needs none.
pub(crate) fn engine_config(dsn: &str, wal_dir: &Path) -> Config {
    let mut config = Config::new(dsn, wal_dir);
    if let Ok(configured) = Config::from_env()
        && configured.pg_dsn == dsn
    {
        config.pg_password_file = configured.pg_password_file;
        config.pg_schema = configured.pg_schema;
        config.pg_pooler = configured.pg_pooler;
    }
    config
}

/// `PG_DSN` from the environment or `./.env`, or `None` when it is not set.
fn configured_dsn() -> Result<Option<String>, Failure> {
    match Config::from_env() {
        Ok(config) => Ok(Some(config.pg_dsn)),
        Err(memdb::Error::Config { name: "PG_DSN", value, .. }) if value.is_empty() => Ok(None),
        Err(e) => Err(Failure::from_error("reading the configuration", &e, "fix the variable named above")),
    }
}

async fn walk_through(plan: &Plan) -> Result<(), Failure> {
    println!("memdb demo — memory vs database, live\n");
    let (dsn, server) = match configured_dsn()? {
        Some(dsn) => {
            println!("PostgreSQL: PG_DSN (tables memdb_{TABLE} and memdb_{BENCH_TABLE}, emptied first)");
            (dsn, None)
        }
        None => {
            println!("PostgreSQL: PG_DSN is not set, starting a private throwaway server…");
            let live = Live::start();
            let dsn = memdb::postgres::test_dsn_from(None).await.map_err(|e| {
                Failure::from_error(
                    "starting a private PostgreSQL",
                    &e,
                    "install PostgreSQL 15's server package (pg_config --bindir must find initdb), or set PG_DSN",
                )
            })?;
            let took = live.elapsed().as_secs_f64();
            live.finish(&format!("PostgreSQL: private throwaway server, started in {took:.1} s (removed at exit)"));
            (dsn, memdb::postgres::PrivateCluster::shared().ok())
        }
    };
    let pg = Pg::connect(&engine_config(&dsn, Path::new(""))).await?;
    pg.empty().await?;
    let dir = tempfile::tempdir()
        .map_err(|e| Failure::from_error("creating a temp dir for the WAL", &e, "check TMPDIR and free space"))?;
    let wal_dir = dir.path().join("wal");
    let mut config = engine_config(&dsn, &wal_dir);
    config.flush_interval = plan.interval;
    config.idle_ttl = plan.interval;
    let secs = plan.interval.as_secs_f64();
    println!("WAL: {}  (flush every {secs} s, idle records evicted after {secs} s)", wal_dir.display());
    let db = MemDb::open(config)
        .await
        .map_err(|e| Failure::from_error("opening memdb", &e, "check that PostgreSQL accepts connections"))?;

    println!("\n1. create_table(\"{TABLE}\", {{status: string, start_time: timestamp, turns: integer}})");
    db.create_table(TABLE, &json!({"status": "string", "start_time": "timestamp", "turns": "integer"}))
        .await
        .map_err(|e| engine("creating the table", &e))?;

    println!("\n2. Write {} live calls: each is in the WAL and in memory when insert returns", thousands(plan.records));
    let mut live = Live::start();
    for i in 1..=plan.records {
        let call = json!({"caller": format!("+4930{i:07}"), "callee": "+4940987654", "status": "ringing",
                          "start_time": "2026-11-26T03:17:00Z", "codec": "opus", "turns": 0});
        db.insert(TABLE, &format!("call:{i}"), &call).await.map_err(|e| engine("writing", &e))?;
        live.update(&format!("   written {} / {}", thousands(i), thousands(plan.records)));
    }
    let took = live.elapsed().as_secs_f64();
    let rate = plan.records as f64 / took;
    live.finish(&format!("   written {} in {:.0} ms ({rate:.0}/s)", thousands(plan.records), took * 1e3));
    println!();
    header();
    state("just written", &db, &pg).await?;

    println!("\n3. Patch call:1 — memory changes at once, PostgreSQL later");
    db.patch(TABLE, "call:1", &json!({"status": "answered", "turns": 3})).await.map_err(|e| engine("patching", &e))?;
    compare(&db, &pg, "call:1").await?;
    println!("\n4. The automatic flush (every {secs} s) makes PostgreSQL equal to memory");
    header();
    watch_until("after the automatic flush", &db, &pg, "call:", Duration::from_secs(60), |db| {
        db.stats().dirty_records == 0
    })
    .await?;
    compare(&db, &pg, "call:1").await?;
    db.patch(TABLE, "call:2", &json!({"status": "answered"})).await.map_err(|e| engine("patching", &e))?;
    let answered = db.query(TABLE, "data->>'status' = 'answered'", 10).await.map_err(|e| engine("querying", &e))?;
    let keys: Vec<&str> = answered.iter().map(|r| r.key.as_str()).collect();
    println!("   patch(call:2, answered), then at once query(status = 'answered') → {keys:?}");
    println!("   (a query first flushes its table, so it sees every acknowledged write)");

    println!("\n5. Idle clean records leave memory after {secs} s; PostgreSQL keeps them");
    header();
    watch_until("after eviction", &db, &pg, "call:", Duration::from_secs(60), |db| db.stats().cached_records == 0)
        .await?;

    println!("\n6. A read of an evicted record loads it back from PostgreSQL");
    let key = format!("call:{}", plan.records.div_ceil(2));
    let before = db.stats();
    let started = Instant::now();
    let call = db.get(TABLE, &key).await.map_err(|e| engine("reading", &e))?;
    let took = started.elapsed();
    let after = db.stats();
    println!("   get({key}) → {}", call.map_or_else(|| "nothing (unexpected)".into(), |c| c.to_string()));
    println!(
        "   in {:.2} ms: cache misses {} → {}, cached records {} → {}",
        took.as_secs_f64() * 1e3,
        before.cache_misses,
        after.cache_misses,
        before.cached_records,
        after.cached_records
    );
    let again = Instant::now();
    db.get(TABLE, &key).await.map_err(|e| engine("reading", &e))?;
    println!(
        "   the same get again: {:.1} µs, from memory (cache hits {})",
        again.elapsed().as_secs_f64() * 1e6,
        db.stats().cache_hits
    );

    hot_paths(&db, plan).await?;
    db.close().await.map_err(|e| engine("closing", &e))?;
    crash::kill_and_recover(plan, &dsn, &wal_dir, pg, server).await?;
    println!("\ndone: every acknowledged write survived; the private PostgreSQL and the temp WAL are removed now.");
    Ok(())
}

/// Times the hot paths: inserts, cached gets, and a flush of what they wrote.
async fn hot_paths(db: &MemDb, plan: &Plan) -> Result<(), Failure> {
    let n = plan.hot_path_ops;
    println!("\n7. The hot paths ({} operations each, table {BENCH_TABLE})", thousands(n));
    let record = json!({"caller": "+4930123456", "callee": "+4940987654", "status": "ringing",
                        "start_time": "2026-11-26T03:17:00Z", "codec": "opus", "turns": 3});
    let started = Instant::now();
    for i in 0..n {
        db.insert(BENCH_TABLE, &format!("call:{i}"), &record).await.map_err(|e| engine("writing", &e))?;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!("   inserts:     {rate:>10.0}/s  (the original: ~100k/s, with no WAL)");
    db.flush(None).await.map_err(|e| engine("flushing", &e))?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!("   to PostgreSQL: {rate:>8.0} rows/s end to end (every insert flushed, GIN index included)");
    let started = Instant::now();
    for i in 0..n {
        db.get(BENCH_TABLE, &format!("call:{}", i % 1000)).await.map_err(|e| engine("reading", &e))?;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!("   cached gets: {rate:>10.0}/s  (the original: ~280k/s)");
    Ok(())
}

/// Shows one key in memory beside PostgreSQL.
async fn compare(db: &MemDb, pg: &Pg, key: &str) -> Result<(), Failure> {
    let memory = db.get(TABLE, key).await.map_err(|e| engine("reading", &e))?;
    let stored = pg.value(key).await?;
    println!("   {key} in memory:     {}", memory.map_or_else(|| "-".into(), |v| v.to_string()));
    println!("   {key} in PostgreSQL: {}", stored.unwrap_or_else(|| "no row yet".into()));
    Ok(())
}

fn engine(doing: &str, error: &memdb::Error) -> Failure {
    Failure::from_error(doing, error, "see the message; PostgreSQL problems: check PG_DSN and the server's log")
}
