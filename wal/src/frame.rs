//! One frame: encoding it, and checking the frame at an offset of untrusted bytes.

use crate::format::{
    FRAME_ALIGN, FRAME_BODY, FRAME_CRC, FRAME_LEN, FRAME_LSN, FRAME_RESERVED, FRAME_SYNCED_TO, MAX_BODY_LEN, MAX_LSN,
    frame_size,
};
use crate::record::{Entry, Lsn, RecordRef, decode_body, encode_body};

/// Encodes one frame into `buf` (cleared first) and returns the body length.
///
/// `synced_to` is the segment offset known to be on stable storage; see FORMAT.md.
pub(crate) fn encode_frame(buf: &mut Vec<u8>, lsn: Lsn, synced_to: u32, entry: &Entry<'_>) -> usize {
    buf.clear();
    buf.resize(FRAME_BODY, 0);
    *buf = encode_body(entry, std::mem::take(buf));
    let body_len = buf.len() - FRAME_BODY;
    buf.resize(frame_size(body_len), 0);
    put_u32(buf, FRAME_LEN, u32::try_from(body_len).unwrap_or(u32::MAX));
    put_u64(buf, FRAME_LSN, lsn);
    put_u32(buf, FRAME_SYNCED_TO, synced_to);
    let crc = frame_crc(buf);
    put_u32(buf, FRAME_CRC, crc);
    body_len
}

/// What lies at a frame offset.
#[derive(Debug)]
pub(crate) enum FrameAt<'a> {
    /// A zero length field (or only zeros too short for a header): the end of data.
    End,
    /// A frame that passed every check; the next frame starts at `next`.
    Valid { record: RecordRef<'a>, next: usize },
    /// Bytes that fail the checksum or the length bounds: torn or damaged.
    Damaged(Damage),
    /// A frame whose checksum holds but whose content is wrong: never a torn write.
    Inconsistent(Damage),
}

/// Why the bytes at an offset are not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// Fewer bytes remain than a frame header needs, and they are not all zero.
    TruncatedHeader,
    /// The length field is over the limit or runs past the end of the segment.
    BadLength {
        /// The length field as found.
        len: u32,
    },
    /// The stored checksum does not match the bytes.
    Checksum {
        /// The checksum stored in the frame.
        stored: u32,
        /// The checksum computed over the frame's bytes.
        computed: u32,
    },
    /// A checksummed frame carries an LSN other than the next one in sequence.
    LsnOutOfSequence {
        /// The LSN that should come next.
        expected: Lsn,
        /// The LSN the frame carries.
        found: Lsn,
    },
    /// A checksummed frame has a reserved field, padding or sync offset that cannot be.
    BadField,
    /// A checksummed frame whose body is not a valid record.
    InvalidBody,
    /// Zeros where the log says data was already on stable storage.
    ZeroedSyncedData,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TruncatedHeader => write!(f, "a frame header cut short"),
            Self::BadLength { len } => write!(f, "frame length {len} out of bounds"),
            Self::Checksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            Self::LsnOutOfSequence { expected, found } => {
                write!(f, "LSN {found} where {expected} was expected")
            }
            Self::BadField => write!(f, "a checksummed frame with a malformed header field"),
            Self::InvalidBody => write!(f, "a checksummed frame whose body is not a valid record"),
            Self::ZeroedSyncedData => write!(f, "zeros over data the log had already synced"),
        }
    }
}

/// Checks the frame at `offset` (a multiple of [`FRAME_ALIGN`]) expecting LSN `expected`.
///
/// Never panics and never reads outside `bytes`, whatever they hold.
pub(crate) fn frame_at(bytes: &[u8], offset: usize, expected: Lsn) -> FrameAt<'_> {
    let Some(rest) = bytes.get(offset..) else { return FrameAt::End };
    if rest.len() < FRAME_BODY {
        return if rest.iter().all(|&b| b == 0) { FrameAt::End } else { FrameAt::Damaged(Damage::TruncatedHeader) };
    }
    let len = get_u32(rest, FRAME_LEN);
    if len == 0 {
        return FrameAt::End;
    }
    let Some(frame) = checked_frame(rest, len) else {
        return FrameAt::Damaged(Damage::BadLength { len });
    };
    let stored = get_u32(frame, FRAME_CRC);
    let computed = frame_crc(frame);
    if stored != computed {
        return FrameAt::Damaged(Damage::Checksum { stored, computed });
    }
    let lsn = get_u64(frame, FRAME_LSN);
    if lsn != expected || lsn > MAX_LSN {
        return FrameAt::Inconsistent(Damage::LsnOutOfSequence { expected, found: lsn });
    }
    let body_end = FRAME_BODY + len as usize;
    let (Some(body), Some(pad)) = (frame.get(FRAME_BODY..body_end), frame.get(body_end..)) else {
        return FrameAt::Damaged(Damage::BadLength { len });
    };
    let synced_to = get_u32(frame, FRAME_SYNCED_TO) as usize;
    if synced_to > offset || get_u32(frame, FRAME_RESERVED) != 0 || pad.iter().any(|&b| b != 0) {
        return FrameAt::Inconsistent(Damage::BadField);
    }
    match decode_body(body) {
        Some(entry) => FrameAt::Valid { record: RecordRef { lsn, entry }, next: offset + frame.len() },
        None => FrameAt::Inconsistent(Damage::InvalidBody),
    }
}

/// Is there, after `offset`, a checksummed frame with an LSN after `expected` that says
/// the log had synced past `offset` when it was written? If so, damage at `offset`
/// hit data already on stable storage: corruption, not a torn write.
pub(crate) fn later_frame_vouches_for(bytes: &[u8], offset: usize, expected: Lsn) -> bool {
    let mut at = offset + FRAME_ALIGN;
    while let Some(rest) = bytes.get(at..) {
        if rest.len() < FRAME_BODY {
            return false;
        }
        let (len, lsn, synced_to) =
            (get_u32(rest, FRAME_LEN), get_u64(rest, FRAME_LSN), get_u32(rest, FRAME_SYNCED_TO));
        let plausible = lsn > expected && (synced_to as usize) > offset && (synced_to as usize) <= at;
        if plausible
            && let Some(frame) = checked_frame(rest, len)
            && get_u32(frame, FRAME_CRC) == frame_crc(frame)
        {
            return true;
        }
        at += FRAME_ALIGN;
    }
    false
}

/// The frame of body length `len` at the start of `rest`, if it fits.
fn checked_frame(rest: &[u8], len: u32) -> Option<&[u8]> {
    let len = len as usize;
    if len == 0 || len > MAX_BODY_LEN {
        return None;
    }
    rest.get(..frame_size(len))
}

/// crc32 over the whole frame (padding included) except the checksum field itself.
fn frame_crc(frame: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(frame.get(..FRAME_CRC).unwrap_or_default());
    hasher.update(frame.get(FRAME_LSN..).unwrap_or_default());
    hasher.finalize()
}

/// Reads a little-endian u16 at `at`; zero if out of bounds (callers check bounds first).
pub(crate) fn get_u16(bytes: &[u8], at: usize) -> u16 {
    bytes.get(at..at + 2).and_then(|b| b.try_into().ok()).map_or(0, u16::from_le_bytes)
}

/// Reads a little-endian u32 at `at`; zero if out of bounds (callers check bounds first).
pub(crate) fn get_u32(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..at + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes)
}

/// Reads a little-endian u64 at `at`; zero if out of bounds (callers check bounds first).
pub(crate) fn get_u64(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(dst) = buf.get_mut(at..at + 4) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    if let Some(dst) = buf.get_mut(at..at + 8) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}
