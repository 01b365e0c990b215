//! One shard of a table's map: the slots, and the lists of dirty and parked keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

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

#[derive(Default)]
pub(super) struct Shard {
    pub map: HashMap<Arc<str>, Slot, foldhash::fast::RandomState>,
    /// Keys of dirty slots not yet handed to the flusher.
    pub dirty: Vec<Arc<str>>,
    /// Keys of parked slots.
    pub parked: Vec<Arc<str>>,
    /// Bumped whenever a slot is removed, so a racing load can tell (see `Cache::load`).
    pub epoch: u64,
}

impl Shard {
    /// Sets a slot dirty with a new value and LSN.
    pub(super) fn put_dirty(&mut self, key: &str, value: Value, lsn: Lsn, now: u32) -> Change {
        if let Some(slot) = self.map.get_mut(key) {
            let was = slot.state;
            slot.value = value;
            slot.lsn = lsn;
            slot.state = State::Dirty;
            slot.touch(now);
            match was {
                State::Dirty => {}
                State::Clean => {
                    if let Some((k, _)) = self.map.get_key_value(key) {
                        self.dirty.push(Arc::clone(k));
                    }
                    return Change { cached: 0, dirty: 1 };
                }
                State::Parked => {
                    // A new value gets a new chance: off the parked list, onto the dirty one.
                    if let Some(i) = self.parked.iter().position(|k| &**k == key) {
                        let k = self.parked.swap_remove(i);
                        self.dirty.push(k);
                    }
                }
            }
            return Change::default();
        }
        let key: Arc<str> = Arc::from(key);
        self.dirty.push(Arc::clone(&key));
        self.map.insert(key, Slot { value, lsn, state: State::Dirty, last_access: AtomicU32::new(now) });
        Change { cached: 1, dirty: 1 }
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

    pub(super) fn evict_older_than(&mut self, cutoff: u32) -> usize {
        let before = self.map.len();
        self.map.retain(|_, slot| slot.state != State::Clean || slot.accessed() >= cutoff);
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
