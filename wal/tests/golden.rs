//! Golden fixtures of each format version, committed under `tests/fixtures/v{N}/`: they
//! must keep opening (or failing) exactly this way forever. `MEMDB_BLESS=1` rewrites
//! those of the current version — only ever together with a new format version.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memdb_wal::format::{
    FRAME_VERSION, HEADER_CRC, HEADER_FRAME_VERSION, HEADER_LEN, RESTART_ALIGN, frame_size, segment_name,
};
use memdb_wal::storage::{SimStorage, Storage};
use memdb_wal::{Durability, Error, Options, Problem, Wal};

const RECORDS: u64 = 10;
const SEGMENT: u64 = 4096;

/// Every frame version with fixtures: all must keep opening the same way.
const VERSIONS: [u16; 2] = [1, 2];

/// The identity of the directory the current version's fixtures were written in.
const DIR_ID: u32 = 0x6d65_6d64; // "memd"

fn fixtures(version: u16) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}"))
}

fn opts() -> Options {
    Options { durability: Durability::Sync, segment_size: SEGMENT, ..Options::default() }
}

/// The clean segment as today's writer produces it: deterministic in Sync mode, in a
/// directory of a known identity.
fn clean_segment() -> Vec<u8> {
    let disk = SimStorage::default();
    memdb_wal::identity::write(&disk, DIR_ID).expect("identity");
    let wal = Wal::open_with(Arc::new(disk.clone()), opts()).expect("open");
    for i in 0..RECORDS {
        common::append_derived(&wal, 40 + 10 * i as usize).expect("append");
    }
    drop(wal);
    disk.read(&segment_name(1)).expect("read")
}

/// Offset of frame `index` (0-based) in a segment, walked by length fields.
fn frame_offset(bytes: &[u8], index: usize) -> usize {
    let mut at = HEADER_LEN;
    for _ in 0..index {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        at += frame_size(len as usize);
    }
    at
}

/// Every fixture, derived from the clean segment: (name, bytes).
fn derived_fixtures(clean: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut torn = clean.to_vec();
    let last = frame_offset(clean, RECORDS as usize - 1);
    let end = frame_offset(clean, RECORDS as usize);
    torn[(last + end) / 2..end].fill(0);

    let mut bad_checksum = clean.to_vec();
    bad_checksum[frame_offset(clean, 3) + 30] ^= 0x20;

    let mut newer = clean.to_vec();
    newer[HEADER_FRAME_VERSION..HEADER_FRAME_VERSION + 2].copy_from_slice(&(FRAME_VERSION + 1).to_le_bytes());
    let crc = crc32fast::hash(&newer[..HEADER_CRC]);
    newer[HEADER_CRC..HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());

    vec![("clean", clean.to_vec()), ("torn_tail", torn), ("bad_checksum", bad_checksum), ("newer_version", newer)]
}

/// Opens a copy of a committed fixture of `version` on real files.
fn open_fixture(version: u16, name: &str) -> (tempfile::TempDir, Result<Wal, Error>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = segment_name(1);
    let copy = dir.path().join(&file);
    std::fs::copy(fixtures(version).join(name).join(&file), &copy).expect("copy fixture");
    // A checkout made under umask 002 has group-writable files, which the log refuses.
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let wal = Wal::open(dir.path(), opts());
    (dir, wal)
}

#[test]
fn committed_fixtures_match_the_writer() {
    let clean = clean_segment();
    for (name, bytes) in derived_fixtures(&clean) {
        let path = fixtures(FRAME_VERSION).join(name).join(segment_name(1));
        if std::env::var_os("MEMDB_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write fixture");
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == bytes,
            "fixture {name} differs from what the writer produces today: the on-disk format changed. \
             Bump FRAME_VERSION or RECORD_VERSION, keep reading the older versions, and add fixtures for the new \
             version"
        );
    }
}

#[test]
fn clean_opens_with_every_record() {
    for version in VERSIONS {
        let (_dir, wal) = open_fixture(version, "clean");
        let wal = wal.unwrap_or_else(|e| panic!("v{version}: the clean fixture opens: {e}"));
        let records = common::replay_all(&wal, 1);
        assert_eq!(records.len() as u64, RECORDS, "v{version}");
        records.iter().for_each(common::assert_derived);
        assert_eq!(wal.next_lsn(), RESTART_ALIGN, "v{version}: a reopened log resumes at a restart LSN");
        assert_eq!(wal.recovery_report().skipped, Some((RECORDS + 1, RESTART_ALIGN - 1)), "v{version}");
        assert_eq!(wal.recovery_report().torn_tail, None, "v{version}");
    }
}

#[test]
fn torn_tail_opens_without_its_last_record() {
    for version in VERSIONS {
        let (_dir, wal) = open_fixture(version, "torn_tail");
        let wal = wal.unwrap_or_else(|e| panic!("v{version}: a torn tail is normal after a crash: {e}"));
        let records = common::replay_all(&wal, 1);
        assert_eq!(records.len() as u64, RECORDS - 1, "v{version}");
        records.iter().for_each(common::assert_derived);
        let clean = std::fs::read(fixtures(version).join("clean").join(segment_name(1))).expect("read");
        let torn_at = frame_offset(&clean, RECORDS as usize - 1) as u64;
        assert_eq!(wal.recovery_report().torn_tail, Some((segment_name(1), torn_at)), "v{version}");
        assert_eq!(wal.next_lsn(), RESTART_ALIGN, "v{version}: the torn record's LSN is never handed out again");
    }
}

#[test]
fn bad_checksum_is_refused_with_segment_and_offset() {
    for version in VERSIONS {
        let (_dir, wal) = open_fixture(version, "bad_checksum");
        let Err(Error::Corrupt(c)) = wal else { panic!("v{version}: mid-log damage must be refused") };
        let clean = std::fs::read(fixtures(version).join("clean").join(segment_name(1))).expect("read");
        assert_eq!(c.segment, segment_name(1));
        assert_eq!(c.offset, frame_offset(&clean, 3) as u64, "v{version}");
        assert!(matches!(c.problem, Problem::Frame(memdb_wal::Damage::Checksum { .. })), "v{version}: {c}");
        assert!(c.to_string().contains("memdb wal repair"), "the message says what to do: {c}");
    }
}

#[test]
fn newer_version_is_refused_by_name() {
    let (_dir, wal) = open_fixture(FRAME_VERSION, "newer_version");
    let Err(Error::UnsupportedVersion { segment, frame, record }) = wal else { panic!("must refuse a newer version") };
    assert_eq!((segment.as_str(), frame, record), (segment_name(1).as_str(), FRAME_VERSION + 1, 1));
}

/// Version 1's "newer version" fixture holds frame version 2 with a zero identity: what
/// this build writes in a directory without one. It opens, every record in it.
#[test]
fn version_1s_newer_version_fixture_is_version_2_and_opens() {
    let (_dir, wal) = open_fixture(1, "newer_version");
    let wal = wal.expect("a version 2 header with no directory identity");
    assert_eq!(common::replay_all(&wal, 1).len() as u64, RECORDS);
}
