//! The registry of logical tables: name, schema, records in memory, PostgreSQL state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use memdb_wal::Lsn;

use crate::cache::Cache;
use crate::schema::Schema;

/// One logical table.
pub(crate) struct Table {
    pub name: String,
    /// Read on every write: a lock-free snapshot, replaced whole by `set_schema`.
    schema: ArcSwap<Schema>,
    pub cache: Cache,
    /// Whether PostgreSQL has this table (its DDL ran since the last schema change).
    pg_ready: AtomicBool,
    /// LSN of the create-table record PostgreSQL has not seen yet (0 when ready): the WAL
    /// must keep it until then.
    pending_create: AtomicU64,
}

impl Table {
    pub(crate) fn schema(&self) -> arc_swap::Guard<Arc<Schema>> {
        self.schema.load()
    }

    pub(crate) fn set_schema(&self, schema: Schema, create_lsn: Lsn) {
        self.schema.store(Arc::new(schema));
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

    /// The lowest LSN the WAL must keep for this table (`None`: no floor of its own).
    pub(crate) fn wal_floor(&self) -> Result<Option<Lsn>, crate::cache::BatchesOut> {
        Ok([self.cache.min_dirty_lsn()?, self.pending_create()].into_iter().flatten().min())
    }
}

/// All tables by name: looked up on every read and write, created rarely and never
/// removed. Readers follow one atomic pointer to an immutable snapshot (no lock, no
/// reference count); creating a table publishes a new snapshot.
///
/// Invariant: `current` points at the last snapshot in `published`. Snapshots are only
/// ever appended there and dropped with the registry, so a `&TableMap` obtained through
/// `&self` stays valid for as long as that borrow.
pub(crate) struct Tables {
    current: AtomicPtr<TableMap>,
    published: Mutex<Vec<Arc<TableMap>>>,
}

type TableMap = HashMap<Box<str>, Arc<Table>, foldhash::fast::RandomState>;

impl Default for Tables {
    fn default() -> Self {
        let first = Arc::new(TableMap::default());
        let current = AtomicPtr::new(Arc::as_ptr(&first).cast_mut());
        Self { current, published: Mutex::new(vec![first]) }
    }
}

impl Tables {
    #[inline]
    fn snapshot(&self) -> &TableMap {
        // SAFETY: `current` always points at a snapshot held by `published` (see the
        // type's invariant), never freed before `self` drops; snapshots are never mutated
        // (only shared references are made), and the Acquire load pairs with the Release
        // store that published it.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// Runs `f` on the table named `name`, if it exists, without cloning its handle.
    #[inline]
    pub(crate) fn with<R>(&self, name: &str, f: impl FnOnce(&Arc<Table>) -> R) -> Option<R> {
        self.snapshot().get(name).map(f)
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Table>> {
        self.with(name, Arc::clone)
    }

    /// The table named `name`, created in memory with `schema` if missing. Returns it
    /// and whether it was created.
    pub(crate) fn get_or_insert(&self, name: &str, schema: Schema, pg_ready: bool) -> (Arc<Table>, bool) {
        if let Some(t) = self.get(name) {
            return (t, false);
        }
        let mut published = self.published.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = self.get(name) {
            return (t, false);
        }
        let table = Arc::new(Table {
            name: name.to_owned(),
            schema: ArcSwap::from_pointee(schema),
            cache: Cache::new(),
            pg_ready: AtomicBool::new(pg_ready),
            pending_create: AtomicU64::new(0),
        });
        let mut next = self.snapshot().clone();
        next.insert(name.into(), Arc::clone(&table));
        let next = Arc::new(next);
        self.current.store(Arc::as_ptr(&next).cast_mut(), Ordering::Release);
        published.push(next);
        (table, true)
    }

    pub(crate) fn all(&self) -> Vec<Arc<Table>> {
        let mut all: Vec<_> = self.snapshot().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub(crate) fn dirty(&self) -> usize {
        self.snapshot().values().map(|t| t.cache.dirty()).sum()
    }

    /// Dirty records the flush will try: parked ones wait for their next write.
    pub(crate) fn awaiting_flush(&self) -> usize {
        self.snapshot().values().map(|t| t.cache.dirty().saturating_sub(t.cache.parked())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_created_concurrently_are_all_found_and_created_once() {
        let tables = Tables::default();
        let created = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (tables, created) = (&tables, &created);
                s.spawn(move || {
                    for i in 0..50 {
                        // Every thread creates the same 50 names, in different orders.
                        let name = format!("t{}", (i * (t + 1)) % 50);
                        let (table, new) = tables.get_or_insert(&name, Schema::default(), false);
                        assert_eq!(table.name, name);
                        created.fetch_add(usize::from(new), Ordering::Relaxed);
                        assert!(tables.with(&name, |found| Arc::ptr_eq(found, &table)).unwrap_or(false));
                    }
                });
            }
        });
        assert_eq!(created.load(Ordering::Relaxed), 50, "each name created exactly once");
        assert_eq!(tables.all().len(), 50);
        assert!(tables.get("missing").is_none());
    }
}
