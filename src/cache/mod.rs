//! The in-memory map of one table: sharded, with dirty tracking for the flush.
//!
//! Invariants:
//! - ⚑ a write appends to the WAL *under its shard's lock* and then applies, so within a
//!   shard the map changes in LSN order (highest LSN wins), and every LSN below
//!   `wal.next_lsn()` is visible in the map to anyone who takes the shard lock;
//! - every dirty slot is either on its shard's `dirty` list, on its `parked` list, or in
//!   a [`Batch`] the flusher holds. A batch gives its records back when it is consumed
//!   ([`Batch::flushed`], [`Batch::failed`]) or dropped — a cancelled flush future drops
//!   it — so no record leaves the lists for good; and while any batch is out,
//!   [`Cache::min_dirty_lsn`] refuses to name a WAL watermark;
//! - ⚑ dirty slots are never evicted; a delete leaves a dirty tombstone until flushed.

mod replay;
mod shard;

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use memdb_wal::Lsn;

use crate::record::Record;
use crate::text::Text;

pub(crate) use replay::Gathered;
use shard::Shard;

/// Shards per table: enough that a shard's lock is short even when it is scanned.
pub(crate) const SHARDS: usize = 128;
/// Dirty records a flush takes from a shard per lock (a few microseconds' work).
const TAKE_PER_LOCK: usize = 256;

/// A live record shared without copying, or `None`: deleted (a tombstone) or absent.
pub(crate) type Value = Option<Record>;

/// A dirty record handed to the flusher.
#[derive(Clone, Debug)]
pub(crate) struct Dirty {
    pub key: Text,
    pub record: Record,
    pub lsn: Lsn,
}

/// Dirty records taken by the flusher, off their shards' dirty lists. ⚑ They go back
/// however the flush ends: [`Batch::flushed`] marks them clean (or leaves a raced write
/// dirty), [`Batch::failed`] puts them back (or parks them), and dropping the batch — a
/// flush future cancelled at any await — puts back whatever it still holds.
pub(crate) struct Batch<'c> {
    cache: &'c Cache,
    records: Vec<Dirty>,
}

impl<'c> Batch<'c> {
    fn new(cache: &'c Cache, records: Vec<Dirty>) -> Self {
        cache.batches_taken.fetch_add(1, Ordering::AcqRel);
        cache.batches_out.fetch_add(1, Ordering::AcqRel);
        Self { cache, records }
    }

    pub(crate) fn records(&self) -> &[Dirty] {
        &self.records
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The highest LSN in the batch (0 when empty).
    pub(crate) fn max_lsn(&self) -> Lsn {
        self.records.iter().map(|r| r.lsn).max().unwrap_or(0)
    }

    /// Takes the first record out as a batch of its own (for one-by-one retries).
    pub(crate) fn take_first(&mut self) -> Option<Batch<'c>> {
        (!self.records.is_empty()).then(|| {
            let first = self.records.remove(0);
            Batch::new(self.cache, vec![first])
        })
    }

    /// PostgreSQL committed the batch: each record whose slot still has the flushed LSN
    /// becomes clean (a flushed tombstone is dropped); the others stay dirty. Records in
    /// `superseded` (PostgreSQL kept a newer row) are dropped too, so reads load that row.
    pub(crate) fn flushed(mut self, superseded: &[String]) {
        let superseded: HashSet<&str> = superseded.iter().map(String::as_str).collect();
        let cache = self.cache;
        cache.for_each_shard_of(&std::mem::take(&mut self.records), |shard, key, r| {
            let change = shard.mark_flushed(key, r, superseded.contains(&*r.key));
            cache.account(change);
        });
    }

    /// PostgreSQL did not take the batch: every record goes back on its dirty list, or,
    /// with `park`, is parked (PostgreSQL rejects it; it waits for its next write).
    pub(crate) fn failed(mut self, park: bool) {
        self.give_back(park);
    }

    fn give_back(&mut self, park: bool) {
        let records = std::mem::take(&mut self.records);
        self.cache.for_each_shard_of(&records, |shard, key, r| shard.restore(key, r, park));
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.give_back(false);
        self.cache.batches_out.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A flush holds records taken off the dirty lists: no WAL watermark can be named now.
#[derive(Debug)]
pub(crate) struct BatchesOut;

/// A shard's removal count at the time of a lookup that missed: a record loaded from
/// PostgreSQL may be cached only if nothing left the shard since (see [`Cache::load`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Epoch(u64);

/// What a lookup found.
pub(crate) enum Lookup {
    /// In memory: a live record, or `None` for a tombstone.
    Hit(Value),
    /// Not in memory. `epoch` must be handed back to [`Cache::load`].
    Miss { epoch: Epoch },
}

/// Why a read-modify-write did not happen.
pub(crate) enum Update<E> {
    /// The record left memory between loading and updating: load again.
    Raced,
    /// The update or the append failed.
    Failed(E),
}

/// The keys' hash function, seeded per table.
#[derive(Default)]
pub(crate) struct Hasher(foldhash::fast::RandomState);

impl Hasher {
    #[inline]
    fn key<'k>(&self, text: &'k str) -> Key<'k> {
        Key { hash: self.0.hash_one(text), text }
    }
}

/// A key with its hash, computed once per operation: bits 32.. pick the shard, and the
/// shard's table uses the low bits (bucket) and the top 7 (tag), so the two choices are
/// independent.
#[derive(Clone, Copy)]
pub(crate) struct Key<'k> {
    hash: u64,
    text: &'k str,
}

/// A shard on cache lines of its own: no false sharing between neighbours' locks.
#[repr(align(128))]
struct Padded(RwLock<Shard>);

/// One table's records in memory.
pub(crate) struct Cache {
    shards: Box<[Padded]>,
    hasher: Hasher,
    cached: AtomicUsize,
    dirty: AtomicUsize,
    /// Live [`Batch`]es: while any is out, the dirty lists do not show every dirty slot.
    batches_out: AtomicU64,
    /// Batches ever taken: a scan that saw it change may have missed records in flight.
    batches_taken: AtomicU64,
}

impl Cache {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Padded(RwLock::new(Shard::default()))).collect(),
            hasher: Hasher::default(),
            cached: AtomicUsize::new(0),
            dirty: AtomicUsize::new(0),
            batches_out: AtomicU64::new(0),
            batches_taken: AtomicU64::new(0),
        }
    }

    /// The key hashed, and its shard.
    #[inline]
    fn shard_of<'k>(&self, key: &'k str) -> (Key<'k>, &RwLock<Shard>) {
        let key = self.hasher.key(key);
        let shard = self
            .shards
            .get(Self::shard_index(key.hash))
            .unwrap_or_else(|| unreachable!("index is reduced modulo SHARDS"));
        (key, &shard.0)
    }

    /// The shard of a key with this hash: bits 32.. pick it.
    #[inline]
    fn shard_index(hash: u64) -> usize {
        (hash >> 32) as usize % SHARDS
    }

    fn all_shards(&self) -> impl Iterator<Item = &RwLock<Shard>> {
        self.shards.iter().map(|p| &p.0)
    }

    #[inline]
    fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
        shard.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_lock(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
        shard.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Looks `key` up, touching its access time.
    #[inline]
    pub(crate) fn get(&self, key: &str, now: u32) -> Lookup {
        let (key, shard) = self.shard_of(key);
        let shard = Self::read(shard);
        match shard.get(key) {
            Some(slot) => {
                slot.touch(now);
                Lookup::Hit(live(&slot.record))
            }
            None => Lookup::Miss { epoch: Epoch(shard.epoch) },
        }
    }

    /// The record's value and LSN if in memory, without touching its access time.
    pub(crate) fn peek(&self, key: &str) -> Option<(Value, Lsn)> {
        let (key, shard) = self.shard_of(key);
        Self::read(shard).get(key).map(|s| (live(&s.record), s.lsn))
    }

    /// Writes `record` (of `key`: a value or a tombstone): `append` is called under the
    /// shard lock and must append it to the WAL, returning its LSN; then the map
    /// changes. On error nothing changes.
    pub(crate) fn write<E>(
        &self,
        key: &str,
        record: Record,
        now: u32,
        append: impl FnOnce() -> Result<Lsn, E>,
    ) -> Result<Lsn, E> {
        let (key, shard) = self.shard_of(key);
        let mut shard = Self::write_lock(shard);
        let lsn = append()?;
        let change = shard.put_dirty(key, record, lsn, now);
        self.account(change);
        Ok(lsn)
    }

    /// Read-modify-write under the shard lock: `update` derives the new value from the
    /// current one — the slot's, or else `base` (a value loaded from PostgreSQL with the
    /// epoch of the lookup that missed) if nothing was removed from the shard since —
    /// then `append` logs it and the map changes. Without a usable current value the
    /// result is [`Update::Raced`]: load again and retry.
    pub(crate) fn update<E>(
        &self,
        key: &str,
        now: u32,
        base: Option<(Value, Epoch)>,
        update: impl FnOnce(Option<&str>) -> Result<Record, E>,
        append: impl FnOnce(&Record) -> Result<Lsn, E>,
    ) -> Result<(Lsn, Record), Update<E>> {
        let (key, shard) = self.shard_of(key);
        let mut shard = Self::write_lock(shard);
        let record = match (shard.get(key), base) {
            (Some(slot), _) => update(slot.record.value()),
            (None, Some((value, epoch))) if epoch == Epoch(shard.epoch) => {
                update(value.as_ref().and_then(Record::value))
            }
            (None, _) => return Err(Update::Raced),
        }
        .map_err(Update::Failed)?;
        let lsn = append(&record).map_err(Update::Failed)?;
        let change = shard.put_dirty(key, record.clone(), lsn, now);
        self.account(change);
        Ok((lsn, record))
    }

    /// Caches a record read from PostgreSQL as clean — only if the key is still absent
    /// and nothing was removed from its shard since the lookup that missed (`epoch`), so
    /// a load never resurrects a value that a racing write or delete replaced.
    pub(crate) fn load(&self, key: &str, record: Record, lsn: Lsn, epoch: Epoch, now: u32) -> bool {
        let (key, shard) = self.shard_of(key);
        let mut shard = Self::write_lock(shard);
        if Epoch(shard.epoch) != epoch || shard.get(key).is_some() {
            return false;
        }
        shard.put_clean(key, record, lsn, now);
        self.cached.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Takes up to `max` dirty records for the flusher, a bounded number per lock. The
    /// batch is counted out before the first record leaves a list.
    pub(crate) fn take_dirty(&self, max: usize) -> Batch<'_> {
        let mut batch = Batch::new(self, Vec::new());
        // Round after round over the shards, at most `TAKE_PER_LOCK` each time: a shard
        // holding a long backlog (a replayed WAL) is never locked for a whole batch.
        loop {
            let before = batch.records.len();
            for shard in self.all_shards() {
                if batch.records.len() >= max {
                    return batch;
                }
                if Self::read(shard).dirty.is_empty() {
                    continue;
                }
                let want = (max - batch.records.len()).min(TAKE_PER_LOCK);
                Self::write_lock(shard).take_dirty(&self.hasher, want, &mut batch.records);
            }
            if batch.records.len() == before {
                return batch;
            }
        }
    }

    /// Runs `f` on each record (and its hashed key) with its shard locked.
    fn for_each_shard_of(&self, records: &[Dirty], mut f: impl FnMut(&mut Shard, Key<'_>, &Dirty)) {
        for r in records {
            let (key, shard) = self.shard_of(&r.key);
            f(&mut Self::write_lock(shard), key, r);
        }
    }

    /// The lowest LSN the WAL must keep for this table: that of its oldest dirty or
    /// parked record (`None`: nothing dirty). [`BatchesOut`] while a flush holds records
    /// off the lists, which would hide them from the scan.
    pub(crate) fn min_dirty_lsn(&self) -> Result<Option<Lsn>, BatchesOut> {
        let taken = self.batches_taken.load(Ordering::Acquire);
        if self.batches_out.load(Ordering::Acquire) > 0 {
            return Err(BatchesOut);
        }
        let min = self.all_shards().filter_map(|s| Self::read(s).min_dirty_lsn(&self.hasher)).min();
        // A batch taken (and maybe given back) during the scan may have hidden records.
        if self.batches_taken.load(Ordering::Acquire) == taken { Ok(min) } else { Err(BatchesOut) }
    }

    /// Keys of the dirty (and parked) records whose LSN is in `lsns`. Records a flush
    /// holds are not on the lists: call it while no batch is out.
    pub(crate) fn dirty_keys_in(&self, lsns: std::ops::RangeInclusive<Lsn>) -> Vec<Text> {
        let mut keys = Vec::new();
        for shard in self.all_shards() {
            Self::read(shard).dirty_keys_in(&self.hasher, &lsns, &mut keys);
        }
        keys
    }

    /// Evicts clean records last touched before `cutoff`; returns how many.
    pub(crate) fn evict_older_than(&self, cutoff: u32) -> usize {
        let mut evicted = 0;
        for shard in self.all_shards() {
            // A shard with nothing idle is skipped under the read lock: writers and
            // readers of busy shards are not held up by a sweep that finds nothing.
            if Self::read(shard).may_hold_idle(cutoff) {
                evicted += Self::write_lock(shard).evict_older_than(cutoff);
            }
        }
        self.cached.fetch_sub(evicted, Ordering::Relaxed);
        evicted
    }

    /// Access times of a sample of clean records, to pick an LRU cutoff.
    pub(crate) fn sample_access_times(&self, per_shard: usize, out: &mut Vec<u32>) {
        for shard in self.all_shards() {
            Self::read(shard).sample_access_times(per_shard, out);
        }
    }

    /// Records in memory (values and tombstones).
    pub(crate) fn cached(&self) -> usize {
        self.cached.load(Ordering::Relaxed)
    }

    /// Dirty records (parked ones included).
    pub(crate) fn dirty(&self) -> usize {
        self.dirty.load(Ordering::Relaxed)
    }

    /// Parked records: rejected by PostgreSQL, kept in memory and the WAL.
    pub(crate) fn parked(&self) -> usize {
        self.all_shards().map(|s| Self::read(s).parked.len()).sum()
    }

    fn account(&self, change: shard::Change) {
        apply_delta(&self.cached, change.cached);
        apply_delta(&self.dirty, change.dirty);
    }
}

/// The record if it holds a value: a tombstone reads as nothing.
#[inline]
fn live(record: &Record) -> Value {
    (!record.is_tombstone()).then(|| record.clone())
}

fn apply_delta(counter: &AtomicUsize, delta: isize) {
    match delta {
        0 => {}
        d if d > 0 => {
            counter.fetch_add(d.unsigned_abs(), Ordering::Relaxed);
        }
        d => {
            counter.fetch_sub(d.unsigned_abs(), Ordering::Relaxed);
        }
    }
}

/// A coarse clock in tenths of a second since the database opened: reading it is one
/// atomic load, so touching an entry on every hit costs next to nothing.
#[derive(Debug)]
pub(crate) struct Clock {
    start: std::time::Instant,
    now: AtomicU32,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self { start: std::time::Instant::now(), now: AtomicU32::new(0) }
    }

    /// The current tick, as of the last [`Clock::tick`].
    #[inline]
    pub(crate) fn now(&self) -> u32 {
        self.now.load(Ordering::Relaxed)
    }

    /// Advances the clock to the real time; called by the background task.
    pub(crate) fn tick(&self) -> u32 {
        let t = u32::try_from(self.start.elapsed().as_millis() / 100).unwrap_or(u32::MAX);
        self.now.fetch_max(t, Ordering::Relaxed);
        t
    }

    /// Ticks in a duration.
    pub(crate) fn ticks(d: std::time::Duration) -> u32 {
        u32::try_from(d.as_millis() / 100).unwrap_or(u32::MAX)
    }
}
