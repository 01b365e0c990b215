//! Reading the log back: every record from an LSN on, segment by segment.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::error::{Corruption, Error, Problem};
use crate::parse::{End, parse_header, scan_frames};
use crate::record::{Lsn, Record, RecordRef};
use crate::storage::Storage;

/// An iterator over the records of a log from an LSN on; one segment in memory at a time.
pub struct Replay {
    storage: Arc<dyn Storage>,
    /// Segments still to read: (name, first LSN, bytes of data), oldest first.
    segments: VecDeque<(String, Lsn, u64)>,
    from: Lsn,
    last: Lsn,
    pending: VecDeque<Record>,
    failed: bool,
}

impl Replay {
    pub(crate) fn new(storage: Arc<dyn Storage>, segments: Vec<(String, Lsn, u64)>, from: Lsn, last: Lsn) -> Self {
        let skip = segments_before(&segments, from);
        let segments = segments.into_iter().skip(skip).collect();
        Self { storage, segments, from, last, pending: VecDeque::new(), failed: false }
    }

    /// Reads the data of one segment (not its preallocated zeros) and queues its records.
    fn load(&mut self, name: &str, used: u64) -> Result<(), Error> {
        let pending = &mut self.pending;
        visit_segment(self.storage.as_ref(), name, used, self.from, self.last, |r| pending.push_back(r.into()))
    }
}

/// How many of `segments` (oldest first: name, first LSN, bytes) end before `from`:
/// those followed by one starting at or below it.
pub(crate) fn segments_before(segments: &[(String, Lsn, u64)], from: Lsn) -> usize {
    segments.windows(2).take_while(|w| w.get(1).is_some_and(|next| next.1 <= from)).count()
}

/// Reads the data of one segment (not its preallocated zeros) and calls `visit` on each
/// of its records with an LSN in `from..=last`, borrowed from the segment's bytes.
pub(crate) fn visit_segment(
    storage: &dyn Storage,
    name: &str,
    used: u64,
    from: Lsn,
    last: Lsn,
    mut visit: impl FnMut(RecordRef<'_>),
) -> Result<(), Error> {
    let bytes = storage.read_prefix(name, used).map_err(|e| Error::io("reading", name, e))?;
    let corrupt = |offset, problem| Error::Corrupt(Corruption { segment: name.to_owned(), offset, problem });
    let header = parse_header(&bytes).map_err(|_| corrupt(0, Problem::InvalidHeader))?;
    let mut next = header.first_lsn;
    let end = scan_frames(&bytes, header.first_lsn, |r| {
        next = r.lsn + 1;
        if (from..=last).contains(&r.lsn) {
            visit(r);
        }
    });
    // Frames after `last` may be mid-copy by a concurrent append; damage before is not.
    if let End::Corrupt { offset, damage } | End::Torn { offset, damage } = end
        && next <= last
    {
        return Err(corrupt(offset, Problem::Frame(damage)));
    }
    Ok(())
}

/// One segment of a log to read, from [`crate::Wal::replay_segments`]: its records with
/// an LSN in the range asked for, borrowed from its bytes.
pub struct SegmentReplay {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) name: String,
    /// Bytes of data (not the preallocated zeros after them).
    pub(crate) used: u64,
    pub(crate) from: Lsn,
    pub(crate) last: Lsn,
}

impl SegmentReplay {
    /// Bytes of the segment's data: what reading it costs.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.used
    }

    /// Whether the segment holds no data past its header.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.used <= crate::format::HEADER_LEN as u64
    }

    /// Calls `visit` on each of the segment's records in the range, oldest first. Stops
    /// at the first error `visit` returns, and returns it.
    ///
    /// # Errors
    /// I/O errors and [`Error::Corrupt`] (as [`crate::Wal::replay`]), or `visit`'s.
    pub fn visit<E: From<Error>>(&self, mut visit: impl FnMut(RecordRef<'_>) -> Result<(), E>) -> Result<(), E> {
        let mut failed = None;
        visit_segment(self.storage.as_ref(), &self.name, self.used, self.from, self.last, |r| {
            if failed.is_none() {
                failed = visit(r).err();
            }
        })?;
        failed.map_or(Ok(()), Err)
    }
}

impl Iterator for Replay {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            if let Some(record) = self.pending.pop_front() {
                return Some(Ok(record));
            }
            let (name, _, used) = self.segments.pop_front()?;
            if let Err(e) = self.load(&name, used) {
                self.failed = true;
                return Some(Err(e));
            }
        }
        None
    }
}
