//! The append path: encode a frame, copy it into the active segment, rotate when full.
//!
//! One mutex serialises appenders; under it there is only encoding and a `memcpy` (and,
//! once per segment, rotation). Syncing happens outside it (see `sync.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;
use crate::format::{HEADER_LEN, MAX_LSN, segment_name};
use crate::frame::encode_frame;
use crate::options::Options;
use crate::prefault::{self, Prefaulter};
use crate::record::{Entry, Lsn};
use crate::segment::{self, Sealed};
use crate::storage::{SegmentFile, Storage};

/// The segment being appended to.
pub(crate) struct Active {
    pub file: Arc<dyn SegmentFile>,
    pub name: String,
    pub first_lsn: Lsn,
    /// Where the next frame goes.
    pub offset: u64,
    /// Offset through which this segment is on stable storage (updated by syncs).
    pub synced_to: Arc<AtomicU64>,
}

/// What a sync needs to know about the active segment, taken under the writer lock.
pub(crate) struct SyncTarget {
    pub file: Arc<dyn SegmentFile>,
    /// The segment's name, for errors.
    pub name: String,
    pub synced_to: Arc<AtomicU64>,
    pub end: u64,
    pub lsn: Lsn,
}

/// Why an append failed: refused (nothing changed, the log goes on) or fatal (a write
/// or sync failed: the log must stop).
pub(crate) enum Failure {
    Refused(Error),
    Fatal(Error),
}

/// State behind the writer lock.
pub(crate) struct Writer {
    pub active: Active,
    pub sealed: Vec<Sealed>,
    /// The LSN after the last record appended.
    pub next_lsn: Lsn,
    /// Set by opening: the next append starts a restart segment at this LSN (see
    /// FORMAT.md, Opening), so a log that is only read allocates nothing.
    pub resume: Option<Lsn>,
    /// The directory's identity, written into each new segment's header.
    dir_id: u32,
    /// Set by `Wal::close`: no more appends.
    pub closed: bool,
    buf: Vec<u8>,
    prefaulter: Prefaulter,
}

impl Writer {
    pub(crate) fn new(active: Active, sealed: Vec<Sealed>, next_lsn: Lsn, resume: Option<Lsn>, dir_id: u32) -> Self {
        let prefaulter = Prefaulter::spawn();
        prefaulter.ahead(&active.file, active.offset);
        Self { active, sealed, next_lsn, resume, dir_id, closed: false, buf: Vec::with_capacity(4096), prefaulter }
    }

    /// The LSN the next append gets.
    pub(crate) fn next_lsn(&self) -> Lsn {
        self.resume.unwrap_or(self.next_lsn)
    }

    /// Appends one frame and returns its LSN and the LSN made durable by a rotation, if
    /// any. Nothing is written when the record is refused.
    pub(crate) fn append(
        &mut self,
        storage: &dyn Storage,
        opts: &Options,
        entry: &Entry<'_>,
    ) -> Result<(Lsn, Option<Lsn>), Failure> {
        let lsn = self.next_lsn();
        if lsn > MAX_LSN {
            return Err(Failure::Refused(Error::LsnExhausted));
        }
        let mut body = self.encode(lsn, entry);
        let limit = opts.body_limit();
        if body > limit {
            return Err(Failure::Refused(Error::RecordTooLarge { size: body, max: limit }));
        }
        let mut rotated = None;
        if self.resume.is_some() || self.active.offset + self.buf.len() as u64 > self.active.file.len() {
            rotated = Some(self.rotate(storage, opts)?);
            body = self.encode(lsn, entry);
        }
        debug_assert!(body <= limit);
        let (file, offset) = (&self.active.file, self.active.offset);
        // SAFETY: the writer is the only one to write the active segment, and it runs
        // under the log's writer mutex (`&mut self`): no other write overlaps.
        unsafe { file.write_at(offset, &self.buf) }.map_err(|e| {
            Failure::Fatal(Error::io("appending to", format!("{} at offset {offset} (LSN {lsn})", self.active.name), e))
        })?;
        self.active.offset += self.buf.len() as u64;
        self.next_lsn += 1;
        if offset / prefault::CHUNK != self.active.offset / prefault::CHUNK {
            self.prefaulter.ahead(&self.active.file, self.active.offset);
        }
        crate::kill_point::hit(crate::kill_point::AFTER_WRITE);
        Ok((lsn, rotated))
    }

    fn encode(&mut self, lsn: Lsn, entry: &Entry<'_>) -> usize {
        let synced_to = u32::try_from(self.active.synced_to.load(Ordering::Acquire)).unwrap_or(0);
        encode_frame(&mut self.buf, lsn, synced_to, entry)
    }

    /// Seals the active segment (synced whole first, so sealed segments are always
    /// complete on disk) and starts a new one at the next LSN — or at the restart LSN
    /// opening set. Returns the LSN through which the log is now durable. A new segment
    /// that cannot be created for want of space leaves the synced active segment in
    /// place: refused, not fatal. Any other failure is fatal.
    pub(crate) fn rotate(&mut self, storage: &dyn Storage, opts: &Options) -> Result<Lsn, Failure> {
        crate::kill_point::hit(crate::kill_point::ROTATION);
        let old = &self.active;
        let from = old.synced_to.load(Ordering::Acquire);
        old.file.sync_range(from, old.offset.saturating_sub(from)).map_err(|e| {
            let what = format!("{} bytes {from}..{} (through LSN {})", old.name, old.offset, self.next_lsn - 1);
            Failure::Fatal(Error::io("syncing before sealing", what, e))
        })?;
        old.synced_to.store(old.offset, Ordering::Release);
        let first = self.next_lsn();
        let file = segment::create(storage, first, opts.segment_size, self.dir_id)
            .map_err(|e| if e.is_out_of_space() { Failure::Refused(e) } else { Failure::Fatal(e) })?;
        let new = Active {
            file,
            name: segment_name(first),
            first_lsn: first,
            offset: HEADER_LEN as u64,
            synced_to: Arc::new(AtomicU64::new(HEADER_LEN as u64)),
        };
        let old = std::mem::replace(&mut self.active, new);
        self.prefaulter.ahead(&self.active.file, self.active.offset);
        tracing::debug!(sealed = %old.name, next = %self.active.name, "WAL segment rotated");
        // An active segment without records and of the new one's name was replaced by
        // it; one before a restart segment is kept, empty, until a truncation.
        if old.name != self.active.name {
            self.sealed.push(Sealed {
                name: old.name,
                first_lsn: old.first_lsn,
                last_lsn: self.next_lsn - 1,
                used: old.offset,
            });
        }
        self.next_lsn = first;
        self.resume = None;
        crate::kill_point::hit(crate::kill_point::ROTATED);
        Ok(first - 1)
    }

    /// Whether the active segment holds any record.
    pub(crate) fn active_has_records(&self) -> bool {
        self.next_lsn > self.active.first_lsn
    }

    /// What a sync of everything appended so far must cover.
    pub(crate) fn sync_target(&self) -> SyncTarget {
        SyncTarget {
            file: Arc::clone(&self.active.file),
            name: self.active.name.clone(),
            synced_to: Arc::clone(&self.active.synced_to),
            end: self.active.offset,
            lsn: self.next_lsn() - 1,
        }
    }
}
