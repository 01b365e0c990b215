//! The registry of logical tables: name, schema, records in memory, PostgreSQL state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use memdb_wal::Lsn;

use crate::cache::Cache;
use crate::schema::Schema;

/// One logical table.
pub(crate) struct Table {
    pub name: String,
    schema: RwLock<Arc<Schema>>,
    pub cache: Cache,
    /// Whether PostgreSQL has this table (its DDL ran since the last schema change).
    pg_ready: AtomicBool,
    /// LSN of the create-table record PostgreSQL has not seen yet (0 when ready): the WAL
    /// must keep it until then.
    pending_create: AtomicU64,
}

impl Table {
    pub(crate) fn schema(&self) -> Arc<Schema> {
        Arc::clone(&self.schema.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn set_schema(&self, schema: Schema, create_lsn: Lsn) {
        *self.schema.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(schema);
        self.pending_create.store(create_lsn, Ordering::Release);
        self.pg_ready.store(false, Ordering::Release);
    }

    pub(crate) fn pg_ready(&self) -> bool {
        self.pg_ready.load(Ordering::Acquire)
    }

    /// Records that PostgreSQL has the table as of the create record at `lsn`.
    pub(crate) fn mark_pg_ready(&self, lsn: Lsn) {
        if self.pending_create.compare_exchange(lsn, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.pg_ready.store(true, Ordering::Release);
        }
    }

    pub(crate) fn pending_create(&self) -> Option<Lsn> {
        Some(self.pending_create.load(Ordering::Acquire)).filter(|&l| l > 0)
    }

    /// The lowest LSN the WAL must keep for this table.
    pub(crate) fn wal_floor(&self) -> Option<Lsn> {
        [self.cache.min_dirty_lsn(), self.pending_create()].into_iter().flatten().min()
    }
}

/// All tables by name.
#[derive(Default)]
pub(crate) struct Tables {
    map: RwLock<HashMap<String, Arc<Table>>>,
}

impl Tables {
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Table>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// The table named `name`, created in memory with `schema` if missing. Returns it
    /// and whether it was created.
    pub(crate) fn get_or_insert(&self, name: &str, schema: Schema, pg_ready: bool) -> (Arc<Table>, bool) {
        if let Some(t) = self.get(name) {
            return (t, false);
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = map.get(name) {
            return (Arc::clone(t), false);
        }
        let table = Arc::new(Table {
            name: name.to_owned(),
            schema: RwLock::new(Arc::new(schema)),
            cache: Cache::new(),
            pg_ready: AtomicBool::new(pg_ready),
            pending_create: AtomicU64::new(0),
        });
        map.insert(name.to_owned(), Arc::clone(&table));
        (table, true)
    }

    pub(crate) fn all(&self) -> Vec<Arc<Table>> {
        let mut all: Vec<_> = self.map.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub(crate) fn dirty(&self) -> usize {
        self.map.read().unwrap_or_else(PoisonError::into_inner).values().map(|t| t.cache.dirty()).sum()
    }
}
