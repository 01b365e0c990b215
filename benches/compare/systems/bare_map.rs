//! The bare sharded map as a workload [`System`]: the same operations with no WAL and no
//! PostgreSQL — the limit. Records are serialised as memdb serialises them.

use super::System;
use crate::common::bare_map::BareMap;
use crate::common::record::Call;

pub struct BareMapSystem(pub BareMap);

impl System for BareMapSystem {
    async fn put(&self, _lane: usize, key: &str, call: &Call, _create: bool) {
        self.0.insert(key, &serde_json::to_string(call).expect("serialise"));
    }

    async fn get(&self, _lane: usize, key: &str) -> bool {
        self.0.get(key).is_some()
    }

    async fn delete(&self, _lane: usize, key: &str) {
        self.0.remove(key);
    }
}
