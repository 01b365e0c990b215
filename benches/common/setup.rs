//! Where benchmarks keep their files, and the memdb configuration they share: the
//! defaults, except that only the benchmark flushes or evicts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use memdb::{Config, Durability};
use tempfile::TempDir;

/// `MEMDB_BENCH_DIR` if set, else cargo's target tmp dir; created if missing.
pub fn bench_root() -> PathBuf {
    let root =
        std::env::var_os("MEMDB_BENCH_DIR").map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&root).expect("create the bench directory");
    root
}

/// A fresh directory under [`bench_root`], removed on drop.
pub fn tempdir() -> TempDir {
    tempfile::tempdir_in(bench_root()).expect("create a temp dir")
}

/// The defaults, except: no interval, threshold or budget flush, no idle eviction.
pub fn config(dsn: &str, wal_dir: &Path, durability: Durability) -> Config {
    let mut c = Config::new(dsn, wal_dir);
    c.durability = durability;
    c.flush_interval = Duration::from_secs(3_600);
    c.idle_ttl = Duration::from_secs(86_400);
    c.flush_dirty_threshold = usize::MAX;
    c.flush_wal_bytes_threshold = u64::MAX;
    c.max_dirty_records = usize::MAX;
    c.max_wal_bytes = u64::MAX;
    // A slow batch on a noisy machine must not fail the run.
    c.pg_timeout = Duration::from_secs(300);
    c
}
