//! Damage of every kind at every place: no panic, no false accept, a torn tail is cut to
//! the last good frame, and damage with synced frames after it is refused with the right
//! segment and offset.

mod common;

use std::sync::Arc;

use memdb_wal::format::{FRAME_LEN, HEADER_LEN, HEADER_PAD, frame_size, segment_name};
use memdb_wal::parse::{End, scan};
use memdb_wal::storage::{SimStorage, Storage};
use memdb_wal::{Durability, Error, Options, Problem, Record, RecoveryMode, Wal};

const SEGMENT: u64 = 16 << 10;

fn opts() -> Options {
    Options { durability: Durability::Sync, segment_size: SEGMENT, ..Options::default() }
}

/// A disk holding one segment of `n` synced records of assorted sizes, and the records.
fn fixture(n: u64) -> (SimStorage, Vec<Record>) {
    let disk = SimStorage::default();
    let wal = Wal::open_with(Arc::new(disk.clone()), opts()).expect("open");
    for i in 0..n {
        common::append_derived(&wal, 20 + (i as usize * 37) % 300).expect("append");
    }
    let records = common::replay_all(&wal, 1);
    drop(wal);
    (disk, records)
}

/// Offsets of the first `n` frames, walked by their length fields.
fn frame_offsets(bytes: &[u8], n: usize) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(n);
    let mut at = HEADER_LEN;
    for _ in 0..n {
        offsets.push(at);
        let len = u32::from_le_bytes(bytes[at + FRAME_LEN..at + FRAME_LEN + 4].try_into().expect("4 bytes"));
        at += frame_size(len as usize);
    }
    offsets
}

fn disk_with(name: &str, bytes: &[u8]) -> SimStorage {
    let disk = SimStorage::default();
    let file = disk.create(name, bytes.len() as u64).expect("create");
    // SAFETY: the file was just created here; nothing else writes it.
    unsafe { file.write_at(0, bytes) }.expect("write");
    file.sync_all().expect("sync");
    disk.sync_dir().expect("sync dir");
    disk
}

fn open(disk: &SimStorage, recovery: RecoveryMode) -> Result<Wal, Error> {
    Wal::open_with(Arc::new(disk.clone()), Options { recovery, ..opts() })
}

/// Records a parse returned must be exactly the originals with those LSNs: no false accept.
fn assert_no_false_accept(got: &[Record], originals: &[Record]) {
    for r in got {
        let original = originals.iter().find(|o| o.lsn == r.lsn).unwrap_or_else(|| panic!("invented LSN {}", r.lsn));
        assert_eq!(r, original, "record {} altered", r.lsn);
    }
}

#[test]
fn every_truncation_length_opens_to_a_prefix() {
    let (disk, originals) = fixture(40);
    let name = segment_name(1);
    let bytes = disk.read(&name).expect("read");
    let used = scan(&bytes).expect("scan").end.offset() as usize;
    for len in 0..=used + 64 {
        let mut image = bytes[..len].to_vec();
        image.resize(bytes.len(), 0); // the rest of a preallocated file is zeros
        let got = scan(&image);
        if len < HEADER_PAD {
            // (The header's last field is zero padding: cutting only it changes nothing.)
            assert!(got.is_err(), "a cut header at {len} must be refused");
            continue;
        }
        let got = got.expect("header intact");
        let records: Vec<Record> = got.records.iter().map(|&r| r.into()).collect();
        assert_no_false_accept(&records, &originals);
        assert!(
            !matches!(got.end, End::Corrupt { .. }),
            "a cut at {len} is a torn tail, not corruption: {:?}",
            got.end
        );
        let wal = open(&disk_with(&name, &image), RecoveryMode::Strict).unwrap_or_else(|e| panic!("cut at {len}: {e}"));
        let recovered = common::replay_all(&wal, 1);
        assert_eq!(recovered, records, "recovery keeps exactly the complete frames (cut at {len})");
        let next = wal.next_lsn();
        assert!(next > originals.len() as u64, "cut at {len}: LSN {next} may have been handed out before");
        assert_eq!(wal.recovery_report().skipped, Some((records.len() as u64 + 1, next - 1)));
    }
}

#[test]
fn every_bit_flip_in_the_first_8k_is_caught() {
    let (disk, originals) = fixture(30);
    let name = segment_name(1);
    let bytes = disk.read(&name).expect("read");
    let clean = scan(&bytes).expect("scan");
    let used = clean.end.offset() as usize;
    assert!(used < 8192 - 64, "the fixture's data and some zeros after it fit the first 8 KiB");
    let last_frame = frame_offsets(&bytes, clean.records.len()).pop().expect("frames");
    let (mut refused, mut torn, mut harmless) = (0, 0, 0);
    for bit in 0..(8192 * 8).min(bytes.len() * 8) {
        let mut image = bytes.clone();
        image[bit / 8] ^= 1 << (bit % 8);
        let byte = bit / 8;
        let Ok(got) = scan(&image) else {
            assert!(byte < HEADER_LEN, "only a header flip may fail the header (bit {bit})");
            assert!(matches!(open(&disk_with(&name, &image), RecoveryMode::Strict), Err(Error::Corrupt(_))));
            refused += 1;
            continue;
        };
        let records: Vec<Record> = got.records.iter().map(|&r| r.into()).collect();
        assert_no_false_accept(&records, &originals);
        let result = open(&disk_with(&name, &image), RecoveryMode::Strict);
        if byte >= used {
            assert_eq!(records.len(), originals.len(), "a flip after the end loses nothing (bit {bit})");
            let wal = result.unwrap_or_else(|e| panic!("bit {bit}: {e}"));
            assert_eq!(common::replay_all(&wal, 1), originals);
            harmless += 1;
        } else if byte >= last_frame {
            // Damage in the newest frame, nothing synced after it: a torn tail, cut.
            let wal = result.unwrap_or_else(|e| panic!("bit {bit}: {e}"));
            assert_eq!(common::replay_all(&wal, 1), originals[..originals.len() - 1]);
            torn += 1;
        } else {
            match result {
                Err(Error::Corrupt(c)) => {
                    assert_eq!(c.segment, name);
                    assert!(
                        c.offset as usize <= byte && c.offset >= HEADER_LEN as u64,
                        "offset {} for a flip at {byte}",
                        c.offset
                    );
                    assert_eq!(c.offset, got.end.offset(), "the error names the damaged frame");
                    assert!(matches!(c.problem, Problem::Frame(_)), "{c}");
                }
                Ok(_) => panic!("bit {bit} (byte {byte}) in synced mid-log data was accepted: {:?}", got.end),
                Err(e) => panic!("bit {bit}: unexpected {e}"),
            }
            refused += 1;
        }
    }
    eprintln!("bit flips: {refused} refused, {torn} torn tail, {harmless} after the end");
    assert!(refused > 0 && torn > 0);
}

#[test]
fn repair_cuts_at_the_corruption_and_says_so() {
    let (disk, _) = fixture(40);
    let name = segment_name(1);
    let mut bytes = disk.read(&name).expect("read");
    bytes[HEADER_LEN + 30] ^= 0xff; // inside the first frame's body
    let damaged = disk_with(&name, &bytes);
    let Err(Error::Corrupt(c)) = open(&damaged, RecoveryMode::Strict) else { panic!("must refuse") };
    assert_eq!((c.segment.as_str(), c.offset), (name.as_str(), HEADER_LEN as u64));
    let wal = open(&damaged, RecoveryMode::TruncateAtCorruption).expect("repair opens");
    let (cut, deleted) = wal.recovery_report().repaired.clone().expect("reported");
    assert_eq!(cut, c);
    assert!(deleted.is_empty());
    assert!(common::replay_all(&wal, 1).is_empty(), "everything after the corruption is gone");
    assert!(wal.next_lsn() > 40, "the LSNs cut are never handed out again: {}", wal.next_lsn());
    drop(wal);
    assert!(open(&damaged, RecoveryMode::Strict).is_ok(), "after repair the log opens normally");
}

/// A disk holding three full segments of synced records, and their names in order.
fn three_segments() -> (SimStorage, Vec<String>) {
    let disk = SimStorage::default();
    let wal = Wal::open_with(Arc::new(disk.clone()), Options { segment_size: 4096, ..opts() }).expect("open");
    while wal.stats().segments < 3 {
        common::append_derived(&wal, 200).expect("append");
    }
    drop(wal);
    let mut names = disk.list().expect("list");
    names.retain(|n| memdb_wal::format::parse_segment_name(n).is_some());
    names.sort();
    (disk, names)
}

#[test]
fn damage_in_a_sealed_segment_is_refused_even_at_its_end() {
    let (disk, names) = three_segments();
    let first = &names[0];
    let bytes = disk.read(first).expect("read");
    let end = scan(&bytes).expect("scan").end.offset() as usize;
    // Flip a bit in the last frame of the sealed segment: at the newest it would be torn.
    let mut damaged = bytes.clone();
    damaged[end - 9] ^= 1;
    disk.corrupt(first, end - 9, &damaged[end - 9..end - 8]).expect("corrupt");
    let Err(Error::Corrupt(c)) = open(&disk, RecoveryMode::Strict) else { panic!("must refuse") };
    assert_eq!(&c.segment, first);
    assert!(matches!(c.problem, Problem::SealedSegment(_)), "{c}");
    let newest_before = names.last().and_then(|n| memdb_wal::format::parse_segment_name(n)).expect("a segment");
    let wal = open(&disk, RecoveryMode::TruncateAtCorruption).expect("repair");
    let (_, deleted) = wal.recovery_report().repaired.clone().expect("repaired");
    assert_eq!(deleted.len(), 2, "the segments after the cut are deleted: {deleted:?}");
    // The records of the deleted segments had LSNs too: none is handed out again.
    assert!(wal.next_lsn() > newest_before, "{} reuses the deleted segments' LSNs", wal.next_lsn());
}

#[test]
fn a_missing_segment_in_the_middle_is_refused() {
    let (disk, names) = three_segments();
    disk.remove(&names[1]).expect("remove");
    let Err(Error::Corrupt(c)) = open(&disk, RecoveryMode::Strict) else { panic!("must refuse") };
    assert_eq!(c.segment, names[2]);
    assert!(matches!(c.problem, Problem::LsnGap { .. }), "{c}");
}
