//! One shard of a table's map: the slots, and the lists of dirty and parked keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hashbrown::hash_map::EntryRef;
use memdb_wal::Lsn;

use super::{Dirty, Value};

/// One record in memory.
pub(super) struct Slot {
    pub value: Value,
    pub lsn: Lsn,
    pub state: State,
    /// Tick of the last read or write (see `Clock`).
    last_access: AtomicU32,
}

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
    pub(super) fn clean(value: Value, lsn: Lsn, now: u32) -> Self {
        Self { value, lsn, state: State::Clean, last_access: AtomicU32::new(now) }
    }

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

/// Changes to the table-wide counters caused by one shard operation.
#[derive(Default)]
pub(super) struct Change {
    pub cached: isize,
    pub dirty: isize,
}

pub(super) struct Shard {
    pub map: hashbrown::HashMap<Arc<str>, Slot, foldhash::fast::RandomState>,
    /// Keys of dirty slots not yet handed to the flusher.
    pub dirty: Vec<Arc<str>>,
    /// Keys of parked slots.
    pub parked: Vec<Arc<str>>,
    /// Bumped whenever a slot is removed, so a racing load can tell (see `Cache::load`).
    pub epoch: u64,
    /// No clean slot was accessed before this tick (`u32::MAX`: no clean slot). Access
    /// times only grow, so the bound stays true until a slot becomes clean; it lets the
    /// eviction sweep skip a shard with nothing idle instead of scanning it.
    pub clean_floor: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Self {
            map: hashbrown::HashMap::default(),
            dirty: Vec::new(),
            parked: Vec::new(),
            epoch: 0,
            clean_floor: u32::MAX,
        }
    }
}

impl Shard {
    /// Sets a slot dirty with a new value and LSN (one hash probe, new key or not).
    pub(super) fn put_dirty(&mut self, key: &str, value: Value, lsn: Lsn, now: u32) -> Change {
        let vacant = match self.map.entry_ref(key) {
            EntryRef::Occupied(mut entry) => {
                let slot = entry.get_mut();
                let was = slot.state;
                slot.value = value;
                slot.lsn = lsn;
                slot.state = State::Dirty;
                slot.touch(now);
                match was {
                    State::Dirty => return Change::default(),
                    State::Clean => {
                        self.dirty.push(Arc::clone(entry.key()));
                        return Change { cached: 0, dirty: 1 };
                    }
                    State::Parked => {}
                }
                return self.unpark(key);
            }
            EntryRef::Vacant(entry) => entry,
        };
        let key: Arc<str> = Arc::from(key);
        self.dirty.push(Arc::clone(&key));
        vacant.insert_with_key(key, Slot { value, lsn, state: State::Dirty, last_access: AtomicU32::new(now) });
        Change { cached: 1, dirty: 1 }
    }

    /// A parked slot got a new value, and with it a new chance: off the parked list,
    /// onto the dirty one.
    fn unpark(&mut self, key: &str) -> Change {
        if let Some(i) = self.parked.iter().position(|k| &**k == key) {
            let k = self.parked.swap_remove(i);
            self.dirty.push(k);
        }
        Change::default()
    }

    pub(super) fn take_dirty(&mut self, max: usize, out: &mut Vec<Dirty>) {
        let n = max.min(self.dirty.len());
        for key in self.dirty.drain(..n) {
            if let Some(slot) = self.map.get(&key) {
                out.push(Dirty { key, value: slot.value.clone(), lsn: slot.lsn });
            }
        }
    }

    /// `superseded`: PostgreSQL kept a newer row than this record, so memory must not
    /// keep the record's value as if it were PostgreSQL's.
    pub(super) fn mark_flushed(&mut self, r: &Dirty, superseded: bool) -> Change {
        let Some(slot) = self.map.get_mut(&r.key) else { return Change::default() };
        if slot.lsn != r.lsn {
            // A write raced the flush: still dirty, back on the list unless parked meanwhile.
            if slot.state == State::Dirty {
                self.dirty.push(Arc::clone(&r.key));
            }
            return Change::default();
        }
        if slot.value.is_none() || superseded {
            self.map.remove(&r.key);
            self.epoch += 1;
            return Change { cached: -1, dirty: -1 };
        }
        slot.state = State::Clean;
        self.clean_floor = self.clean_floor.min(slot.accessed());
        Change { cached: 0, dirty: -1 }
    }

    pub(super) fn restore(&mut self, r: &Dirty, park: bool) {
        let Some(slot) = self.map.get_mut(&r.key) else { return };
        if slot.state != State::Dirty {
            return;
        }
        // Park only the value PostgreSQL rejected; a newer one raced in gets its chance.
        if park && slot.lsn == r.lsn {
            slot.state = State::Parked;
            self.parked.push(Arc::clone(&r.key));
        } else {
            self.dirty.push(Arc::clone(&r.key));
        }
    }

    pub(super) fn min_dirty_lsn(&self) -> Option<Lsn> {
        self.dirty.iter().chain(&self.parked).filter_map(|k| self.map.get(k)).map(|s| s.lsn).min()
    }

    /// Whether a clean slot may have been idle since before `cutoff`.
    pub(super) fn may_hold_idle(&self, cutoff: u32) -> bool {
        self.clean_floor < cutoff
    }

    /// Inserts a clean slot (a record loaded from PostgreSQL).
    pub(super) fn put_clean(&mut self, key: &str, value: Value, lsn: Lsn, now: u32) {
        self.map.insert(Arc::from(key), Slot::clean(value, lsn, now));
        self.clean_floor = self.clean_floor.min(now);
    }

    pub(super) fn evict_older_than(&mut self, cutoff: u32) -> usize {
        if !self.may_hold_idle(cutoff) {
            return 0;
        }
        let before = self.map.len();
        let mut floor = u32::MAX;
        self.map.retain(|_, slot| {
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
        out.extend(self.map.values().filter(|s| s.state == State::Clean).take(n).map(Slot::accessed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirty(key: &str, lsn: Lsn) -> Dirty {
        Dirty { key: Arc::from(key), value: Some(Arc::from("{}")), lsn }
    }

    #[test]
    fn the_eviction_sweep_skips_a_shard_with_nothing_idle_and_still_evicts_what_is() {
        let mut shard = Shard::default();
        assert!(!shard.may_hold_idle(u32::MAX - 1), "an empty shard holds nothing idle");
        shard.put_dirty("a", Some(Arc::from("{}")), 1, 5);
        assert_eq!(shard.evict_older_than(100), 0, "dirty slots are never evicted");
        let mut taken = Vec::new();
        shard.take_dirty(10, &mut taken);
        shard.mark_flushed(&dirty("a", 1), false);
        assert!(!shard.may_hold_idle(5), "clean since tick 5: nothing idle before it");
        assert_eq!(shard.evict_older_than(5), 0);
        shard.put_clean("b", Some(Arc::from("{}")), 2, 9);
        assert_eq!(shard.evict_older_than(6), 1, "`a` (tick 5) goes, `b` (tick 9) stays");
        assert!(shard.map.contains_key("b") && !shard.map.contains_key("a"));
        assert!(!shard.may_hold_idle(9) && shard.may_hold_idle(10), "the floor is now `b`'s tick");
        assert_eq!(shard.evict_older_than(10), 1);
        assert!(shard.map.is_empty() && !shard.may_hold_idle(u32::MAX - 1));
    }
}
