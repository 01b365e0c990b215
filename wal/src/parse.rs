//! The parser: any bytes in, the valid records out, and where and why valid data ends.
//!
//! Policy (what to do with a torn tail or corruption) is the caller's; this module only
//! reports. It never panics, reads only inside its input, allocates at most one small
//! entry per frame it returns, and never returns a record whose checksum failed.

use crate::format::{
    FIRST_FRAME_VERSION, FRAME_VERSION, HEADER_CRC, HEADER_DIR_ID, HEADER_FIRST_LSN, HEADER_FRAME_VERSION, HEADER_LEN,
    HEADER_MAGIC, HEADER_PAD, HEADER_RECORD_VERSION, MAX_LSN, RECORD_VERSION, SEGMENT_MAGIC,
};
use crate::frame::{Damage, FrameAt, frame_at, get_u16, get_u32, get_u64, later_frame_vouches_for};
use crate::record::{Lsn, RecordRef};

/// A segment header that passed its checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// LSN of the first frame in the segment.
    pub first_lsn: Lsn,
    /// The identity of the WAL directory it was written in (0: written before
    /// directories had one).
    pub dir_id: u32,
}

/// Why a segment header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Shorter than a header, not the magic, or a failed header checksum.
    Invalid,
    /// A valid header from a newer (or unknown) version of the format.
    UnsupportedVersion {
        /// The frame version found.
        frame: u16,
        /// The record-schema version found.
        record: u16,
    },
}

/// Where and why the valid data of a segment ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// An end-of-data marker (zeros) at `offset`. `trailing_garbage` says whether
    /// non-zero bytes follow it: the remains of unsynced writes after a power cut.
    Clean {
        /// Segment offset of the end marker.
        offset: u64,
        /// Non-zero bytes follow the end marker.
        trailing_garbage: bool,
    },
    /// Damage at `offset` that a crash can leave (nothing after it was ever synced).
    Torn {
        /// Segment offset of the damaged frame.
        offset: u64,
        /// What is wrong there.
        damage: Damage,
    },
    /// Damage at `offset` that no crash explains: refuse, or repair explicitly.
    Corrupt {
        /// Segment offset of the damaged frame.
        offset: u64,
        /// What is wrong there.
        damage: Damage,
    },
}

impl End {
    /// The offset where valid data ends.
    #[must_use]
    pub const fn offset(&self) -> u64 {
        match *self {
            Self::Clean { offset, .. } | Self::Torn { offset, .. } | Self::Corrupt { offset, .. } => offset,
        }
    }
}

/// The result of scanning one segment image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan<'a> {
    /// The segment's header.
    pub header: SegmentHeader,
    /// Every valid record before the end, in LSN order.
    pub records: Vec<RecordRef<'a>>,
    /// Where and why the valid data ends.
    pub end: End,
}

/// Parses and checks a segment header.
///
/// # Errors
/// [`HeaderError`] when the bytes do not start with a valid header of a known version.
pub fn parse_header(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
    let header = bytes.get(..HEADER_LEN).ok_or(HeaderError::Invalid)?;
    let magic_ok = header.get(HEADER_MAGIC..HEADER_FRAME_VERSION) == Some(&SEGMENT_MAGIC[..]);
    let crc_ok = get_u32(header, HEADER_CRC) == crc32fast::hash(header.get(..HEADER_CRC).unwrap_or_default());
    let zeros_ok = get_u32(header, HEADER_PAD) == 0;
    if !(magic_ok && crc_ok && zeros_ok) {
        return Err(HeaderError::Invalid);
    }
    let frame = get_u16(header, HEADER_FRAME_VERSION);
    let record = get_u16(header, HEADER_RECORD_VERSION);
    if !(FIRST_FRAME_VERSION..=FRAME_VERSION).contains(&frame) || record != RECORD_VERSION {
        return Err(HeaderError::UnsupportedVersion { frame, record });
    }
    let dir_id = get_u32(header, HEADER_DIR_ID);
    // Version 1 reserved the identity's bytes as zero.
    if frame == 1 && dir_id != 0 {
        return Err(HeaderError::Invalid);
    }
    let first_lsn = get_u64(header, HEADER_FIRST_LSN);
    if !(1..=MAX_LSN).contains(&first_lsn) {
        return Err(HeaderError::Invalid);
    }
    Ok(SegmentHeader { first_lsn, dir_id })
}

/// Parses a whole segment image: header, then frames until the end of valid data.
///
/// # Errors
/// [`HeaderError`] when the header is invalid; frame damage is reported in [`Scan::end`].
pub fn scan(bytes: &[u8]) -> Result<Scan<'_>, HeaderError> {
    let header = parse_header(bytes)?;
    let mut records = Vec::new();
    let end = scan_frames(bytes, header.first_lsn, |r| records.push(r));
    Ok(Scan { header, records, end })
}

/// Visits each valid frame of a segment image after its header, in order, and says
/// where valid data ends. `first_lsn` is the LSN the first frame must carry.
pub fn scan_frames<'a>(bytes: &'a [u8], first_lsn: Lsn, mut visit: impl FnMut(RecordRef<'a>)) -> End {
    let mut offset = HEADER_LEN;
    let mut expected = first_lsn;
    loop {
        match frame_at(bytes, offset, expected) {
            FrameAt::Valid { record, next } => {
                visit(record);
                offset = next;
                expected = expected.wrapping_add(1);
            }
            FrameAt::End => {
                let at = offset as u64;
                if later_frame_vouches_for(bytes, offset, expected) {
                    return End::Corrupt { offset: at, damage: Damage::ZeroedSyncedData };
                }
                let trailing_garbage = bytes.get(offset..).is_some_and(|rest| !all_zero(rest));
                return End::Clean { offset: at, trailing_garbage };
            }
            FrameAt::Damaged(damage) => {
                let at = offset as u64;
                return if later_frame_vouches_for(bytes, offset, expected) {
                    End::Corrupt { offset: at, damage }
                } else {
                    End::Torn { offset: at, damage }
                };
            }
            FrameAt::Inconsistent(damage) => return End::Corrupt { offset: offset as u64, damage },
        }
    }
}

/// Whether every byte is zero; folds whole blocks so that the compiler vectorises it
/// (a preallocated segment is mostly zeros, scanned on every open).
fn all_zero(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    for block in blocks.by_ref() {
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}
