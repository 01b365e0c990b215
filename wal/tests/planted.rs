//! A segment copied in from another WAL directory is refused, never replayed: every
//! segment's header carries its directory's identity. Without it, a restart segment
//! copied in would pass every chain check and its records would be replayed as this
//! log's.

mod common;

use std::fs;
use std::path::Path;

use memdb_wal::format::{RESTART_ALIGN, follows, segment_name};
use memdb_wal::identity::IDENTITY_FILE;
use memdb_wal::{Durability, Error, Options, Wal};

fn opts() -> Options {
    Options { durability: Durability::Sync, segment_size: 64 << 10, ..Options::default() }
}

fn write(dir: &Path, records: usize) {
    let wal = Wal::open(dir, opts()).expect("open");
    for i in 0..records {
        common::append_derived(&wal, 40 + i).expect("append");
    }
}

#[test]
fn a_restart_segment_copied_in_from_another_directory_is_refused() {
    let (a, b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    // A is written, reopened (its next segment starts at a restart LSN) and written again.
    write(a.path(), 5);
    write(a.path(), 5);
    // B is written once: a restart segment would be the next it could hold.
    write(b.path(), 3);
    let name = segment_name(RESTART_ALIGN);
    assert!(follows(3, RESTART_ALIGN), "the copy would pass the chain check");
    let planted = b.path().join(&name);
    fs::copy(a.path().join(&name), &planted).expect("plant A's restart segment in B");

    match Wal::open(b.path(), opts()) {
        Err(Error::ForeignSegment { segment, found, expected }) => {
            assert_eq!(segment, name);
            assert_ne!(found, expected);
        }
        Ok(_) => panic!("a foreign segment was accepted"),
        Err(other) => panic!("expected ForeignSegment, got {other}"),
    }
    // Moved out, B opens with its own records only.
    fs::remove_file(&planted).expect("remove");
    let wal = Wal::open(b.path(), opts()).expect("open");
    assert_eq!(common::replay_all(&wal, 1).len(), 3);
}

#[test]
fn a_lost_identity_file_is_taken_back_from_the_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), 3);
    let before = fs::read_to_string(dir.path().join(IDENTITY_FILE)).expect("identity");
    fs::remove_file(dir.path().join(IDENTITY_FILE)).expect("remove");
    write(dir.path(), 3);
    let after = fs::read_to_string(dir.path().join(IDENTITY_FILE)).expect("identity");
    assert_eq!(before, after, "the newest segment's identity is the directory's");
    let wal = Wal::open(dir.path(), opts()).expect("open");
    assert_eq!(common::replay_all(&wal, 1).len(), 6);
}
