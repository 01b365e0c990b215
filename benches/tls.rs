//! Flush rows/s and get-miss latency over TLS (`verify-full`) beside plain TCP, on one
//! private cluster (`ssl = on`, SCRAM password either way), in the same run: the cost of
//! encrypting what memdb sends to PostgreSQL.
//!
//! `cargo bench --bench tls` (`MEMDB_BENCH_ROWS`, default 100,000 rows per flush;
//! `MEMDB_BENCH_MISSES`, default 5,000 gets).

use std::time::{Duration, Instant};

use memdb::postgres::PrivateCluster;
use memdb::{Config, MemDb};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Flush rows/s, then get-miss latencies (sorted), for one DSN.
async fn measure(dsn: &str, table: &str, rows: usize, misses: usize) -> (f64, Vec<Duration>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dsn, dir.path().join("wal"));
    config.flush_interval = Duration::from_secs(3600);
    config.idle_ttl = Duration::from_millis(1);
    config.max_dirty_records = rows * 2;
    config.flush_dirty_threshold = rows * 2;
    let db = MemDb::open(config).await.expect("open");
    let padding = "x".repeat(150);
    for i in 0..rows {
        db.insert(table, &format!("k{i}"), &json!({"n": i, "pad": padding})).await.expect("insert");
    }
    let started = Instant::now();
    let flushed = db.flush(Some(table)).await.expect("flush");
    let rate = flushed as f64 / started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(5)).await;
    db.evict_idle();
    let mut latencies = Vec::with_capacity(misses);
    for i in 0..misses {
        let key = format!("k{}", (i * 7919) % rows);
        let started = Instant::now();
        let row = db.get(table, &key).await.expect("get");
        latencies.push(started.elapsed());
        assert!(row.is_some());
    }
    db.close().await.expect("close");
    latencies.sort_unstable();
    (rate, latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let rows = env_usize("MEMDB_BENCH_ROWS", 100_000);
    let misses = env_usize("MEMDB_BENCH_MISSES", 5_000);
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start_tls_or_plain)
        .await
        .expect("task")
        .expect("a cluster offering TLS");
    let tls = cluster.client_tls().expect("TLS");
    let base =
        format!("host=localhost port={} user=postgres dbname=postgres password={}", cluster.port(), tls.password);
    let modes = [
        ("plain TCP", format!("{base} sslmode=disable")),
        ("TLS verify-full", format!("{base} sslmode=verify-full sslrootcert={}", tls.ca_file.display())),
    ];
    println!("{rows} rows per flush, {misses} get misses; two rounds, alternating");
    println!("{:<16} {:>12} {:>10} {:>10} {:>10}", "connection", "flush rows/s", "miss p50", "miss p99", "miss p99.9");
    for round in 0..2 {
        for (i, (name, dsn)) in modes.iter().enumerate() {
            let (rate, latencies) = measure(dsn, &format!("bench_tls_{round}_{i}"), rows, misses).await;
            println!(
                "{name:<16} {rate:>12.0} {:>10.1?} {:>10.1?} {:>10.1?}",
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99),
                percentile(&latencies, 0.999)
            );
        }
    }
}
