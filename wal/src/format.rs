//! The on-disk format as constants: every offset is derived from the one before it.
//!
//! `wal/FORMAT.md` is the same format written for people; the two must agree.
//! All integers are little-endian.

/// Bytes 0..8 of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"MEMDBWAL";
/// Version of the segment and frame layout described here (2: the header carries the
/// directory's identity).
pub const FRAME_VERSION: u16 = 2;
/// The oldest frame version this build still reads (1: the identity field was zero).
pub const FIRST_FRAME_VERSION: u16 = 1;
/// Version of the record body (the rkyv-encoded [`crate::Entry`]) inside a frame.
pub const RECORD_VERSION: u16 = 1;

/// Segment header: magic.
pub const HEADER_MAGIC: usize = 0;
/// Segment header: frame version, u16.
pub const HEADER_FRAME_VERSION: usize = HEADER_MAGIC + SEGMENT_MAGIC.len();
/// Segment header: record-schema version, u16.
pub const HEADER_RECORD_VERSION: usize = HEADER_FRAME_VERSION + 2;
/// Segment header: the identity of the WAL directory the segment was written in, u32
/// (see `IDENTITY` in FORMAT.md); zero in segments written before directories had one.
pub const HEADER_DIR_ID: usize = HEADER_RECORD_VERSION + 2;
/// Segment header: LSN of the first frame this segment holds (or will hold), u64.
pub const HEADER_FIRST_LSN: usize = HEADER_DIR_ID + 4;
/// Segment header: crc32 of bytes `0..HEADER_CRC`, u32.
pub const HEADER_CRC: usize = HEADER_FIRST_LSN + 8;
/// Segment header: padding, u32, zero.
pub const HEADER_PAD: usize = HEADER_CRC + 4;
/// Length of the segment header; the first frame starts here.
pub const HEADER_LEN: usize = HEADER_PAD + 4;

/// Frame: length of the body in bytes, u32. Zero marks the end of data.
pub const FRAME_LEN: usize = 0;
/// Frame: crc32 over the frame header without this field, then the body, u32.
pub const FRAME_CRC: usize = FRAME_LEN + 4;
/// Frame: the record's LSN, u64.
pub const FRAME_LSN: usize = FRAME_CRC + 4;
/// Frame: the segment offset through which the segment was known to be on stable
/// storage when this frame was written, u32. Tells a torn tail from corruption.
pub const FRAME_SYNCED_TO: usize = FRAME_LSN + 8;
/// Frame: reserved, u32, zero.
pub const FRAME_RESERVED: usize = FRAME_SYNCED_TO + 4;
/// Length of the frame header; the body starts here.
pub const FRAME_BODY: usize = FRAME_RESERVED + 4;
/// Every frame starts at a multiple of this segment offset; the gap after a body is zeros.
pub const FRAME_ALIGN: usize = 8;

/// The highest LSN a record may have; LSNs run from 1 to this (`u64::MAX` is reserved,
/// so `lsn + 1` never overflows).
pub const MAX_LSN: u64 = u64::MAX - 1;

/// The largest body a frame may carry (the format's limit; options may set a lower one).
pub const MAX_BODY_LEN: usize = 256 << 20;
/// The smallest segment the writer accepts.
pub const MIN_SEGMENT_SIZE: u64 = 4096;
/// The largest segment: frame offsets are stored as u32.
pub const MAX_SEGMENT_SIZE: u64 = u32::MAX as u64;
/// Sector size assumed atomic by the torn-write rules (see FORMAT.md).
pub const SECTOR: usize = 512;

/// Suffix of segment file names: `{first_lsn:020}.wal`.
pub const SEGMENT_SUFFIX: &str = ".wal";
/// Suffix of a segment being created; such files are removed on open.
pub const TEMP_SUFFIX: &str = ".tmp";

/// A reopened log resumes in a new segment whose first LSN is a multiple of this: the
/// only segments that may start above their predecessor's end (see [`restart_lsn`]).
/// Any other gap between segments is corruption.
pub const RESTART_ALIGN: u64 = 1 << 20;

/// Whether LSN `next` may follow LSN `prev` in a log: the next one, or a restart LSN
/// above it (a reopen skipped ahead).
#[must_use]
pub const fn follows(prev: u64, next: u64) -> bool {
    next == prev.wrapping_add(1) || (next > prev && next.is_multiple_of(RESTART_ALIGN))
}

/// The most frames a segment file of `file_len` bytes can hold (every frame takes at
/// least [`frame_size`]`(1)` bytes).
#[must_use]
pub const fn segment_capacity(file_len: u64) -> u64 {
    file_len.saturating_sub(HEADER_LEN as u64) / frame_size(1) as u64
}

/// Where a reopened log resumes: above every LSN its newest segment (first LSN
/// `first_lsn`, `file_len` bytes) can have handed out — also the ones a power cut took
/// before they were synced, which must never be handed out again — and at least
/// `at_least`, rounded up to a multiple of [`RESTART_ALIGN`]. `None` past [`MAX_LSN`].
#[must_use]
pub fn restart_lsn(first_lsn: u64, file_len: u64, at_least: u64) -> Option<u64> {
    let ceiling = first_lsn.checked_add(segment_capacity(file_len))?.max(at_least);
    ceiling.checked_next_multiple_of(RESTART_ALIGN).filter(|&lsn| lsn <= MAX_LSN)
}

/// Bytes a frame with a body of `body_len` bytes takes in a segment, padding included.
#[must_use]
pub const fn frame_size(body_len: usize) -> usize {
    (FRAME_BODY + body_len).next_multiple_of(FRAME_ALIGN)
}

/// File name of the segment whose first LSN is `first_lsn`.
#[must_use]
pub fn segment_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// The first LSN encoded in a segment file name, or `None` if it is not one.
#[must_use]
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment header for a segment starting at `first_lsn`, written in the WAL
/// directory of identity `dir_id`.
#[must_use]
pub fn encode_header(first_lsn: u64, dir_id: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[HEADER_MAGIC..HEADER_FRAME_VERSION].copy_from_slice(&SEGMENT_MAGIC);
    h[HEADER_FRAME_VERSION..HEADER_RECORD_VERSION].copy_from_slice(&FRAME_VERSION.to_le_bytes());
    h[HEADER_RECORD_VERSION..HEADER_DIR_ID].copy_from_slice(&RECORD_VERSION.to_le_bytes());
    h[HEADER_DIR_ID..HEADER_FIRST_LSN].copy_from_slice(&dir_id.to_le_bytes());
    h[HEADER_FIRST_LSN..HEADER_CRC].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32fast::hash(&h[..HEADER_CRC]);
    h[HEADER_CRC..HEADER_PAD].copy_from_slice(&crc.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_what_format_md_says() {
        assert_eq!(HEADER_LEN, 32);
        assert_eq!(FRAME_BODY, 24);
        assert_eq!(frame_size(0), 24);
        assert_eq!(frame_size(1), 32);
        assert_eq!(frame_size(8), 32);
    }

    #[test]
    fn a_restart_resumes_above_all_a_segment_can_hold_at_an_aligned_lsn() {
        assert_eq!(segment_capacity(4096), (4096 - 32) / 32);
        assert_eq!(restart_lsn(1, 4096, 1), Some(RESTART_ALIGN));
        assert_eq!(restart_lsn(RESTART_ALIGN, 4096, 1), Some(2 * RESTART_ALIGN));
        let big = restart_lsn(5, 64 << 20, 1).expect("in range");
        assert!(big >= 5 + (64 << 20) / 32 && big.is_multiple_of(RESTART_ALIGN));
        assert!(follows(4, 5) && follows(4, RESTART_ALIGN) && !follows(4, 6) && !follows(RESTART_ALIGN, RESTART_ALIGN));
        assert_eq!(restart_lsn(1, 4096, 3 * RESTART_ALIGN + 1), Some(4 * RESTART_ALIGN), "at least the floor");
        assert_eq!(restart_lsn(MAX_LSN - 10, 4096, 1), None);
    }

    #[test]
    fn segment_names_round_trip_and_reject_strangers() {
        assert_eq!(segment_name(42), "00000000000000000042.wal");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        for bad in ["LOCK", "42.wal", "0000000000000000004x.wal", "00000000000000000042.tmp"] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }
}
