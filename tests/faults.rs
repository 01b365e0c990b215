//! Storage faults under the engine, on a real PostgreSQL: `EIO` injected at the Nth
//! sync or write of the WAL's simulated disk, and a full disk (a small tmpfs when run as
//! root, else the simulated disk's capacity).
//!
//! ⚑ After a failed sync or write the engine acknowledges nothing more, never retries the
//! sync, keeps serving reads, and after a restart every write acknowledged before the
//! fault is there. A full disk refuses the one write with a typed error and acknowledges
//! nothing partly; once there is room and the engine restarts, nothing is lost.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use memdb::wal::storage::{SimFaults, SimStorage, Storage};
use memdb::{Config, Durability, Error, MemDb};
use serde_json::{Value, json};

/// The key of the `i`th write.
fn key_of(i: usize) -> String {
    format!("k{:03}", i % 40)
}

/// Writes `key_of(i)` until one fails; returns the acknowledged records (by key, last
/// value) and the failure with the number of writes acknowledged before it.
async fn write_until_failure(
    db: &MemDb,
    table: &str,
    limit: usize,
) -> (BTreeMap<String, Value>, Option<(usize, Error)>) {
    let mut acked = BTreeMap::new();
    for i in 0..limit {
        let key = key_of(i);
        let value = json!({"i": i, "pad": "x".repeat(50 + i * 37 % 700)});
        match db.upsert(table, &key, &value).await {
            Ok(()) => {
                acked.insert(key, value);
            }
            Err(e) => return (acked, Some((i, e))),
        }
    }
    (acked, None)
}

/// Every acknowledged record reads back, from a fresh engine.
async fn assert_all_there(db: &MemDb, table: &str, acked: &BTreeMap<String, Value>, what: &str) {
    for (key, value) in acked {
        let got = db.get(table, key).await.expect("get").map(|j| j.to_value());
        assert_eq!(got.as_ref(), Some(value), "{what}: acknowledged {table}/{key} lost");
    }
}

/// The Nth sync or write fails: fail-stop, reads go on, no retry, nothing acknowledged
/// lost across a restart on what a power cut leaves.
async fn eio_at(kind: &str, faults: impl Fn(u64) -> SimFaults) {
    let (config, _dir, _dsn) = common::config(|c| {
        c.durability = Durability::Sync;
        c.wal_segment_bytes = 8192;
    })
    .await;
    let mut hit = 0;
    for call in 1..=30u64 {
        let disk = SimStorage::new(faults(call));
        let table = format!("eio_{kind}_{call}");
        let db = match MemDb::open_on(config.clone(), Arc::new(disk.clone())).await {
            Ok(db) => db,
            Err(e) => {
                assert!(matches!(e, Error::Wal(_)), "fault at call {call} during open: {e}");
                continue;
            }
        };
        let (acked, failure) = write_until_failure(&db, &table, 400).await;
        let (_, failure) = failure.unwrap_or_else(|| panic!("{kind} fault at call {call} never hit"));
        assert!(matches!(failure, Error::Wal(_)), "{kind} at call {call}: a WAL error, got {failure}");
        let syncs = disk.sync_count();
        for i in 0..5 {
            let again = db.upsert(&table, "after", &json!({"i": i})).await;
            assert!(matches!(again, Err(Error::Wal(_))), "{kind} at {call}: acknowledged after the fault: {again:?}");
        }
        if let Some((key, value)) = acked.iter().next_back() {
            let read = db.get(&table, key).await.expect("reads go on after the fault").map(|j| j.to_value());
            assert_eq!(read.as_ref(), Some(value));
        }
        db.crash().await;
        assert_eq!(disk.sync_count(), syncs, "{kind} at call {call}: a failed sync was retried");
        let image = disk.power_cut_image(call);
        let db = MemDb::open_on(config.clone(), Arc::new(image)).await.expect("reopen after the fault");
        assert_all_there(&db, &table, &acked, &format!("{kind} at call {call}")).await;
        assert_eq!(db.get(&table, "after").await.expect("get"), None, "a refused write appeared");
        db.close().await.expect("close");
        hit += 1;
    }
    println!("{kind}: the fault hit after open at {hit} of 30 calls");
    assert!(hit >= 20, "most faults land after open: {hit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eio_on_the_nth_sync_stops_writes_and_loses_nothing_acknowledged() {
    eio_at("sync", |call| SimFaults { fail_sync: Some(call), ..SimFaults::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eio_on_the_nth_write_stops_writes_and_loses_nothing_acknowledged() {
    eio_at("write", |call| SimFaults { fail_write: Some(call), ..SimFaults::default() }).await;
}

/// A small tmpfs mounted at `dir` (root only); `None` when it cannot be.
fn mount_tmpfs(dir: &Path, size: &str) -> Option<()> {
    let status = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status();
    status.ok().filter(|s| s.success()).map(drop)
}

fn remount(dir: &Path, size: &str) {
    let status = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(dir).status();
    assert!(status.is_ok_and(|s| s.success()), "remounting the tmpfs at {}", dir.display());
}

/// Unmounts on drop, so a failed test leaves no mount behind.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        // Lazy: detached at once even if a file in it is still open.
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_the_write_and_loses_nothing_after_room_is_made() {
    let (config, dir, _dsn) = common::config(|c| {
        c.wal_segment_bytes = 64 << 10;
        c.durability = Durability::Sync;
    })
    .await;
    let mount_point = dir.path().join("tmpfs");
    std::fs::create_dir_all(&mount_point).expect("mount point");
    // Room for a few segments of 64 KiB; the WAL directory lives inside the tmpfs.
    let mounted = mount_tmpfs(&mount_point, "256k").map(|()| Mounted(&mount_point));
    let sim = SimStorage::new(SimFaults { capacity: Some(256 << 10), ..SimFaults::default() });
    let mut config = config;
    config.wal_dir = mount_point.join("wal");
    let open = |config: Config| {
        let sim = sim.clone();
        let real = mounted.is_some();
        async move {
            if real {
                MemDb::open(config).await
            } else {
                MemDb::open_on(config, Arc::new(sim) as Arc<dyn Storage>).await
            }
        }
    };
    if mounted.is_some() {
        println!("disk full: the WAL on a 256 KiB tmpfs");
    } else {
        println!("disk full: not root (or no tmpfs): the simulated disk's capacity stands in for a tmpfs");
    }
    let table = "disk_full";
    let db = open(config.clone()).await.expect("open");
    let (acked, failure) = write_until_failure(&db, table, 5_000).await;
    let (written, failure) = failure.expect("the disk fills up");
    assert!(matches!(&failure, Error::Wal(e) if e.is_out_of_space()), "a typed out-of-space error: {failure:?}");
    assert!(written > 50, "some writes fit: {written}");
    println!("disk full after {written} writes: {failure}");
    // Nothing partly acknowledged: the refused write is not visible, every earlier one is.
    let next = key_of(written);
    let read = db.get(table, &next).await.expect("reads go on").map(|j| j.to_value());
    assert_eq!(read.as_ref(), acked.get(&next), "the refused write changed what {next} reads");
    db.crash().await;
    // Room is made (an operator frees space), then the engine restarts.
    if mounted.is_some() {
        remount(&mount_point, "4m");
    } else {
        sim.set_faults(SimFaults::default());
    }
    let db = open(config.clone()).await.expect("reopen with room");
    assert_all_there(&db, table, &acked, "after a full disk").await;
    db.upsert(table, "after", &json!({"ok": true})).await.expect("writes go on once there is room");
    db.close().await.expect("close");
    drop(db);
    drop(mounted);
}
