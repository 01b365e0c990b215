//! Read-only inspection of a log directory, for operators' tools (`memdb wal …`).
//!
//! Invariant: nothing here takes the directory's `LOCK`, creates, writes or removes a
//! file. It reads segment files with plain reads, so it is safe beside a live process —
//! whose newest segment may then show a tail that is still being written. Damage is
//! judged by the same code opening uses ([`crate::check`]): what [`inspect`] calls a
//! torn tail, opening cuts; what it calls corruption, opening refuses.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use crate::check::{Tail, check_segment};
use crate::error::{Corruption, Error};
use crate::format::{FRAME_ALIGN, TEMP_SUFFIX, parse_segment_name};
use crate::frame::{Damage, FrameAt, frame_at};
use crate::record::{Lsn, Op, RecordRef};
use crate::storage::LOCK_FILE;

/// What a log directory holds, segment by segment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    /// Segments, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// Leftover temporary files (a segment being created when a process died); opening removes them.
    pub temp_files: Vec<String>,
    /// Whether a live process holds the directory's `LOCK` (has the log open).
    pub in_use: bool,
}

/// One segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The file name.
    pub name: String,
    /// The file's size in bytes (segments are preallocated).
    pub file_len: u64,
    /// The first LSN, from the file name.
    pub first_lsn: Lsn,
    /// Valid records read.
    pub records: u64,
    /// Bytes of valid data, header included (where the valid data ends).
    pub used: u64,
    /// Valid records per table.
    pub tables: BTreeMap<String, OpCounts>,
    /// How the segment ends.
    pub state: SegmentState,
    /// Whether an earlier segment is damaged so that opening stops before this one
    /// (a repair deletes it).
    pub after_damage: bool,
    /// Checksum-valid frames found after a damaged spot: records a repair would cut.
    pub beyond_damage: Option<Salvage>,
}

/// A record as [`inspect`] meets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Seen<'a> {
    /// The segment's file name.
    pub segment: &'a str,
    /// The record.
    pub record: RecordRef<'a>,
    /// Whether it lies beyond damage that stops opening (after a corrupt spot, or in a
    /// later segment): opening does not read it, a repair cuts it; only a dump salvages it.
    pub beyond_damage: bool,
}

/// Records per operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpCounts {
    /// Puts.
    pub puts: u64,
    /// Deletes.
    pub deletes: u64,
    /// Table creations.
    pub create_tables: u64,
}

/// How a segment's valid data ends.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentState {
    /// An end marker with only zeros after it.
    Clean,
    /// A torn tail at `offset` of the newest segment: what a crash leaves, cut on open
    /// with nothing acknowledged as durable lost. `damage` is `None` for stray bytes
    /// after an end marker.
    TornTail {
        /// Where the valid data ends.
        offset: u64,
        /// What is there.
        damage: Option<Damage>,
    },
    /// Damage that no crash explains: opening refuses the log.
    Corrupt(Corruption),
    /// Written by a newer format version: this build cannot read it.
    Unsupported {
        /// Its frame version.
        frame: u16,
        /// Its record-schema version.
        record: u16,
    },
}

/// Checksum-valid frames after a damaged spot, found by re-synchronising on frame
/// boundaries: what cutting there loses, beyond the damaged frame itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Salvage {
    /// Intact frames found.
    pub frames: u64,
    /// Lowest LSN among them.
    pub first_lsn: Lsn,
    /// Highest LSN among them.
    pub last_lsn: Lsn,
    /// Bytes from the damaged spot through the last non-zero byte of the segment.
    pub bytes: u64,
}

impl Inspection {
    /// The first segment that stops opening (corrupt or of a newer version), by index.
    #[must_use]
    pub fn first_problem(&self) -> Option<(usize, &SegmentInfo)> {
        self.segments
            .iter()
            .enumerate()
            .find(|(_, s)| matches!(s.state, SegmentState::Corrupt(_) | SegmentState::Unsupported { .. }))
    }

    /// The torn tail opening would cut: (segment, offset).
    #[must_use]
    pub fn torn_tail(&self) -> Option<(&str, u64)> {
        self.segments.iter().find_map(|s| match s.state {
            SegmentState::TornTail { offset, .. } if !s.after_damage => Some((s.name.as_str(), offset)),
            _ => None,
        })
    }

    /// Valid records in segments opening would keep.
    #[must_use]
    pub fn records(&self) -> u64 {
        self.segments.iter().filter(|s| !s.after_damage).map(|s| s.records).sum()
    }

    /// LSN of the oldest record retained: every record below it was truncated away
    /// (stored elsewhere). `None` without segments.
    #[must_use]
    pub fn first_lsn(&self) -> Option<Lsn> {
        self.segments.first().map(|s| s.first_lsn)
    }

    /// The LSN the next append would get after opening (as opening would leave the log,
    /// with the default `min_next_lsn`): opening resumes at a restart LSN above all the
    /// newest kept segment can hold (see [`crate::format::restart_lsn`]).
    #[must_use]
    pub fn next_lsn(&self) -> Option<Lsn> {
        let kept = self.segments.iter().rfind(|s| !s.after_damage)?;
        crate::format::restart_lsn(kept.first_lsn, kept.file_len, 1)
    }
}

/// Reads every segment of the log in `dir`, oldest first, visiting each valid record —
/// and each checksum-valid one found beyond damage — and says what each segment holds
/// and how it ends. Read-only: see the module docs.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be listed or a segment cannot be read.
pub fn inspect(dir: &Path, mut visit: impl FnMut(Seen<'_>)) -> Result<Inspection, Error> {
    let target = || dir.display().to_string();
    let mut names = Vec::new();
    let mut temp_files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("listing", target(), e))? {
        let entry = entry.map_err(|e| Error::io("listing", target(), e))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if name.ends_with(TEMP_SUFFIX) {
            temp_files.push(name);
        } else if let Some(lsn) = parse_segment_name(&name) {
            names.push((lsn, name));
        }
    }
    names.sort_unstable();
    temp_files.sort_unstable();

    let mut segments: Vec<SegmentInfo> = Vec::with_capacity(names.len());
    let mut damaged = false;
    for (i, (name_lsn, name)) in names.iter().enumerate() {
        let bytes = fs::read(dir.join(name)).map_err(|e| Error::io("reading", name, e))?;
        // After a damaged segment the chain is broken: judge the rest on their own.
        let expected = match segments.last() {
            Some(prev) if !damaged => Some(prev.first_lsn + prev.records),
            _ => None,
        };
        let mut tables: BTreeMap<String, OpCounts> = BTreeMap::new();
        let checked = check_segment(name, *name_lsn, &bytes, expected, i + 1 == names.len(), |r| {
            count(&mut tables, r);
            visit(Seen { segment: name, record: r, beyond_damage: damaged });
        });
        let mut info = SegmentInfo {
            name: name.clone(),
            file_len: bytes.len() as u64,
            first_lsn: *name_lsn,
            records: 0,
            used: 0,
            tables,
            state: SegmentState::Clean,
            after_damage: damaged,
            beyond_damage: None,
        };
        match checked {
            Ok(checked) => {
                info.records = checked.records;
                info.used = checked.end.offset();
                info.state = match checked.tail {
                    Tail::Clean => SegmentState::Clean,
                    Tail::Torn => SegmentState::TornTail { offset: info.used, damage: damage_of(checked.end) },
                    Tail::Corrupt(problem) => {
                        info.beyond_damage = salvage(&bytes, info.used, |r| visit(Seen::beyond(name, r)));
                        let segment = name.clone();
                        SegmentState::Corrupt(Corruption { segment, offset: info.used, problem })
                    }
                };
            }
            Err(Error::Corrupt(corruption)) => {
                info.beyond_damage = salvage(&bytes, 0, |r| visit(Seen::beyond(name, r)));
                info.state = SegmentState::Corrupt(corruption);
            }
            Err(Error::UnsupportedVersion { frame, record, .. }) => {
                info.state = SegmentState::Unsupported { frame, record };
            }
            Err(e) => return Err(e),
        }
        damaged |= matches!(info.state, SegmentState::Corrupt(_) | SegmentState::Unsupported { .. });
        segments.push(info);
    }
    let in_use = lock_held(&dir.join(LOCK_FILE)).map_err(|e| Error::io("checking the lock of", target(), e))?;
    Ok(Inspection { segments, temp_files, in_use })
}

impl<'a> Seen<'a> {
    fn beyond(segment: &'a str, record: RecordRef<'a>) -> Self {
        Self { segment, record, beyond_damage: true }
    }
}

fn count(tables: &mut BTreeMap<String, OpCounts>, record: RecordRef<'_>) {
    let counts = match tables.get_mut(record.entry.table) {
        Some(counts) => counts,
        None => tables.entry(record.entry.table.to_owned()).or_default(),
    };
    match record.entry.op {
        Op::Put => counts.puts += 1,
        Op::Delete => counts.deletes += 1,
        Op::CreateTable => counts.create_tables += 1,
    }
}

fn damage_of(end: crate::parse::End) -> Option<Damage> {
    match end {
        crate::parse::End::Torn { damage, .. } | crate::parse::End::Corrupt { damage, .. } => Some(damage),
        crate::parse::End::Clean { .. } => None,
    }
}

/// Walks frame boundaries after the damaged spot at `offset` for checksum-valid frames
/// (whatever their LSN), following each found frame to the next, and visits them. `None`
/// when there is nothing but zeros after `offset`.
fn salvage<'a>(bytes: &'a [u8], offset: u64, mut visit: impl FnMut(RecordRef<'a>)) -> Option<Salvage> {
    let start = usize::try_from(offset).ok()?;
    let last_nonzero = bytes.get(start..)?.iter().rposition(|&b| b != 0)?;
    let mut found = Salvage { frames: 0, first_lsn: Lsn::MAX, last_lsn: 0, bytes: last_nonzero as u64 + 1 };
    // Frames start on FRAME_ALIGN boundaries; the segment header is a multiple of it.
    let mut at = start.next_multiple_of(FRAME_ALIGN).max(crate::format::HEADER_LEN);
    while at < bytes.len() {
        // Ask for LSN 0, which no frame carries: a checksum-valid frame then says its LSN.
        let lsn = match frame_at(bytes, at, 0) {
            FrameAt::Inconsistent(Damage::LsnOutOfSequence { found, .. }) => Some(found),
            _ => None,
        };
        match lsn.map(|lsn| (lsn, frame_at(bytes, at, lsn))) {
            Some((lsn, FrameAt::Valid { record, next })) => {
                visit(record);
                found.frames += 1;
                found.first_lsn = found.first_lsn.min(lsn);
                found.last_lsn = found.last_lsn.max(lsn);
                at = next;
            }
            _ => at += FRAME_ALIGN,
        }
    }
    if found.frames == 0 {
        found.first_lsn = 0;
    }
    Some(found)
}

/// Whether a live process holds the `flock` on `lock`, read from `/proc/locks` so that
/// asking never takes the lock (a test lock, even a shared one, could make a starting
/// process fail to open the log). `false` when the file does not exist or the system
/// has no `/proc/locks`.
fn lock_held(lock: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let meta = match fs::metadata(lock) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let locks = match fs::read_to_string("/proc/locks") {
        Ok(locks) => locks,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let dev = meta.dev();
    let wanted = format!("{:02x}:{:02x}:{}", libc::major(dev), libc::minor(dev), meta.ino());
    // Lines read `1: FLOCK  ADVISORY  WRITE 4242 08:01:131090 0 EOF` (`->` marks waiters).
    Ok(locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().filter(|f| *f != "->").collect();
        fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&wanted.as_str())
    }))
}
