//! A tour of the WAL: append in both durability modes, reopen and replay, truncate.
//!
//! `cargo run --release -p memdb-wal --example tour [DIR]` (a temp dir when omitted).

use std::time::{Duration, Instant};

use memdb_wal::{Durability, Entry, Op, Options, Wal};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args().nth(1).map_or_else(|| temp.path().to_path_buf(), Into::into);
    let value = br#"{"caller":"+4930123456","callee":"+4940987654","status":"ringing","codec":"opus","turns":3}"#;

    let periodic = Options { durability: Durability::Periodic(Duration::from_millis(100)), ..Options::default() };
    let wal = Wal::open(&dir, periodic.clone())?;
    println!("opened {} — next LSN {}", dir.display(), wal.next_lsn());
    let n = 200_000u64;
    let start = Instant::now();
    for i in 0..n {
        let key = format!("call:{i}");
        wal.append(&Entry { op: Op::Put, table: "calls", key: &key, value })?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "Periodic: {n} appends in {secs:.3} s = {:.0}/s (each in the page cache before it returned)",
        n as f64 / secs
    );
    drop(wal);

    let sync = Options { durability: Durability::Sync, ..Options::default() };
    let wal = Wal::open(&dir, sync.clone())?;
    let start = Instant::now();
    let m = 200u64;
    for i in 0..m {
        let key = format!("call:sync:{i}");
        wal.append(&Entry { op: Op::Put, table: "calls", key: &key, value })?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "Sync, one appender: {m} appends in {secs:.3} s = {:.0}/s (each on stable storage before it returned)",
        m as f64 / secs
    );
    let last = wal.next_lsn() - 1;
    drop(wal);

    let start = Instant::now();
    let wal = Wal::open(&dir, sync)?;
    let records = wal.replay(1).count();
    println!(
        "reopened and replayed {records} records in {:.3} s; recovery: {:?}",
        start.elapsed().as_secs_f64(),
        wal.recovery_report()
    );
    let removed = wal.truncate_through(last)?;
    let stats = wal.stats();
    println!("truncated through LSN {last}: {removed} segments removed; now {stats:?}");
    println!("the next LSN is still {} — LSNs never go backwards", wal.next_lsn());
    Ok(())
}
