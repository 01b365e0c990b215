//! Opening: scan every segment in order, keep what is valid, cut a torn tail, refuse
//! (or, when asked, cut) corruption, and say where appending resumes.

use std::sync::Arc;

use crate::check::{Tail, check_segment};
use crate::error::{Corruption, Error};
use crate::format::{HEADER_LEN, TEMP_SUFFIX, parse_segment_name, restart_lsn, segment_name};
use crate::identity;
use crate::options::{Options, RecoveryMode};
use crate::parse::parse_header;
use crate::record::Lsn;
use crate::segment::{self, Sealed};
use crate::storage::{SegmentFile, Storage};

/// What recovery found and did, for logs and operators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments found.
    pub segments: usize,
    /// Valid records found.
    pub records: u64,
    /// LSN of the oldest record kept (equal to `next_lsn` when there is none).
    pub first_lsn: Lsn,
    /// The LSN the next append gets.
    pub next_lsn: Lsn,
    /// LSNs skipped on reopening, never to be used: from after the last record kept
    /// through the one before `next_lsn` (those the last run may have handed out and a
    /// crash lost, and the rest up to a restart LSN). `None` for a new log.
    pub skipped: Option<(Lsn, Lsn)>,
    /// A torn tail cut from the newest segment: (segment, offset). Normal after a crash.
    pub torn_tail: Option<(String, u64)>,
    /// Corruption cut away under [`RecoveryMode::TruncateAtCorruption`], and the
    /// segments deleted after it.
    pub repaired: Option<(Corruption, Vec<String>)>,
    /// Leftover temporary files removed.
    pub removed_temp_files: usize,
}

/// The log as recovery leaves it: sealed segments, and the one to append to.
pub(crate) struct Recovered {
    /// The directory's identity, for the headers of new segments.
    pub dir_id: u32,
    pub sealed: Vec<Sealed>,
    pub active: Sealed,
    pub active_file: Arc<dyn SegmentFile>,
    pub report: RecoveryReport,
}

pub(crate) fn recover(storage: &dyn Storage, opts: &Options) -> Result<Recovered, Error> {
    let mut report = RecoveryReport::default();
    let mut names = Vec::new();
    for name in storage.list().map_err(|e| Error::io("listing", "the WAL directory", e))? {
        if name.ends_with(TEMP_SUFFIX) {
            storage.remove(&name).map_err(|e| Error::io("removing", &name, e))?;
            report.removed_temp_files += 1;
        } else if let Some(lsn) = parse_segment_name(&name) {
            names.push((lsn, name));
        }
    }
    if report.removed_temp_files > 0 {
        storage.sync_dir().map_err(|e| Error::io("syncing", "the WAL directory", e))?;
    }
    names.sort_unstable();
    report.segments = names.len();
    let dir_id = match identity::read(storage)? {
        Some(id) => id,
        None => adopt_identity(storage, &names)?,
    };

    let mut segments: Vec<Sealed> = Vec::with_capacity(names.len());
    let mut resume_floor = opts.min_next_lsn;
    let mut cut: Option<(usize, u64, Vec<u8>)> = None; // (index, offset, bytes) to zero from offset
    for (i, (name_lsn, name)) in names.iter().enumerate() {
        let newest = i + 1 == names.len();
        let bytes = storage.read(name).map_err(|e| Error::io("reading", name, e))?;
        // ⚑ Before anything of it is believed: a segment of another directory.
        if let Ok(header) = parse_header(&bytes)
            && header.dir_id != 0
            && header.dir_id != dir_id
        {
            return Err(Error::ForeignSegment { segment: name.clone(), found: header.dir_id, expected: dir_id });
        }
        let expected = segments.last().map(|prev: &Sealed| prev.last_lsn.wrapping_add(1));
        let checked = check_segment(name, *name_lsn, &bytes, expected, newest, |_| ())?;
        let (count, end) = (checked.records, checked.end);
        let problem = match checked.tail {
            Tail::Clean => None,
            Tail::Torn => {
                let offset = end.offset();
                tracing::warn!(segment = %name, offset, ?end, "WAL torn tail cut (normal after a crash)");
                report.torn_tail = Some((name.clone(), offset));
                cut = Some((i, offset, bytes.clone()));
                None
            }
            Tail::Corrupt(problem) => Some(problem),
        };
        let sealed =
            Sealed { name: name.clone(), first_lsn: *name_lsn, last_lsn: *name_lsn + count - 1, used: end.offset() };
        report.records += count;
        segments.push(sealed);
        if let Some(problem) = problem {
            let corruption = Corruption { segment: name.clone(), offset: end.offset(), problem };
            if opts.recovery != RecoveryMode::TruncateAtCorruption {
                return Err(corruption.into());
            }
            tracing::error!(%corruption, "WAL repair: cutting the log at the corruption");
            let deleted = names.iter().skip(i + 1).map(|(_, n)| n.clone()).collect::<Vec<_>>();
            // The records cut may have been handed out too: resume above the newest.
            if let Some((first, name)) = names.last() {
                let len = storage.open(name).map_err(|e| Error::io("opening", name, e))?.len();
                resume_floor = resume_floor.max(restart_lsn(*first, len, 1).ok_or(Error::LsnExhausted)?);
            }
            for n in &deleted {
                storage.remove(n).map_err(|e| Error::io("removing", n, e))?;
            }
            storage.sync_dir().map_err(|e| Error::io("syncing", "the WAL directory", e))?;
            report.segments = i + 1;
            report.repaired = Some((corruption, deleted));
            cut = Some((i, end.offset(), bytes));
            break;
        }
    }

    let Some(active) = segments.pop() else {
        let first = opts.min_next_lsn.max(1);
        let file = segment::create(storage, first, opts.segment_size, dir_id)?;
        report.first_lsn = first;
        report.next_lsn = first;
        let active =
            Sealed { name: segment_name(first), first_lsn: first, last_lsn: first - 1, used: HEADER_LEN as u64 };
        return Ok(Recovered { dir_id, sealed: segments, active, active_file: file, report });
    };
    let file = storage.open(&active.name).map_err(|e| Error::io("opening", &active.name, e))?;
    if let Some((_, offset, bytes)) = cut {
        zero_from(file.as_ref(), &active.name, offset, &bytes)?;
    }
    // Everything kept is made durable now (FORMAT.md, synced-to).
    file.sync_all().map_err(|e| Error::io("syncing", &active.name, e))?;
    // ⚑ LSNs are never handed out twice: the last run may have handed out LSNs that a
    // power cut (or a repair) took from the newest segment. The next append starts a
    // restart segment above all that segment can hold, and above `min_next_lsn` (the
    // writer creates it then, so opening a log only to read it allocates nothing).
    let resume = restart_lsn(active.first_lsn, file.len(), resume_floor).ok_or(Error::LsnExhausted)?;
    report.skipped = Some((active.last_lsn + 1, resume - 1));
    report.first_lsn = segments.first().unwrap_or(&active).first_lsn;
    report.next_lsn = resume;
    Ok(Recovered { dir_id, sealed: segments, active, active_file: file, report })
}

/// The identity of a directory without an `IDENTITY` file (new, or written before
/// identities, or the file lost): that of its oldest segment carrying one, else a new
/// one. Written down at once. The oldest: a segment copied in from elsewhere comes after
/// the directory's own (a restart segment is the only kind that passes the chain), so
/// it is the one refused as foreign, never the log itself.
fn adopt_identity(storage: &dyn Storage, names: &[(Lsn, String)]) -> Result<u32, Error> {
    let mut found = None;
    for (_, name) in names {
        let header = storage.read_prefix(name, HEADER_LEN as u64).map_err(|e| Error::io("reading", name, e))?;
        if let Ok(header) = parse_header(&header)
            && header.dir_id != 0
        {
            found = Some(header.dir_id);
            break;
        }
    }
    let id = found.unwrap_or_else(identity::new_id);
    identity::write(storage, id)?;
    Ok(id)
}

/// Zeros the bytes of a segment from `offset` through its last non-zero byte, then syncs.
fn zero_from(file: &dyn SegmentFile, name: &str, offset: u64, bytes: &[u8]) -> Result<(), Error> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let Some(rest) = bytes.get(start..) else { return Ok(()) };
    let Some(last) = rest.iter().rposition(|&b| b != 0) else { return Ok(()) };
    // SAFETY: recovery runs before the log exists for anyone else: nothing else writes.
    unsafe { file.write_at(offset, &vec![0; last + 1]) }.map_err(|e| Error::io("zeroing the torn tail of", name, e))?;
    file.sync_range(offset, last as u64 + 1).map_err(|e| Error::io("syncing", name, e))
}
