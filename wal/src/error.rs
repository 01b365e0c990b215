//! The crate's one error type, with the evidence needed to act on it.

use std::io;

use crate::format::{FIRST_FRAME_VERSION, FRAME_VERSION, RECORD_VERSION};
use crate::frame::Damage;
use crate::record::Lsn;

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed. During appends this also poisons the log (see [`Error::Poisoned`]).
    #[error("WAL I/O error while {op} {target}: {source}")]
    Io {
        /// What the log was doing.
        op: &'static str,
        /// The file or directory involved.
        target: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Damage that no crash explains; the log refuses to open over it.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// A segment written by a newer version of the format.
    #[error(
        "segment {segment} has format version {frame}.{record}, this build reads frame versions \
         {FIRST_FRAME_VERSION}..={FRAME_VERSION} with record version {RECORD_VERSION}: \
         open the log with the newer memdb that wrote it"
    )]
    UnsupportedVersion {
        /// The segment's file name.
        segment: String,
        /// Its frame version.
        frame: u16,
        /// Its record-schema version.
        record: u16,
    },
    /// An earlier write or sync failed; the log accepts no more appends (fail-stop).
    #[error(
        "the WAL refuses writes since {cause}; every write acknowledged before that is safe: \
         fix the disk and reopen the log"
    )]
    Poisoned {
        /// The failure that stopped the log.
        cause: String,
    },
    /// A record too large for the configured limit or for a segment.
    #[error("a WAL record of {size} bytes is over the limit of {max} bytes")]
    RecordTooLarge {
        /// The encoded size of the record.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Every LSN up to [`crate::format::MAX_LSN`] has been used.
    #[error("the WAL has used every LSN; start a new log")]
    LsnExhausted,
    /// The log was closed.
    #[error("the WAL is closed")]
    Closed,
    /// The meta file beside the segments is damaged (see FORMAT.md, "Meta file").
    #[error(
        "the WAL meta file is damaged: {problem}; restore it from a backup, or remove it to rebuild it from PostgreSQL"
    )]
    BadMeta {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The directory or a file of the log is owned by another user or writable by
    /// others: refused before anything is read from it.
    #[error(transparent)]
    UnsafePermissions(#[from] crate::storage::UnsafePermissions),
    /// A segment whose header carries another WAL directory's identity: copied in from
    /// elsewhere. Refused: its records are not this log's.
    #[error(
        "segment {segment} belongs to another WAL directory (identity {found:08x}; this one's is {expected:08x}): \
         it was copied in from elsewhere; move it out of the directory, its records are not this log's"
    )]
    ForeignSegment {
        /// The segment's file name.
        segment: String,
        /// The identity in its header.
        found: u32,
        /// This directory's identity.
        expected: u32,
    },
    /// Options that cannot work.
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, target: impl Into<String>, source: io::Error) -> Self {
        Self::Io { op, target: target.into(), source }
    }

    /// Whether this is a full disk (or quota): nothing was written, a retry may succeed.
    #[must_use]
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, Self::Io { source, .. }
            if source.kind() == io::ErrorKind::StorageFull || source.kind() == io::ErrorKind::QuotaExceeded)
    }
}

/// Corruption, located: which segment, which offset, what was found there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "WAL corruption in segment {segment} at offset {offset}: {problem}. The log refuses to open; \
     `memdb wal repair` (RecoveryMode::TruncateAtCorruption) cuts it there, losing every record after it"
)]
pub struct Corruption {
    /// The segment's file name.
    pub segment: String,
    /// Byte offset within the segment.
    pub offset: u64,
    /// What is wrong.
    pub problem: Problem,
}

/// What kind of corruption was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A damaged frame with evidence that it had been synced, or a checksummed but
    /// inconsistent one.
    #[error("{0}")]
    Frame(Damage),
    /// A damaged frame or stray bytes in a segment that was completely synced before
    /// its successor was created.
    #[error("{0} in a sealed segment")]
    SealedSegment(Damage),
    /// Non-zero bytes after the end of data in a sealed segment.
    #[error("stray bytes after the end of data in a sealed segment")]
    GarbageAfterEnd,
    /// The segment header is unreadable.
    #[error("the segment header is invalid")]
    InvalidHeader,
    /// The header's first LSN is not the one the file name says.
    #[error("the header says the first LSN is {header}, the file name says {name}")]
    NameMismatch {
        /// From the file name.
        name: Lsn,
        /// From the header.
        header: Lsn,
    },
    /// A segment does not continue where its predecessor ended.
    #[error("records {expected}..{found} are missing between segments")]
    LsnGap {
        /// The LSN the predecessor's records lead up to.
        expected: Lsn,
        /// The first LSN of this segment.
        found: Lsn,
    },
}
