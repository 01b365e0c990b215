//! Replay into the maps: records read from the WAL are gathered by shard, then applied
//! a shard at a time under one lock each.
//!
//! Why not one insert per record as it is read: a table's shards together are far larger
//! than a core's cache, so inserting in log order misses the cache on nearly every
//! record. A shard's records applied together touch one shard's table (a few hundred KB
//! at 1M records), which stays in cache while they go in; and the key for the dirty list
//! is copied while gathering, when the record was just read, so applying a new key never
//! reads the record again (measured: applying took 3× as long when it did).
//!
//! Order does not matter: a record goes in only if its LSN is above its slot's, so the
//! highest LSN wins per key whatever order records are applied in — several readers
//! may apply parts of the log at once, and a reader need not wait for the one before.
//!
//! Except on the dirty lists: the flush takes from their fronts, and the WAL can only be
//! truncated below the lowest dirty LSN, so a list should run in LSN order — as it does
//! when the log is replayed in order. A reader's newly dirty keys are therefore held
//! back ([`Gathered`] keeps them) and listed by [`Cache::list_gathered`] once every
//! reader is done, oldest part of the log first. Until then (open has not returned, no
//! flush runs) those dirty slots are on no list.

use memdb_wal::Lsn;

use super::{Cache, SHARDS};
use crate::record::Record;
use crate::text::Text;

/// Records of one table read from the WAL and not yet applied, by shard; and the keys
/// the applied ones made dirty, not yet on their shard's dirty list.
pub(crate) struct Gathered {
    shards: Vec<Vec<Replayed>>,
    listed: Vec<Vec<Text>>,
}

/// A record, its key (a copy made while the key was in cache, for the dirty list) and
/// the key's hash.
struct Replayed {
    hash: u64,
    key: Text,
    record: Record,
    lsn: Lsn,
}

impl Gathered {
    pub(crate) fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| Vec::new()).collect(), listed: (0..SHARDS).map(|_| Vec::new()).collect() }
    }
}

impl Cache {
    /// Adds a record read from the WAL to `gathered`, for [`Cache::apply_gathered`].
    pub(crate) fn gather(&self, gathered: &mut Gathered, record: Record, lsn: Lsn) {
        let key = record.key();
        let hash = self.hasher.key(key).hash;
        if let Some(shard) = gathered.shards.get_mut(Self::shard_index(hash)) {
            shard.push(Replayed { hash, key: Text::from(key), record, lsn });
        }
    }

    /// Applies and empties `gathered` (which this cache gathered), a shard at a time
    /// starting at shard `first` (readers applying at once start apart): each record
    /// becomes its slot's dirty record if its LSN is above the slot's.
    pub(crate) fn apply_gathered(&self, gathered: &mut Gathered, first: usize, now: u32) {
        let (mut cached, mut dirty) = (0, 0);
        for i in (first..first + SHARDS).map(|i| i % SHARDS) {
            let (Some(records), Some(listed), Some(shard)) =
                (gathered.shards.get_mut(i), gathered.listed.get_mut(i), self.shards.get(i))
            else {
                continue;
            };
            if records.is_empty() {
                continue;
            }
            let mut shard = Self::write_lock(&shard.0);
            let before = shard.dirty.len();
            for r in records.drain(..) {
                let change = shard.put_dirty_unless(r.hash, r.key, r.record, r.lsn, now, |slot| slot.lsn >= r.lsn);
                cached += change.cached;
                dirty += change.dirty;
            }
            // Held back until the readers of older parts of the log have listed theirs.
            listed.extend(shard.dirty.drain(before..));
        }
        self.account(super::shard::Change { cached, dirty });
    }

    /// Puts the keys `gathered`'s records made dirty on their shards' dirty lists, after
    /// what is there: called for each reader's part of the log, oldest first.
    pub(crate) fn list_gathered(&self, gathered: Gathered) {
        for (listed, shard) in gathered.listed.into_iter().zip(self.shards.iter()) {
            if !listed.is_empty() {
                Self::write_lock(&shard.0).dirty.extend(listed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::drill::rng::Rng;

    /// Records over few keys (puts and tombstones, LSNs rising) cut into chunks, the
    /// chunks applied in a random order: every key ends with its newest record, dirty,
    /// on the dirty list once.
    #[test]
    fn chunks_applied_in_any_order_leave_each_key_its_newest_record() {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        println!("seed {seed}");
        let mut rng = Rng(seed);
        for _ in 0..20 {
            let cache = Cache::new();
            let mut newest: HashMap<String, (Option<String>, Lsn)> = HashMap::new();
            let mut chunks: Vec<Gathered> = Vec::new();
            for lsn in 1..=1 + rng.below(3_000) {
                if chunks.is_empty() || rng.below(100) == 0 {
                    chunks.push(Gathered::new());
                }
                let key = format!("k{}", rng.below(300));
                let value = (rng.below(5) > 0).then(|| format!("{{\"lsn\":{lsn}}}"));
                let record = Record::new(&key, value.as_deref());
                let Some(chunk) = chunks.last_mut() else { unreachable!("pushed above") };
                cache.gather(chunk, record, lsn);
                newest.insert(key, (value, lsn));
            }
            let mut applied = Vec::new();
            while !chunks.is_empty() {
                let mut chunk = chunks.swap_remove(rng.below(chunks.len() as u64) as usize);
                cache.apply_gathered(&mut chunk, rng.below(SHARDS as u64) as usize, 0);
                applied.push(chunk);
            }
            for chunk in applied {
                cache.list_gathered(chunk);
            }
            for (key, (value, lsn)) in &newest {
                let found = cache.peek(key).map(|(v, l)| (v.and_then(|r| r.value().map(str::to_owned)), l));
                assert_eq!(found, Some((value.clone(), *lsn)), "seed {seed}: {key}");
            }
            assert_eq!((cache.cached(), cache.dirty()), (newest.len(), newest.len()), "seed {seed}");
            let batch = cache.take_dirty(usize::MAX);
            let mut listed: Vec<&str> = batch.records().iter().map(|r| &*r.key).collect();
            listed.sort_unstable();
            listed.dedup();
            assert_eq!((listed.len(), batch.len()), (newest.len(), newest.len()), "seed {seed}: listed once each");
        }
    }
}
