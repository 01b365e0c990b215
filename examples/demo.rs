//! The quick start and the "memory vs database" walk-through of the original, live.
//!
//! `cargo run --release --example demo` — uses `PG_DSN` when set, otherwise starts a
//! private PostgreSQL (removed at the end). Shows records written to memory and the WAL,
//! the automatic flush making PostgreSQL catch up, eviction, a read that loads an evicted
//! record back, a query that sees unflushed writes, and the rates of the hot paths.

use std::time::{Duration, Instant};

use memdb::{Config, MemDb};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dsn = match std::env::var("PG_DSN") {
        Ok(dsn) => dsn,
        Err(_) => {
            println!("PG_DSN is not set: starting a private PostgreSQL for this demo…");
            memdb::postgres::test_dsn().await?
        }
    };
    let dir = tempfile::tempdir()?;
    let mut config = Config::new(dsn.clone(), dir.path().join("wal"));
    config.flush_interval = Duration::from_secs(2);
    config.idle_ttl = Duration::from_secs(2);
    let db = MemDb::open(config).await?;
    let (pg, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);

    println!("\n1. Create a table with schema hints (kept in PostgreSQL, enforced on writes)");
    db.create_table("calls", &json!({"status": "string", "start_time": "timestamp", "turns": "integer"})).await?;

    println!("\n2. Write five live calls: each is in the WAL and in memory when insert returns");
    for i in 1..=5 {
        let call = json!({"caller": format!("+49301234{i}"), "callee": "+4940987654", "status": "ringing",
                          "start_time": "2026-11-26T03:17:00Z", "codec": "opus", "turns": 0});
        db.insert("calls", &format!("call:{i}"), &call).await?;
    }
    show(&db, &pg, "just written").await?;

    println!("\n3. Update a call: memory changes at once, PostgreSQL later");
    db.patch("calls", "call:1", &json!({"status": "answered", "turns": 3})).await?;
    println!("   memory: {}", db.get("calls", "call:1").await?.ok_or("missing")?);

    println!("\n4. A query sees every acknowledged write, flushed or not (the original could not)");
    let answered = db.query("calls", "data->>'status' = 'answered'", 10).await?;
    println!("   query(status = answered) → {:?}", answered.iter().map(|r| &r.key).collect::<Vec<_>>());

    println!("\n5. The background flush makes PostgreSQL catch up (every 2 s here)");
    db.insert("calls", "call:6", &json!({"status": "ringing"})).await?;
    show(&db, &pg, "before the automatic flush").await?;
    wait_until(|| db.stats().dirty_records == 0).await;
    show(&db, &pg, "after the automatic flush").await?;

    println!("\n6. Idle clean records are evicted (idle TTL 2 s here); a read loads them back");
    wait_until(|| db.stats().cached_records == 0).await;
    show(&db, &pg, "after eviction").await?;
    let misses = db.stats().cache_misses;
    let call = db.get("calls", "call:3").await?.ok_or("missing")?;
    println!("   get(call:3) → {call}  (cache misses {misses} → {})", db.stats().cache_misses);

    println!("\n7. The hot paths");
    let record = json!({"caller": "+4930123456", "callee": "+4940987654", "status": "ringing",
                        "start_time": "2026-11-26T03:17:00Z", "codec": "opus", "turns": 3});
    let n = 100_000;
    let start = Instant::now();
    for i in 0..n {
        db.insert("bench", &format!("call:{i}"), &record).await?;
    }
    let rate = f64::from(n) / start.elapsed().as_secs_f64();
    println!("   {n} inserts: {rate:.0}/s (the original: ~100k/s with no WAL)");
    let start = Instant::now();
    for i in 0..n {
        db.get("bench", &format!("call:{}", i % 1000)).await?;
    }
    let rate = f64::from(n) / start.elapsed().as_secs_f64();
    println!("   {n} cached gets: {rate:.0}/s (the original: ~280k/s)");
    let start = Instant::now();
    let flushed = db.flush(None).await?;
    println!(
        "   flush of {flushed} records: {:.0} rows/s into the GIN-indexed table",
        flushed as f64 / start.elapsed().as_secs_f64()
    );

    println!("\n8. Stats: {:#?}", db.stats());
    db.close().await?;
    println!("\nclosed: everything flushed, the WAL synced and released");
    Ok(())
}

/// Prints memory state beside PostgreSQL's.
async fn show(db: &MemDb, pg: &tokio_postgres::Client, when: &str) -> Result<(), Box<dyn std::error::Error>> {
    let stats = db.stats();
    let rows: i64 = pg.query_one("SELECT count(*) FROM memdb_calls", &[]).await?.get(0);
    println!(
        "   {when:<28} memory: {:>2} cached, {:>2} dirty | PostgreSQL: {rows:>2} rows | WAL: {} bytes",
        stats.cached_records, stats.dirty_records, stats.wal_bytes
    );
    Ok(())
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
