//! The demo's writer child (`memdb demo-writer`, hidden): writes calls as fast as it can
//! and prints the number of each write once it is acknowledged, until it is killed.
//!
//! Invariant: a number reaches standard output only after `upsert` returned for it, so
//! every number the parent read names an acknowledged write. Its flush interval is an
//! hour: what it wrote lives only in its WAL when the parent kills it.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use memdb::MemDb;
use serde_json::json;

use super::TABLE;
use crate::failure::Failure;

/// Key prefix of the child's writes.
pub const PREFIX: &str = "child:";

#[derive(clap::Args)]
pub struct Args {
    /// The WAL directory to write to.
    #[arg(long)]
    wal_dir: PathBuf,
    /// The PostgreSQL DSN.
    #[arg(long)]
    dsn: String,
}

pub fn run(args: &Args) -> Result<u8, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::from_error("starting the async runtime", &e, "check the system's thread limits"))?;
    runtime.block_on(write_until_killed(args))
}

async fn write_until_killed(args: &Args) -> Result<u8, Failure> {
    let mut config = super::engine_config(&args.dsn, &args.wal_dir);
    config.flush_interval = Duration::from_secs(3600);
    let fail = |doing: &str, e: memdb::Error| Failure::from_error(doing, &e, "this is the demo's writer child");
    let db = MemDb::open(config).await.map_err(|e| fail("opening memdb", e))?;
    let mut out = std::io::stdout().lock();
    for i in 1u64.. {
        let call = json!({"caller": format!("+4930{i:07}"), "status": "ringing", "turns": 0});
        db.upsert(TABLE, &format!("{PREFIX}{i}"), &call).await.map_err(|e| fail("writing", e))?;
        // A closed pipe means the parent is gone: stop.
        if writeln!(out, "{i}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(0)
}
