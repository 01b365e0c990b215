//! Checks shared by the fuzz targets and the corpus-replay test (feature `internals`).
//!
//! Each check takes arbitrary bytes, must never panic on its own account, and panics
//! (an assertion) only when the log breaks one of its invariants: that is how a fuzzer
//! sees a bug. Not a stable API.

#![expect(
    clippy::panic,
    clippy::expect_used,
    reason = "these checks panic exactly when an invariant breaks: that is what a fuzzer detects"
)]

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::format::{
    FRAME_ALIGN, FRAME_CRC, FRAME_LEN, FRAME_LSN, HEADER_CRC, HEADER_LEN, MAX_BODY_LEN, MIN_SEGMENT_SIZE, TEMP_SUFFIX,
    encode_header, frame_size, segment_name,
};
use crate::frame::{encode_frame, get_u32};
use crate::parse::{End, parse_header, scan};
use crate::record::{Entry, Lsn, Op, Record, RecordRef};
use crate::storage::SimStorage;
use crate::{Durability, Error, Options, RecoveryMode, Wal};

/// Parses `data` as one segment image and checks what the parser reports.
///
/// Never panics on any input unless the parser breaks an invariant: records carry
/// consecutive LSNs from the header's first LSN, valid data ends on a frame boundary
/// inside the input and after the header, the records lie exactly before that end, the
/// input cut at the end scans to the same records with a clean end, and re-encoding the
/// records into a fresh segment image scans back to the same records.
pub fn check_parse(data: &[u8]) {
    let Ok(scanned) = scan(data) else { return };
    let first = scanned.header.first_lsn;
    for (i, record) in (0u64..).zip(&scanned.records) {
        assert_eq!(record.lsn, first.wrapping_add(i), "record {i}: LSNs must be consecutive from {first}");
    }

    let end = usize::try_from(scanned.end.offset()).expect("an end offset inside the input fits usize");
    assert!(end >= HEADER_LEN, "valid data ends at {end}, inside the header");
    assert!(end <= data.len(), "valid data ends at {end}, past the input ({} bytes)", data.len());
    assert_eq!(end % FRAME_ALIGN, 0, "valid data ends at {end}, not on a frame boundary");

    // The frames of the records, walked by their length fields, end exactly there.
    let mut offset = HEADER_LEN;
    for record in &scanned.records {
        let len = get_u32(data, offset + FRAME_LEN) as usize;
        offset += frame_size(len);
        assert!(offset <= end, "the frame of LSN {} runs past the end of valid data ({end})", record.lsn);
    }
    assert_eq!(offset, end, "the records' frames end at {offset}, the parser says {end}");
    if let End::Clean { trailing_garbage, .. } = scanned.end {
        let nonzero = data.get(end..).is_some_and(|rest| rest.iter().any(|&b| b != 0));
        assert_eq!(trailing_garbage, nonzero, "trailing_garbage disagrees with the bytes after {end}");
    }

    // The valid prefix alone: the same records, and a clean end.
    let prefix = data.get(..end).expect("end is inside the input");
    let again = scan(prefix).expect("the valid prefix keeps its header");
    assert_eq!(again.records, scanned.records, "the valid prefix scans to other records");
    assert_eq!(
        again.end,
        End::Clean { offset: end as u64, trailing_garbage: false },
        "the valid prefix does not end cleanly"
    );

    // Round trip: encode the records afresh and parse them back.
    let image = encode_segment_in(scanned.header.dir_id, first, &scanned.records);
    let back = scan(&image).expect("a freshly encoded segment has a valid header");
    assert_eq!(back.header, scanned.header, "the re-encoded header differs");
    assert_eq!(back.records, scanned.records, "re-encoded records scan back differently");
    assert_eq!(
        back.end,
        End::Clean { offset: image.len() as u64, trailing_garbage: false },
        "a freshly encoded segment does not end cleanly at its end"
    );
}

/// A segment image holding `records` (which must carry consecutive LSNs from `first_lsn`)
/// and nothing after them, encoded as the writer encodes frames.
#[must_use]
pub fn encode_segment(first_lsn: Lsn, records: &[RecordRef<'_>]) -> Vec<u8> {
    encode_segment_in(0, first_lsn, records)
}

/// [`encode_segment`] with the header of a segment written in the WAL directory of
/// identity `dir_id`.
#[must_use]
pub fn encode_segment_in(dir_id: u32, first_lsn: Lsn, records: &[RecordRef<'_>]) -> Vec<u8> {
    let mut image = encode_header(first_lsn, dir_id).to_vec();
    let mut frame = Vec::new();
    for record in records {
        // Everything before the header's end is "synced": a fresh segment's writer says so.
        encode_frame(&mut frame, record.lsn, HEADER_LEN as u32, &record.entry);
        image.extend_from_slice(&frame);
    }
    image
}

/// Flags in the first byte of a directory image (see [`check_recover`]).
mod flag {
    /// Bits 0–1: the number of files, minus one.
    pub const FILES: u8 = 0b0000_0011;
    /// Recompute each file's header checksum, so mutated headers stay valid.
    pub const FIX_HEADER_CRC: u8 = 0b0000_0100;
    /// Recompute the checksum of each frame that fits, so mutated frames stay checksummed.
    pub const FIX_FRAME_CRC: u8 = 0b0000_1000;
    /// Name every file by its position instead of its header (name/header mismatches).
    pub const NAME_BY_INDEX: u8 = 0b0001_0000;
    /// Name files without a valid header as leftover temporary files.
    pub const TEMP_NAMES: u8 = 0b0010_0000;
}

/// Encodes segment files as a directory image for [`check_recover`], with no flags set.
#[must_use]
pub fn dir_image(files: &[&[u8]]) -> Vec<u8> {
    dir_image_with_flags(files, 0)
}

/// Encodes segment files as a directory image for [`check_recover`] with the given flag
/// bits (the high six bits of the first byte). At most four files; each is cut to
/// `u16::MAX` bytes.
#[must_use]
pub fn dir_image_with_flags(files: &[&[u8]], flags: u8) -> Vec<u8> {
    assert!((1..=4).contains(&files.len()), "a directory image holds 1 to 4 files");
    let count = u8::try_from(files.len() - 1).expect("at most four files");
    let mut image = vec![count | (flags & !flag::FILES)];
    for file in files {
        let file = file.get(..usize::from(u16::MAX)).unwrap_or(file);
        let len = u16::try_from(file.len()).expect("cut to u16::MAX");
        image.extend_from_slice(&len.to_le_bytes());
        image.extend_from_slice(file);
    }
    image
}

/// Decodes a directory image: the files it names, with their bytes.
///
/// Byte 0 holds the number of files minus one (bits 0–1) and flags; then each file is
/// a u16 little-endian length and that many bytes (fewer if the input ends first).
/// A file with a valid header is named after its first LSN, any other after its index.
fn decode_dir_image(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let Some((&head, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let count = usize::from(head & flag::FILES) + 1;
    let mut files: Vec<(String, Vec<u8>)> = Vec::with_capacity(count);
    let mut taken = BTreeSet::new();
    for index in 0..count {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let mut bytes = bytes.to_vec();
        if head & flag::FIX_HEADER_CRC != 0 {
            fix_header_crc(&mut bytes);
        }
        if head & flag::FIX_FRAME_CRC != 0 {
            fix_frame_crcs(&mut bytes);
        }
        let by_index = segment_name(index as u64 + 1);
        let name = match parse_header(&bytes) {
            Ok(header) if head & flag::NAME_BY_INDEX == 0 => segment_name(header.first_lsn),
            Err(_) if head & flag::TEMP_NAMES != 0 => format!("{by_index}{TEMP_SUFFIX}"),
            _ => by_index,
        };
        let name = if taken.contains(&name) { format!("{name}.dup{index}") } else { name };
        taken.insert(name.clone());
        files.push((name, bytes));
    }
    files
}

fn fix_header_crc(bytes: &mut [u8]) {
    let Some(header) = bytes.get_mut(..HEADER_LEN) else {
        return;
    };
    let crc = crc32fast::hash(header.get(..HEADER_CRC).unwrap_or_default());
    if let Some(field) = header.get_mut(HEADER_CRC..HEADER_CRC + 4) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
}

fn fix_frame_crcs(bytes: &mut [u8]) {
    let mut offset = HEADER_LEN;
    loop {
        let len = get_u32(bytes, offset + FRAME_LEN) as usize;
        if len == 0 || len > MAX_BODY_LEN {
            return;
        }
        let Some(frame) = bytes.get_mut(offset..offset + frame_size(len)) else {
            return;
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(frame.get(..FRAME_CRC).unwrap_or_default());
        hasher.update(frame.get(FRAME_LSN..).unwrap_or_default());
        let crc = hasher.finalize();
        if let Some(field) = frame.get_mut(FRAME_CRC..FRAME_CRC + 4) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
        offset += frame.len();
    }
}

/// The record [`check_recover`] appends after a successful open.
const PROBE: Entry<'static> = Entry { op: Op::Put, table: "fuzz", key: "probe", value: br#"{"probe":true}"# };

/// Interprets `data` as a small directory image (see [`dir_image`]), loads it into a
/// simulated disk and opens the log on it in both recovery modes.
///
/// Never panics on any input unless the log breaks an invariant: opening either fails
/// with an error or yields a log whose replay succeeds with consecutive LSNs ending just
/// before its next LSN; a record appended then is found, with every earlier one, after
/// reopening; a log that opens strictly opens the same way in repair mode.
pub fn check_recover(data: &[u8]) {
    let files = decode_dir_image(data);
    let strict = open_and_check(&files, RecoveryMode::Strict);
    let repair = open_and_check(&files, RecoveryMode::TruncateAtCorruption);
    if let Some(strict) = strict {
        assert_eq!(repair, Some(strict), "a log that opens strictly must open the same way in repair mode");
    }
}

/// The records a log held after opening, and its next LSN then.
type Opened = (Vec<Record>, Lsn);

fn options(recovery: RecoveryMode) -> Options {
    Options { durability: Durability::Sync, segment_size: MIN_SEGMENT_SIZE, recovery, ..Options::default() }
}

fn open_and_check(files: &[(String, Vec<u8>)], mode: RecoveryMode) -> Option<Opened> {
    let storage = SimStorage::default();
    for (name, bytes) in files {
        storage.insert_file(name, bytes).expect("decoded names are distinct");
    }
    let wal = match Wal::open_with(Arc::new(storage.clone()), options(mode)) {
        Ok(wal) => wal,
        Err(e) => {
            refusal_is_explained(&e);
            return None;
        }
    };
    let records = replay_checked(&wal, "after opening");
    let next = wal.next_lsn();
    let report = wal.recovery_report();
    assert_eq!(report.next_lsn, next, "the recovery report's next LSN is not the log's");
    if let Some(first) = records.first() {
        assert_eq!(first.lsn, report.first_lsn, "replay does not start at the report's first LSN");
    }

    // Append one record; a reopened log must hold it after everything that was there.
    let lsn = match wal.append(&PROBE) {
        Ok(lsn) => lsn,
        // A log whose last record has the highest LSN is full, and says so.
        Err(Error::LsnExhausted) if next > crate::format::MAX_LSN => return Some((records, next)),
        Err(e) => {
            panic!("appending to a freshly recovered log failed ({mode:?}, next LSN {next}): {e}")
        }
    };
    assert_eq!(lsn, next, "the append did not get the next LSN");
    wal.close().expect("closing a healthy simulated log");
    let wal = match Wal::open_with(Arc::new(storage), options(RecoveryMode::Strict)) {
        Ok(wal) => wal,
        Err(e) => panic!("reopening after one append failed ({mode:?}): {e}"),
    };
    let reopened = replay_checked(&wal, "after reopening");
    let mut expected = records.clone();
    expected.push(Record {
        lsn,
        op: PROBE.op,
        table: PROBE.table.into(),
        key: PROBE.key.into(),
        value: PROBE.value.into(),
    });
    assert_eq!(reopened, expected, "reopening lost or changed records ({mode:?})");
    assert!(wal.next_lsn() > lsn, "the reopened log hands out the appended record's LSN again");
    Some((records, next))
}

/// Every record of an open log, checked to run consecutively up to its next LSN.
fn replay_checked(wal: &Wal, when: &str) -> Vec<Record> {
    let records = match wal.replay(0).collect::<Result<Vec<_>, _>>() {
        Ok(records) => records,
        Err(e) => panic!("replaying an open log failed {when}: {e}"),
    };
    // Consecutive, but for the jump a reopen makes to a restart LSN.
    use crate::format::follows;
    for pair in records.windows(2) {
        if let [a, b] = pair {
            assert!(follows(a.lsn, b.lsn), "replay skips from LSN {} to {} {when}", a.lsn, b.lsn);
        }
    }
    if let Some(last) = records.last() {
        let next = wal.next_lsn();
        assert!(follows(last.lsn, next), "the next LSN {next} does not follow the last record {} {when}", last.lsn);
    }
    records
}

/// A refusal to open must be one that names its evidence (and format without panicking).
fn refusal_is_explained(e: &Error) {
    let text = e.to_string();
    assert!(!text.is_empty());
    assert!(
        matches!(
            e,
            Error::Corrupt(_)
                | Error::UnsupportedVersion { .. }
                | Error::ForeignSegment { .. }
                | Error::Io { .. }
                | Error::LsnExhausted
        ),
        "unexpected refusal to open: {e:?}"
    );
}
