//! Property: any sequence of appends, syncs, truncations and reopens reads back exactly
//! the records appended after the last truncation point, in order, on the simulated disk
//! and on real files, across segment rotation.

mod common;

use std::sync::Arc;

use memdb_wal::storage::{SimStorage, Storage};
use memdb_wal::{Durability, Entry, Lsn, Op, Options, Record, Wal};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Append {
        op: Op,
        table: String,
        key: String,
        value: Vec<u8>,
    },
    Sync,
    Reopen,
    /// Truncate through the LSN this fraction (in thousandths) of the way into the log.
    Truncate(u16),
}

fn step() -> impl Strategy<Value = Step> {
    let op = prop_oneof![Just(Op::Put), Just(Op::Delete), Just(Op::CreateTable)];
    let append = (op, "[a-z_]{1,12}", "\\PC{0,24}", prop::collection::vec(any::<u8>(), 0..1500))
        .prop_map(|(op, table, key, value)| Step::Append { op, table, key, value });
    prop_oneof![
        20 => append,
        2 => Just(Step::Sync),
        2 => Just(Step::Reopen),
        1 => (0u16..=1000).prop_map(Step::Truncate),
    ]
}

fn opts(durability: Durability) -> Options {
    Options { durability, segment_size: 8192, ..Options::default() }
}

/// Runs `steps` against the log on `storage`, checking it against a plain vector.
fn check(open: &dyn Fn() -> Wal, steps: &[Step]) {
    let mut wal = open();
    let mut model: Vec<Record> = Vec::new();
    let mut floor: Lsn = 0; // records <= floor may have been truncated away
    let mut last_next = wal.next_lsn();
    for step in steps {
        match step {
            Step::Append { op, table, key, value } => {
                let lsn = wal.append(&Entry { op: *op, table, key, value }).expect("append");
                assert!(lsn >= last_next, "LSN went backwards: {lsn} after {last_next}");
                last_next = lsn + 1;
                model.push(Record { lsn, op: *op, table: table.clone(), key: key.clone(), value: value.clone() });
            }
            Step::Sync => {
                wal.sync().expect("sync");
            }
            Step::Reopen => {
                drop(wal);
                wal = open();
                assert!(wal.next_lsn() >= last_next, "LSN went backwards across a reopen");
            }
            Step::Truncate(frac) => {
                let Some(last) = model.last() else { continue };
                let through = last.lsn * u64::from(*frac) / 1000;
                wal.truncate_through(through).expect("truncate");
                floor = floor.max(through);
            }
        }
        let expected: Vec<&Record> = model.iter().filter(|r| r.lsn > floor).collect();
        let got = common::replay_all(&wal, floor + 1);
        assert_eq!(got.len(), expected.len(), "record count after {step:?}");
        for (g, e) in got.iter().zip(expected) {
            assert_eq!(g, e);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sim_disk_reads_back_what_was_appended(steps in prop::collection::vec(step(), 1..80), sync in any::<bool>()) {
        let durability = if sync { Durability::Sync } else { Durability::Periodic(std::time::Duration::from_millis(5)) };
        let disk = SimStorage::default();
        let open = || {
            let storage: Arc<dyn Storage> = Arc::new(disk.clone());
            Wal::open_with(storage, opts(durability)).expect("open")
        };
        check(&open, &steps);
    }

    #[test]
    fn real_files_read_back_what_was_appended(steps in prop::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || Wal::open(dir.path(), opts(Durability::Periodic(std::time::Duration::from_millis(5)))).expect("open");
        check(&open, &steps);
    }
}

#[test]
fn lsns_never_go_backwards_after_everything_is_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), opts(Durability::Sync)).expect("open");
    let mut last = 0;
    for _ in 0..100 {
        last = common::append_derived(&wal, 200).expect("append");
    }
    wal.truncate_through(last).expect("truncate");
    assert_eq!(wal.stats().segments, 1, "only the fresh active segment is left");
    drop(wal);
    let wal = Wal::open(dir.path(), opts(Durability::Sync)).expect("reopen");
    let next = wal.next_lsn();
    assert!(next > last, "LSN {next} after {last}");
    assert!(common::replay_all(&wal, 0).is_empty());
    assert_eq!(common::append_derived(&wal, 10).expect("append"), next);
}

#[test]
fn a_reopened_log_never_hands_out_an_lsn_a_power_cut_took() {
    // Appended, never synced, then the power goes: the LSNs were handed out all the same.
    let disk = memdb_wal::storage::SimStorage::default();
    let wal = Wal::open_with(
        std::sync::Arc::new(disk.clone()),
        opts(Durability::Periodic(std::time::Duration::from_secs(3600))),
    )
    .expect("open");
    let durable = common::append_derived(&wal, 50).expect("append");
    wal.sync().expect("sync");
    let mut handed_out = durable;
    for _ in 0..20 {
        handed_out = wal.append_nowait(&Entry { op: Op::Put, table: "t", key: "k", value: b"{}" }).expect("append");
    }
    for seed in 0..20 {
        let image = disk.power_cut_image(seed);
        let reopened = Wal::open_with(std::sync::Arc::new(image), opts(Durability::Sync)).expect("reopen");
        let next = reopened.next_lsn();
        assert!(next > handed_out, "seed {seed}: LSN {next} was handed out before the cut (up to {handed_out})");
        let kept = common::replay_all(&reopened, 0).last().map_or(0, |r| r.lsn);
        assert!(kept >= durable, "seed {seed}: a synced record was lost");
        assert_eq!(reopened.recovery_report().skipped, Some((kept + 1, next - 1)));
    }
    std::mem::forget(wal);
}

#[test]
fn min_next_lsn_moves_an_existing_log_forward() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), opts(Durability::Sync)).expect("open");
    let last = common::append_derived(&wal, 10).expect("append");
    drop(wal);
    let floor = 5 * memdb_wal::format::RESTART_ALIGN + 7;
    let wal = Wal::open(dir.path(), Options { min_next_lsn: floor, ..opts(Durability::Sync) }).expect("reopen");
    let lsn = common::append_derived(&wal, 10).expect("append");
    assert!(lsn >= floor, "{lsn} below the floor {floor}");
    drop(wal);
    let wal = Wal::open(dir.path(), opts(Durability::Sync)).expect("the jump is a valid chain");
    let lsns: Vec<Lsn> = common::replay_all(&wal, 0).iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, vec![last, lsn]);
}

#[test]
fn advance_to_moves_an_open_log_forward_and_the_jump_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), opts(Durability::Sync)).expect("open");
    let before = common::append_derived(&wal, 10).expect("append");
    let floor = 3 * memdb_wal::format::RESTART_ALIGN + 7;
    wal.advance_to(floor).expect("advance");
    wal.advance_to(floor - 5).expect("an advance to below the log changes nothing");
    let after = common::append_derived(&wal, 10).expect("append");
    assert!(after >= floor, "{after} below the floor {floor}");
    wal.advance_to(2).expect("advance below");
    assert_eq!(common::append_derived(&wal, 10).expect("append"), after + 1, "no jump when already past");
    drop(wal);
    let wal = Wal::open(dir.path(), opts(Durability::Sync)).expect("the jump is a valid chain");
    let lsns: Vec<Lsn> = common::replay_all(&wal, 0).iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, vec![before, after, after + 1]);
    assert!(common::append_derived(&wal, 10).expect("append") > after + 1);
}

#[test]
fn the_meta_file_survives_truncation_and_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), opts(Durability::Sync)).expect("open");
    assert_eq!(wal.read_meta().expect("read"), None);
    wal.write_meta(b"catalogue v1").expect("write");
    let last = common::append_derived(&wal, 10).expect("append");
    wal.truncate_through(last).expect("truncate");
    wal.write_meta(b"catalogue v2").expect("write");
    drop(wal);
    let wal = Wal::open(dir.path(), opts(Durability::Sync)).expect("reopen: the meta file is no stranger");
    assert_eq!(wal.read_meta().expect("read").as_deref(), Some(&b"catalogue v2"[..]));
    wal.close().expect("close");
    assert!(matches!(wal.write_meta(b"late"), Err(memdb_wal::Error::Closed)), "nothing written after close");
}

#[test]
fn min_next_lsn_sets_the_first_lsn_of_an_empty_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), Options { min_next_lsn: 1000, ..opts(Durability::Sync) }).expect("open");
    assert_eq!(common::append_derived(&wal, 10).expect("append"), 1000);
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _wal = Wal::open(dir.path(), opts(Durability::Sync)).expect("open");
    let err = Wal::open(dir.path(), opts(Durability::Sync)).err().expect("second open must fail");
    assert!(err.to_string().contains("in use by another process"), "{err}");
}

#[test]
fn oversize_records_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), Options { max_record_size: 1000, ..opts(Durability::Sync) }).expect("open");
    let big = vec![b'x'; 2000];
    let err = wal.append(&Entry { op: Op::Put, table: "t", key: "k", value: &big }).expect_err("too large");
    assert!(matches!(err, memdb_wal::Error::RecordTooLarge { max: 1000, .. }), "{err}");
    assert_eq!(wal.next_lsn(), 1, "no LSN was used");
    assert_eq!(common::append_derived(&wal, 100).expect("the log goes on"), 1);
}

#[test]
fn a_full_disk_still_reopens_and_refuses_appends_until_there_is_room() {
    let disk = memdb_wal::storage::SimStorage::default();
    let wal = Wal::open_with(std::sync::Arc::new(disk.clone()), opts(Durability::Sync)).expect("open");
    let last = common::append_derived(&wal, 100).expect("append");
    drop(wal);
    // No room for another segment: opening allocates nothing, so it still works.
    disk.set_faults(memdb_wal::storage::SimFaults { capacity: Some(8192), ..Default::default() });
    let wal = Wal::open_with(std::sync::Arc::new(disk.clone()), opts(Durability::Sync)).expect("reopen on a full disk");
    assert_eq!(common::replay_all(&wal, 0).last().map(|r| r.lsn), Some(last), "every record readable");
    let err = common::append_derived(&wal, 10).expect_err("no room for the restart segment");
    assert!(err.is_out_of_space(), "{err}");
    disk.set_faults(memdb_wal::storage::SimFaults::default());
    let lsn = common::append_derived(&wal, 10).expect("the log goes on once there is room");
    assert!(lsn > last && lsn.is_multiple_of(memdb_wal::format::RESTART_ALIGN), "{lsn} is a restart LSN");
}
