//! Simulated power cuts: `Sync` loses no acknowledged record, `Periodic` loses only
//! records appended after its last sync, and a disk that ignores syncs (the negative
//! control) is caught losing records — proof that the check has teeth.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Rng;
use memdb_wal::storage::{SimFaults, SimStorage};
use memdb_wal::{Durability, Entry, Lsn, Op, Options, Wal};

const SEEDS: u64 = 2000;

fn opts(durability: Durability) -> Options {
    // Small segments so that cuts land during rotations and truncations too.
    Options { durability, segment_size: 4096, ..Options::default() }
}

/// What one seeded run did before the cut.
struct Run {
    /// Records that must survive: acknowledged as durable, above the truncation point.
    must_survive: Vec<Lsn>,
    /// Every LSN appended (acknowledged or not), above the truncation point.
    appended: Lsn,
    /// Records at or below this were truncated away.
    truncated: Lsn,
}

/// Appends, syncs and truncates at random on `disk`, then cuts the power.
fn run(disk: &SimStorage, durability: Durability, rng: &mut Rng) -> Run {
    let wal = Wal::open_with(Arc::new(disk.clone()), opts(durability)).expect("open");
    let mut durable: Lsn = 0;
    let mut truncated: Lsn = 0;
    let mut last: Lsn = 0;
    for _ in 0..rng.below(120) + 1 {
        match rng.below(20) {
            0 if last > 0 => {
                let through = truncated + rng.below(last - truncated + 1);
                wal.truncate_through(through).expect("truncate");
                truncated = truncated.max(through);
            }
            1 => durable = wal.sync().expect("sync"),
            _ => {
                last = common::append_derived(&wal, 20 + rng.below(400) as usize).expect("append");
                if durability == Durability::Sync {
                    durable = last;
                }
            }
        }
    }
    // A few appends that were never acknowledged as durable, left in flight.
    for _ in 0..rng.below(4) {
        let lsn = wal.next_lsn();
        let value = common::value_for(lsn, 100);
        let key = format!("k{lsn}");
        last = wal.append_nowait(&Entry { op: Op::Put, table: "t", key: &key, value: &value }).expect("append");
    }
    std::mem::forget(wal); // the power is cut: no close, no final sync
    Run { must_survive: (truncated + 1..=durable).collect(), appended: last, truncated }
}

/// Reopens the image and returns how many records that had to survive are missing (one
/// more if an LSN handed out before the cut is handed out again), or the error that
/// refused to open it.
fn lost_after_cut(image: &SimStorage, run: &Run, seed: u64) -> Result<usize, memdb_wal::Error> {
    let wal = Wal::open_with(Arc::new(image.clone()), opts(Durability::Sync))?;
    let records = common::replay_all(&wal, run.truncated + 1);
    for pair in records.windows(2) {
        assert_eq!(pair[1].lsn, pair[0].lsn + 1, "seed {seed}: a hole in the recovered log");
    }
    records.iter().for_each(common::assert_derived);
    assert!(records.last().is_none_or(|r| r.lsn <= run.appended), "seed {seed}: a record never appended");
    // ⚑ No LSN handed out before the cut, acknowledged or not, is handed out again (a
    // disk that ignores syncs can lose the segments themselves: that counts as a loss).
    let reused = usize::from(wal.next_lsn() <= run.appended);
    Ok(run.must_survive.iter().filter(|lsn| !records.iter().any(|r| r.lsn == **lsn)).count() + reused)
}

fn drill(durability: Durability, faults: SimFaults, name: &str) -> (u64, u64) {
    let base = common::base_seed(name);
    let mut seeds_with_loss = 0;
    let mut checked = 0;
    for i in 0..SEEDS {
        let seed = base.wrapping_add(i);
        let mut rng = Rng(seed);
        let disk = SimStorage::new(faults.clone());
        let run = run(&disk, durability, &mut rng);
        let image = disk.power_cut_image(rng.next());
        checked += run.must_survive.len() as u64;
        match lost_after_cut(&image, &run, seed) {
            Ok(0) => {}
            // A lying disk is caught either way: records missing, or synced data damaged.
            Ok(_) | Err(memdb_wal::Error::Corrupt(_)) if faults.ignore_syncs => seeds_with_loss += 1,
            Ok(lost) => panic!(
                "seed {seed}: {lost} acknowledged records lost or LSNs handed out again (replay with MEMDB_SEED={seed})"
            ),
            Err(e) => panic!("seed {seed}: a power cut must never prevent opening: {e}"),
        }
    }
    eprintln!("{name}: {SEEDS} power cuts, {checked} durable records checked, {seeds_with_loss} seeds lost data");
    (seeds_with_loss, checked)
}

#[test]
fn sync_mode_loses_no_acknowledged_record() {
    let (lost, checked) = drill(Durability::Sync, SimFaults::default(), "sync_mode_loses_no_acknowledged_record");
    assert_eq!(lost, 0);
    assert!(checked > SEEDS * 10, "the drill checked too little: {checked}");
}

#[test]
fn periodic_mode_loses_only_what_followed_the_last_sync() {
    // A long interval: the background sync never runs, only the explicit syncs count.
    let durability = Durability::Periodic(Duration::from_secs(3600));
    let (lost, checked) =
        drill(durability, SimFaults::default(), "periodic_mode_loses_only_what_followed_the_last_sync");
    assert_eq!(lost, 0);
    assert!(checked > 0);
}

#[test]
fn a_disk_that_ignores_syncs_is_caught_losing_data() {
    let faults = SimFaults { ignore_syncs: true, ..SimFaults::default() };
    let (lost, _) = drill(Durability::Sync, faults, "a_disk_that_ignores_syncs_is_caught_losing_data");
    assert!(lost * 100 >= SEEDS * 90, "the negative control detected loss in only {lost} of {SEEDS} seeds");
}

#[test]
fn group_commit_under_concurrency_survives_power_cuts() {
    let base = common::base_seed("group_commit_under_concurrency_survives_power_cuts");
    for i in 0..100 {
        let seed = base.wrapping_add(i);
        let disk = SimStorage::default();
        let wal = Wal::open_with(Arc::new(disk.clone()), opts(Durability::Sync)).expect("open");
        let acked: Vec<(Lsn, String)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4u64)
                .map(|t| {
                    let wal = &wal;
                    s.spawn(move || {
                        let mut rng = Rng(seed ^ (t + 1));
                        (0..rng.below(40))
                            .map(|n| {
                                let key = format!("w{t}-{n}");
                                let value = vec![b'v'; 20 + rng.below(300) as usize];
                                let entry = Entry { op: Op::Put, table: "t", key: &key, value: &value };
                                (wal.append(&entry).expect("append"), key)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().expect("worker")).collect()
        });
        let image = disk.power_cut_image(seed);
        std::mem::forget(wal);
        let wal = Wal::open_with(Arc::new(image), opts(Durability::Sync)).expect("open after the cut");
        let recovered = common::replay_all(&wal, 1);
        for (lsn, key) in &acked {
            let found = recovered.iter().find(|r| r.lsn == *lsn);
            assert_eq!(found.map(|r| &r.key), Some(key), "seed {seed}: acknowledged LSN {lsn} lost or altered");
        }
    }
}
