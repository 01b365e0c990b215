//! Fail-stop: after a failed sync or write the log acknowledges nothing more, never
//! retries the sync, and a restart finds every record acknowledged before the fault.

mod common;

use std::sync::Arc;

use memdb_wal::storage::{SimFaults, SimStorage};
use memdb_wal::{Durability, Error, Lsn, Options, Wal};

fn opts() -> Options {
    Options { durability: Durability::Sync, segment_size: 4096, ..Options::default() }
}

/// Appends until the injected fault hits; returns the acknowledged LSNs.
fn append_until_failure(disk: &SimStorage, call: u64) -> Option<Vec<Lsn>> {
    let wal = match Wal::open_with(Arc::new(disk.clone()), opts()) {
        Ok(wal) => wal,
        Err(e) => {
            assert!(matches!(e, Error::Io { .. }), "fault at call {call} during open: {e}");
            return None;
        }
    };
    let mut acked = Vec::new();
    let failure = loop {
        match common::append_derived(&wal, 100 + acked.len() * 13 % 500) {
            Ok(lsn) => acked.push(lsn),
            Err(e) => break e,
        }
        assert!(acked.len() < 500, "fault at call {call} never hit");
    };
    assert!(matches!(failure, Error::Io { .. }), "the failing call reports the I/O error: {failure}");
    let syncs = disk.sync_count();
    for _ in 0..5 {
        let again = common::append_derived(&wal, 100).expect_err("no append is acknowledged after a failure");
        assert!(matches!(again, Error::Poisoned { .. }), "{again}");
    }
    assert!(matches!(wal.sync(), Err(Error::Poisoned { .. })));
    drop(wal);
    assert_eq!(disk.sync_count(), syncs, "a failed sync is never retried (fault at call {call})");
    Some(acked)
}

/// Power is cut after the failure; everything acknowledged before it must be there.
fn assert_recovered(disk: &SimStorage, acked: &[Lsn], call: u64) {
    let image = disk.power_cut_image(call);
    let wal = Wal::open_with(Arc::new(image), opts()).expect("reopen after the fault");
    let records = common::replay_all(&wal, 1);
    records.iter().for_each(common::assert_derived);
    for lsn in acked {
        assert!(records.iter().any(|r| r.lsn == *lsn), "fault at call {call}: acknowledged LSN {lsn} lost");
    }
}

/// Injects the fault at calls 1..=30 in turn; each time checks fail-stop and recovery.
fn drill(fault_at: impl Fn(u64) -> SimFaults) {
    let mut hit = 0;
    for call in 1..=30 {
        let disk = SimStorage::new(fault_at(call));
        if let Some(acked) = append_until_failure(&disk, call) {
            assert_recovered(&disk, &acked, call);
            hit += 1;
        }
    }
    assert!(hit >= 25, "most faults land after open: {hit}");
}

#[test]
fn a_failed_sync_stops_the_log_and_loses_nothing_acknowledged() {
    drill(|call| SimFaults { fail_sync: Some(call), ..SimFaults::default() });
}

#[test]
fn a_failed_write_stops_the_log_and_loses_nothing_acknowledged() {
    drill(|call| SimFaults { fail_write: Some(call), ..SimFaults::default() });
}

#[test]
fn a_full_disk_refuses_the_append_and_the_log_goes_on_once_there_is_room() {
    // Room for two segments (and the directory's IDENTITY file): the third cannot be
    // created.
    let disk = SimStorage::new(SimFaults { capacity: Some(2 * 4096 + 64), ..SimFaults::default() });
    let wal = Wal::open_with(Arc::new(disk.clone()), opts()).expect("open");
    let mut acked = Vec::new();
    let err = loop {
        match common::append_derived(&wal, 300) {
            Ok(lsn) => acked.push(lsn),
            Err(e) => break e,
        }
    };
    let Error::Io { source, .. } = &err else { panic!("a full disk is an I/O error: {err}") };
    assert_eq!(source.raw_os_error(), Some(libc_enospc()), "{err}");
    assert!(!matches!(common::append_derived(&wal, 300), Err(Error::Poisoned { .. })), "ENOSPC does not poison");
    // Free space by truncating what the caller has stored elsewhere: appends go on.
    wal.truncate_through(*acked.last().expect("some acked")).expect("truncate");
    let next = common::append_derived(&wal, 300).expect("room again");
    assert_eq!(next, acked.last().expect("acked") + 1, "no LSN was used by the refused appends");
    drop(wal);
    let wal = Wal::open_with(Arc::new(disk.power_cut_image(7)), opts()).expect("reopen");
    assert_eq!(common::replay_all(&wal, next).len(), 1);
}

fn libc_enospc() -> i32 {
    28
}
