//! One shard of a table's map: the slots, and the lists of dirty and parked keys.

use std::sync::atomic::{AtomicU32, Ordering};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use memdb_wal::Lsn;

use super::{Dirty, Hasher, Key};
use crate::record::Record;
use crate::text::{Text, same};

/// One record in memory: the table stores slots whole, found by the key's hash.
pub(super) struct Slot {
    /// The key and the value (or tombstone), one pointer to one allocation.
    pub record: Record,
    /// The key's hash, so the table grows without reading every record.
    hash: u64,
    pub lsn: Lsn,
    /// Tick of the last read or write (see `Clock`).
    last_access: AtomicU32,
    pub state: State,
}

// The record, the hash, the LSN, the tick and the state: 32 bytes, two slots per line.
const _: () = assert!(std::mem::size_of::<Slot>() == 32);

/// Where a slot stands with the flusher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// PostgreSQL holds this LSN's value; may be evicted.
    Clean,
    /// Newer than PostgreSQL; on the dirty list or with the flusher.
    Dirty,
    /// Newer than PostgreSQL, and PostgreSQL rejected it: on the parked list.
    Parked,
}

impl Slot {
    #[inline]
    pub(super) fn touch(&self, now: u32) {
        // A plain store: concurrent readers may race, any of their ticks is fine.
        if self.last_access.load(Ordering::Relaxed) != now {
            self.last_access.store(now, Ordering::Relaxed);
        }
    }

    fn accessed(&self) -> u32 {
        self.last_access.load(Ordering::Relaxed)
    }
}

/// A key as a write brings it: borrowed, or already in the [`Text`] the dirty list keeps.
pub(super) trait KeyText {
    fn as_str(&self) -> &str;
    fn into_text(self) -> Text;
}

impl KeyText for &str {
    fn as_str(&self) -> &str {
        self
    }

    fn into_text(self) -> Text {
        Text::from(self)
    }
}

impl KeyText for Text {
    fn as_str(&self) -> &str {
        self
    }

    fn into_text(self) -> Text {
        self
    }
}

/// Changes to the table-wide counters caused by one shard operation.
#[derive(Default)]
pub(super) struct Change {
    pub cached: isize,
    pub dirty: isize,
}

/// The lock and the table's header come first, so a lookup reads one cache line of the
/// shard (the cache aligns each shard to its own lines).
#[repr(C)]
pub(super) struct Shard {
    map: HashTable<Slot>,
    /// Bumped whenever a slot is removed, so a racing load can tell (see `Cache::load`).
    pub epoch: u64,
    /// No clean slot was accessed before this tick (`u32::MAX`: no clean slot). Access
    /// times only grow, so the bound stays true until a slot becomes clean; it lets the
    /// eviction sweep skip a shard with nothing idle instead of scanning it.
    pub clean_floor: u32,
    /// Keys of dirty slots not yet handed to the flusher.
    pub dirty: Vec<Text>,
    /// Keys of parked slots.
    pub parked: Vec<Text>,
}

impl Default for Shard {
    fn default() -> Self {
        Self { map: HashTable::new(), epoch: 0, clean_floor: u32::MAX, dirty: Vec::new(), parked: Vec::new() }
    }
}

fn rehash(slot: &Slot) -> u64 {
    slot.hash
}

fn holds(key: Key<'_>) -> impl Fn(&Slot) -> bool + '_ {
    move |s| s.hash == key.hash && same(s.record.key(), key.text)
}

impl Shard {
    #[inline]
    pub(super) fn get(&self, key: Key<'_>) -> Option<&Slot> {
        self.map.find(key.hash, holds(key))
    }

    fn get_mut(&mut self, key: Key<'_>) -> Option<&mut Slot> {
        self.map.find_mut(key.hash, holds(key))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }

    /// Sets a slot dirty with a new record (of `key`) and LSN: one hash probe, new key
    /// or not.
    pub(super) fn put_dirty(&mut self, key: Key<'_>, record: Record, lsn: Lsn, now: u32) -> Change {
        debug_assert_eq!(record.key(), key.text);
        self.put_dirty_unless(key.hash, key.text, record, lsn, now, |_| false)
    }

    /// As [`Shard::put_dirty`] (`hash` is `key`'s, and `key` the record's), unless `keep`
    /// says the slot found stays as it is. A `key` already in a [`Text`] goes onto the
    /// dirty list as it is: the record itself is not read (a replay's records are no
    /// longer in the cache when they are applied).
    pub(super) fn put_dirty_unless(
        &mut self,
        hash: u64,
        key: impl KeyText,
        record: Record,
        lsn: Lsn,
        now: u32,
        keep: impl Fn(&Slot) -> bool,
    ) -> Change {
        match self.map.entry(hash, holds(Key { hash, text: key.as_str() }), rehash) {
            Entry::Occupied(entry) if keep(entry.get()) => Change::default(),
            Entry::Occupied(mut entry) => {
                let slot = entry.get_mut();
                let was = slot.state;
                slot.record = record;
                slot.lsn = lsn;
                slot.state = State::Dirty;
                slot.touch(now);
                match was {
                    State::Dirty => Change::default(),
                    State::Clean => {
                        self.dirty.push(key.into_text());
                        Change { cached: 0, dirty: 1 }
                    }
                    // A parked slot got a new value, and with it a new chance: off the
                    // parked list, onto the dirty one.
                    State::Parked => {
                        if let Some(i) = self.parked.iter().position(|k| &**k == key.as_str()) {
                            let k = self.parked.swap_remove(i);
                            self.dirty.push(k);
                        }
                        Change::default()
                    }
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(Slot { record, hash, lsn, last_access: AtomicU32::new(now), state: State::Dirty });
                self.dirty.push(key.into_text());
                Change { cached: 1, dirty: 1 }
            }
        }
    }

    /// Moves up to `max` dirty records to `out`, off the list.
    pub(super) fn take_dirty(&mut self, hasher: &Hasher, max: usize, out: &mut Vec<Dirty>) {
        let n = max.min(self.dirty.len());
        for key in self.dirty.drain(..n) {
            let found = hasher.key(&key);
            if let Some(slot) = self.map.find(found.hash, holds(found)) {
                out.push(Dirty { record: slot.record.clone(), lsn: slot.lsn, key });
            }
        }
    }

    /// `superseded`: PostgreSQL kept a newer row than this record, so memory must not
    /// keep the record's value as if it were PostgreSQL's.
    pub(super) fn mark_flushed(&mut self, key: Key<'_>, r: &Dirty, superseded: bool) -> Change {
        let Some(slot) = self.map.find_mut(key.hash, holds(key)) else { return Change::default() };
        if slot.lsn != r.lsn {
            // A write raced the flush: still dirty, back on the list unless parked meanwhile.
            if slot.state == State::Dirty {
                self.dirty.push(r.key.clone());
            }
            return Change::default();
        }
        if slot.record.is_tombstone() || superseded {
            if let Ok(entry) = self.map.find_entry(key.hash, holds(key)) {
                entry.remove();
            }
            self.epoch += 1;
            return Change { cached: -1, dirty: -1 };
        }
        slot.state = State::Clean;
        self.clean_floor = self.clean_floor.min(slot.accessed());
        Change { cached: 0, dirty: -1 }
    }

    pub(super) fn restore(&mut self, key: Key<'_>, r: &Dirty, park: bool) {
        let Some(slot) = self.get_mut(key) else { return };
        if slot.state != State::Dirty {
            return;
        }
        // Park only the value PostgreSQL rejected; a newer one raced in gets its chance.
        if park && slot.lsn == r.lsn {
            slot.state = State::Parked;
            self.parked.push(r.key.clone());
        } else {
            self.dirty.push(r.key.clone());
        }
    }

    pub(super) fn min_dirty_lsn(&self, hasher: &Hasher) -> Option<Lsn> {
        self.dirty.iter().chain(&self.parked).filter_map(|k| self.get(hasher.key(k))).map(|s| s.lsn).min()
    }

    /// Keys of dirty and parked slots whose LSN is in `lsns`.
    pub(super) fn dirty_keys_in(&self, hasher: &Hasher, lsns: &std::ops::RangeInclusive<Lsn>, out: &mut Vec<Text>) {
        let found = self
            .dirty
            .iter()
            .chain(&self.parked)
            .filter(|k| self.get(hasher.key(k)).is_some_and(|s| lsns.contains(&s.lsn)));
        out.extend(found.cloned());
    }

    /// Whether a clean slot may have been idle since before `cutoff`.
    pub(super) fn may_hold_idle(&self, cutoff: u32) -> bool {
        self.clean_floor < cutoff
    }

    /// Inserts a clean slot (a record loaded from PostgreSQL); the key must be absent.
    pub(super) fn put_clean(&mut self, key: Key<'_>, record: Record, lsn: Lsn, now: u32) {
        debug_assert_eq!(record.key(), key.text);
        let slot = Slot { record, hash: key.hash, lsn, last_access: AtomicU32::new(now), state: State::Clean };
        self.map.insert_unique(key.hash, slot, rehash);
        self.clean_floor = self.clean_floor.min(now);
    }

    pub(super) fn evict_older_than(&mut self, cutoff: u32) -> usize {
        if !self.may_hold_idle(cutoff) {
            return 0;
        }
        let before = self.map.len();
        let mut floor = u32::MAX;
        self.map.retain(|slot| {
            let keep = slot.state != State::Clean || slot.accessed() >= cutoff;
            if keep && slot.state == State::Clean {
                floor = floor.min(slot.accessed());
            }
            keep
        });
        self.clean_floor = floor;
        let evicted = before - self.map.len();
        if evicted > 0 {
            self.epoch += 1;
        }
        evicted
    }

    pub(super) fn sample_access_times(&self, n: usize, out: &mut Vec<u32>) {
        out.extend(self.map.iter().filter(|s| s.state == State::Clean).take(n).map(Slot::accessed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirty(key: &str, lsn: Lsn) -> Dirty {
        Dirty { key: Text::from(key), record: Record::put(key, "{}"), lsn }
    }

    #[test]
    fn the_eviction_sweep_skips_a_shard_with_nothing_idle_and_still_evicts_what_is() {
        let h = Hasher::default();
        let mut shard = Shard::default();
        assert!(!shard.may_hold_idle(u32::MAX - 1), "an empty shard holds nothing idle");
        shard.put_dirty(h.key("a"), Record::put("a", "{}"), 1, 5);
        assert_eq!(shard.evict_older_than(100), 0, "dirty slots are never evicted");
        let mut taken = Vec::new();
        shard.take_dirty(&h, 10, &mut taken);
        assert_eq!(taken.len(), 1);
        shard.mark_flushed(h.key("a"), &dirty("a", 1), false);
        assert!(!shard.may_hold_idle(5), "clean since tick 5: nothing idle before it");
        assert_eq!(shard.evict_older_than(5), 0);
        shard.put_clean(h.key("b"), Record::put("b", "{}"), 2, 9);
        assert_eq!(shard.evict_older_than(6), 1, "`a` (tick 5) goes, `b` (tick 9) stays");
        assert!(shard.get(h.key("b")).is_some() && shard.get(h.key("a")).is_none());
        assert!(!shard.may_hold_idle(9) && shard.may_hold_idle(10), "the floor is now `b`'s tick");
        assert_eq!(shard.evict_older_than(10), 1);
        assert!(shard.len() == 0 && !shard.may_hold_idle(u32::MAX - 1));
    }

    #[test]
    fn slots_are_found_by_their_key_across_growth_and_removal() {
        let h = Hasher::default();
        let mut shard = Shard::default();
        let keys: Vec<String> = (0..1000).map(|i| format!("k:{i}")).collect();
        for (lsn, k) in (1..).zip(&keys) {
            shard.put_dirty(h.key(k), Record::put(k, &format!("{{\"k\":\"{k}\"}}")), lsn, 0);
        }
        let mut taken = Vec::new();
        shard.take_dirty(&h, usize::MAX, &mut taken);
        assert_eq!(taken.len(), 1000);
        for r in &taken {
            // Every other record is a superseded one: it leaves memory.
            let gone = r.lsn % 2 == 0;
            shard.mark_flushed(h.key(&r.key), r, gone);
        }
        for (lsn, k) in (1..).zip(&keys) {
            let found = shard.get(h.key(k)).map(|s| s.record.value().map(str::to_owned));
            let expected = (lsn % 2 == 1).then(|| Some(format!("{{\"k\":\"{k}\"}}")));
            assert_eq!(found, expected, "{k}");
        }
        assert_eq!(shard.len(), 500);
    }
}
