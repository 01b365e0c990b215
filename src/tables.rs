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
    /// must keep it until then. While a create is logged it holds an LSN at or below the
    /// record's, so a WAL truncation running meanwhile keeps the record too.
    pending_create: AtomicU64,
    /// LSN of the create record that set the schema (0: unknown, learnt from
    /// PostgreSQL): replay and the local catalogue keep the newest.
    schema_lsn: AtomicU64,
    /// ⚑ Held to change the schema with `pending_create` and `pg_ready`, and to read them
    /// together: the DDL sent and the create record it marks as seen always match.
    creating: Mutex<()>,
}

impl Table {
    pub(crate) fn schema(&self) -> arc_swap::Guard<Arc<Schema>> {
        self.schema.load()
    }

    fn creating(&self) -> std::sync::MutexGuard<'_, ()> {
        self.creating.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the schema logged at `create_lsn` (replay, or [`Table::log_schema`]).
    pub(crate) fn set_schema(&self, schema: Schema, create_lsn: Lsn) {
        self.schema.store(Arc::new(schema));
        self.schema_lsn.store(create_lsn, Ordering::Release);
        self.pending_create.store(create_lsn, Ordering::Release);
        self.pg_ready.store(false, Ordering::Release);
    }

    /// Logs a schema through `append` (which returns the create record's LSN), then sets
    /// it. `hint` is an LSN at or below the one the record gets: it holds the WAL floor
    /// while the record is appended, so no lock against the flusher is needed. Creates
    /// of one table are serialised, so the later record's schema wins.
    pub(crate) fn log_schema<E>(
        &self,
        schema: Schema,
        hint: Lsn,
        append: impl FnOnce() -> Result<Lsn, E>,
    ) -> Result<Lsn, E> {
        let _creating = self.creating();
        let before = self.pending_create.load(Ordering::Acquire);
        let floor = if before == 0 { hint } else { before.min(hint) };
        self.pending_create.store(floor, Ordering::Release);
        match append() {
            Ok(lsn) => {
                self.set_schema(schema, lsn);
                Ok(lsn)
            }
            Err(e) => {
                self.pending_create.store(before, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Sets the schema recovered from a create record at `create_lsn` (the WAL's, or the
    /// local catalogue's) unless the table holds a newer one; PostgreSQL gets it next.
    pub(crate) fn recover_schema(&self, schema: Schema, create_lsn: Lsn) {
        let _creating = self.creating();
        if create_lsn > self.schema_lsn.load(Ordering::Acquire) {
            self.set_schema(schema, create_lsn);
        }
    }

    /// Takes PostgreSQL's schema for a table whose create record is no longer known
    /// here (a WAL directory without a catalogue): a known one keeps its own.
    pub(crate) fn adopt_schema(&self, schema: Schema) {
        let _creating = self.creating();
        if self.schema_lsn.load(Ordering::Acquire) == 0 {
            self.schema.store(Arc::new(schema));
        }
    }

    /// The schema and the LSN of the create record that set it.
    pub(crate) fn schema_with_lsn(&self) -> (Arc<Schema>, Lsn) {
        let _creating = self.creating();
        (self.schema.load_full(), self.schema_lsn.load(Ordering::Acquire))
    }

    pub(crate) fn pg_ready(&self) -> bool {
        self.pg_ready.load(Ordering::Acquire)
    }

    /// What PostgreSQL still needs: the LSN of the create record and its schema, read
    /// together; `None` when PostgreSQL has the table.
    pub(crate) fn pending(&self) -> Option<(Lsn, Arc<Schema>)> {
        if self.pg_ready() {
            return None;
        }
        let _creating = self.creating();
        (!self.pg_ready()).then(|| (self.pending_create.load(Ordering::Acquire), self.schema.load_full()))
    }

    /// Records that PostgreSQL has the table as of the create record at `lsn` (from
    /// [`Table::pending`]); a newer create since keeps it pending.
    pub(crate) fn mark_pg_ready(&self, lsn: Lsn) {
        let _creating = self.creating();
        if self.pending_create.load(Ordering::Acquire) == lsn {
            self.pending_create.store(0, Ordering::Release);
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
            schema_lsn: AtomicU64::new(0),
            creating: Mutex::new(()),
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
