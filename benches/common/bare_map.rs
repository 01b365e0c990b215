//! The bare concurrent map: the limit for memdb's cache, with nothing else.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError, RwLock};

/// Shards of the bare map: the engine's count.
pub const SHARDS: usize = 128;

/// One shard of the bare map: what memdb's cache is, without the WAL and the bookkeeping.
pub type BareShard = HashMap<Arc<str>, Arc<str>, foldhash::fast::RandomState>;

/// The limit for reads: the engine's sharding idea with nothing else.
pub struct BareMap {
    shards: Box<[RwLock<BareShard>]>,
    hasher: foldhash::fast::RandomState,
}

impl BareMap {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    pub fn shard(&self, key: &str) -> &RwLock<HashMap<Arc<str>, Arc<str>, foldhash::fast::RandomState>> {
        &self.shards[(self.hasher.hash_one(key) >> 32) as usize % SHARDS]
    }

    pub fn get(&self, key: &str) -> Option<Arc<str>> {
        self.shard(key).read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    pub fn insert(&self, key: &str, value: &str) {
        let value: Arc<str> = Arc::from(value);
        self.shard(key).write().unwrap_or_else(PoisonError::into_inner).insert(Arc::from(key), value);
    }

    pub fn remove(&self, key: &str) -> bool {
        self.shard(key).write().unwrap_or_else(PoisonError::into_inner).remove(key).is_some()
    }
}
