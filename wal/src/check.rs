//! Judging one segment as opening judges it: header, continuity, and how its data ends.
//!
//! Shared by recovery (which acts on the verdict) and by [`crate::inspect`] (which only
//! reports it), so the two can never disagree about what is a torn tail and what is
//! corruption.

use crate::error::{Corruption, Error, Problem};
use crate::format::follows;
use crate::parse::{End, HeaderError, parse_header, scan_frames};
use crate::record::{Lsn, RecordRef};

/// How the valid data of a segment ends, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// An end marker with nothing after it.
    Clean,
    /// Damage or stray bytes at the end of the newest segment: what a crash leaves;
    /// opening cuts it.
    Torn,
    /// Damage no crash explains: opening refuses (or, in repair mode, cuts) it.
    Corrupt(Problem),
}

/// A segment whose header is sound, scanned.
#[derive(Clone, Debug)]
pub(crate) struct Checked {
    /// Valid records, before the end.
    pub records: u64,
    /// Where and why the valid data ends, as the parser says.
    pub end: End,
    /// What that end means for this segment.
    pub tail: Tail,
}

/// Checks the segment `name` (first LSN `name_lsn` by its name) from its bytes.
/// `expected_first` is the LSN its predecessor's records lead up to (`None` for the
/// oldest segment); `newest` says whether it is the last segment, the only one whose
/// tail a crash may tear. Visits every valid record.
///
/// # Errors
/// [`Error::UnsupportedVersion`], or [`Error::Corrupt`] at offset 0 for a header that is
/// invalid, does not match the name, or does not continue the predecessor (exactly, or
/// at a restart LSN above it): nothing of the segment is readable then.
pub(crate) fn check_segment<'a>(
    name: &str,
    name_lsn: Lsn,
    bytes: &'a [u8],
    expected_first: Option<Lsn>,
    newest: bool,
    visit: impl FnMut(RecordRef<'a>),
) -> Result<Checked, Error> {
    let corrupt = |problem| Error::Corrupt(Corruption { segment: name.to_owned(), offset: 0, problem });
    let header = match parse_header(bytes) {
        Ok(h) => h,
        Err(HeaderError::UnsupportedVersion { frame, record }) => {
            return Err(Error::UnsupportedVersion { segment: name.to_owned(), frame, record });
        }
        Err(HeaderError::Invalid) => return Err(corrupt(Problem::InvalidHeader)),
    };
    if header.first_lsn != name_lsn {
        return Err(corrupt(Problem::NameMismatch { name: name_lsn, header: header.first_lsn }));
    }
    // A segment continues its predecessor exactly, or starts above it at a restart LSN.
    if let Some(expected) = expected_first
        && !follows(expected.wrapping_sub(1), header.first_lsn)
    {
        return Err(corrupt(Problem::LsnGap { expected, found: header.first_lsn }));
    }
    let mut visit = visit;
    let mut records = 0u64;
    let end = scan_frames(bytes, header.first_lsn, |r| {
        records += 1;
        visit(r);
    });
    let tail = match end {
        End::Clean { trailing_garbage: false, .. } => Tail::Clean,
        End::Clean { trailing_garbage: true, .. } | End::Torn { .. } if newest => Tail::Torn,
        End::Clean { .. } => Tail::Corrupt(Problem::GarbageAfterEnd),
        End::Torn { damage, .. } => Tail::Corrupt(Problem::SealedSegment(damage)),
        End::Corrupt { damage, .. } => Tail::Corrupt(Problem::Frame(damage)),
    };
    Ok(Checked { records, end, tail })
}
