//! The limits beside the systems: the raw fdatasync rate of the WAL's disk, and a plain
//! COPY into a table shaped like memdb's (the fastest way rows get into it).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::Client;

use crate::hist::Hist;
use crate::report::Fsync;
use crate::systems::postgres::ddl;

/// Overwrites one 4 KiB block and fdatasyncs it, again and again for `time`, in a file
/// under `dir`: the disk's cost of one durable commit.
pub fn fdatasync_rate(dir: &Path, time: Duration) -> Fsync {
    let file_dir = tempfile::tempdir_in(dir).expect("a temp dir");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(file_dir.path().join("sync-probe"))
        .expect("create the probe file");
    let block = [0x5a_u8; 4096];
    file.write_all_at(&block, 0).expect("write");
    file.sync_all().expect("fsync");
    let mut hist = Hist::default();
    let start = Instant::now();
    while start.elapsed() < time {
        let began = Instant::now();
        file.write_all_at(&block, 0).expect("write");
        file.sync_data().expect("fdatasync");
        hist.record(u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    Fsync {
        per_s: hist.count() as f64 / start.elapsed().as_secs_f64(),
        p50_us: hist.quantile(0.5) as f64 / 1e3,
        p99_us: hist.quantile(0.99) as f64 / 1e3,
    }
}

/// One text-format COPY of `rows` (key, JSON) into a fresh GIN-indexed `table`; the
/// time it took. The JSON holds no tab, newline or backslash, so it needs no escaping.
pub async fn copy_rows(client: &Client, table: &str, rows: &[(String, String)]) -> Duration {
    client.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).await.expect("drop");
    client.batch_execute(&ddl(table)).await.expect("create the COPY table");
    let start = Instant::now();
    let sink = client.copy_in(&format!("COPY {table} (key, data, lsn) FROM STDIN")).await.expect("COPY");
    let mut sink = std::pin::pin!(sink);
    let mut chunk = String::with_capacity(1 << 20);
    for (lsn, (key, json)) in rows.iter().enumerate() {
        debug_assert!(!json.contains(['\t', '\n', '\\']));
        chunk.push_str(key);
        chunk.push('\t');
        chunk.push_str(json);
        chunk.push('\t');
        chunk.push_str(&(lsn + 1).to_string());
        chunk.push('\n');
        if chunk.len() >= 1 << 20 {
            sink.send(Bytes::from(std::mem::take(&mut chunk))).await.expect("COPY data");
        }
    }
    if !chunk.is_empty() {
        sink.send(Bytes::from(chunk)).await.expect("COPY data");
    }
    let copied = sink.as_mut().finish().await.expect("finish COPY");
    let elapsed = start.elapsed();
    assert_eq!(copied, rows.len() as u64, "COPY wrote every row");
    client.batch_execute(&format!("DROP TABLE {table}")).await.expect("drop");
    elapsed
}
