//! memdb as a workload [`System`]: `insert` creates, `upsert` updates, `get`, `delete`.

use std::path::Path;

use memdb::{Durability, MemDb};
use tempfile::TempDir;

use super::System;
use crate::common::record::Call;
use crate::common::setup::config;

/// A database in its own WAL directory, with one table. Fields drop in order: the
/// database, then the directory.
pub struct MemdbSystem {
    pub db: MemDb,
    pub table: String,
    pub dir: TempDir,
}

impl MemdbSystem {
    /// Opens a fresh database under `root` and creates `table`.
    pub async fn open(dsn: &str, root: &Path, durability: Durability, table: &str) -> Self {
        let dir = tempfile::tempdir_in(root).expect("a WAL directory");
        let db = MemDb::open(config(dsn, dir.path(), durability)).await.expect("open memdb");
        db.create_table(table, &serde_json::json!({})).await.expect("create table");
        Self { db, table: table.to_owned(), dir }
    }
}

impl System for MemdbSystem {
    async fn put(&self, _lane: usize, key: &str, call: &Call, create: bool) {
        if create {
            self.db.insert(&self.table, key, call).await.expect("memdb insert");
        } else {
            self.db.upsert(&self.table, key, call).await.expect("memdb upsert");
        }
    }

    async fn get(&self, _lane: usize, key: &str) -> bool {
        self.db.get(&self.table, key).await.expect("memdb get").is_some()
    }

    async fn delete(&self, _lane: usize, key: &str) {
        self.db.delete(&self.table, key).await.expect("memdb delete");
    }
}
