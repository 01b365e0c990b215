//! The table catalogue kept in the WAL directory (the WAL's meta file): every table
//! with its schema and the LSN of the create record that set it. With it a restart
//! with PostgreSQL down knows every table and enforces the same schemas. ⚑ It is saved
//! before any WAL truncation that follows a change, so a truncation never forgets a
//! table or its schema.
//!
//! It also keeps the runs not yet checked against PostgreSQL's LSN floor (see
//! [`crate::connect`]): each open adds one — the first LSN it hands out and a random id —
//! saved before any of its writes is acknowledged. A run that never reaches PostgreSQL
//! leaves its entry, so the run that does knows which records of the WAL are writes to
//! move above PostgreSQL's rows, however many restarts lie between; and a copy of the
//! directory restored later knows, from the ids PostgreSQL recorded, which of those runs
//! were checked (and moved) elsewhere since.

use std::sync::{Arc, Mutex, PoisonError};

use memdb_wal::{Lsn, Wal};
use serde::{Deserialize, Serialize};

use crate::db::Inner;
use crate::error::{Error, Result};
use crate::schema::Schema;
use crate::tables::Tables;
use crate::validate;

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    tables: Vec<SavedTable>,
    #[serde(default)]
    unverified: Vec<Unverified>,
}

/// A run whose writes are not yet checked against PostgreSQL's LSN floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Unverified {
    /// The first LSN it handed out.
    pub since: Lsn,
    /// Its random id, recorded in PostgreSQL once checked.
    pub run: i64,
}

impl Unverified {
    /// A new run starting at `since`, with a random id.
    pub(crate) fn new(since: Lsn) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u64(since);
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        Self { since, run: hasher.finish() as i64 }
    }
}

#[derive(Serialize, Deserialize)]
struct SavedTable {
    name: String,
    schema: serde_json::Value,
    lsn: Lsn,
}

/// The catalogue of `tables` as the meta file's payload.
fn encode(tables: &Tables, unverified: Vec<Unverified>) -> Vec<u8> {
    let tables = tables
        .all()
        .iter()
        .map(|t| {
            let (schema, lsn) = t.schema_with_lsn();
            SavedTable { name: t.name.clone(), schema: schema.to_json(), lsn }
        })
        .collect();
    serde_json::to_vec(&Stored { version: VERSION, tables, unverified }).unwrap_or_default()
}

/// What [`load`] found.
pub(crate) struct Loaded {
    pub payload: Vec<u8>,
    pub unverified: Vec<Unverified>,
}

/// Loads the catalogue saved in `wal`'s directory into `tables` (PostgreSQL gets each
/// table again on its first flush). `None` when there is none: a directory that never
/// reached PostgreSQL.
pub(crate) fn load(wal: &Wal, tables: &Tables) -> Result<Option<Loaded>> {
    let Some(payload) = wal.read_meta()? else { return Ok(None) };
    let bad = |problem| Error::Wal(memdb_wal::Error::BadMeta { problem });
    let saved: Stored = serde_json::from_slice(&payload).map_err(|_| bad("not a memdb table catalogue"))?;
    if saved.version != VERSION {
        return Err(bad("a table catalogue of another version: open it with the memdb that wrote it"));
    }
    for t in saved.tables {
        validate::table_name(&t.name)?;
        let schema = Schema::from_json(&t.name, &t.schema)?;
        // A schema learnt from PostgreSQL (LSN 0) is set by the insert alone.
        let (table, _) = tables.get_or_insert(&t.name, schema.clone(), false);
        table.recover_schema(schema, t.lsn);
    }
    Ok(Some(Loaded { payload, unverified: saved.unverified }))
}

/// The catalogue as last saved, and the generation of the last snapshot taken.
#[derive(Default)]
pub(crate) struct Saved {
    taken: u64,
    generation: u64,
    bytes: Vec<u8>,
}

impl Saved {
    /// What the meta file holds at open.
    pub(crate) fn loaded(bytes: Vec<u8>) -> Self {
        Self { bytes, ..Self::default() }
    }
}

/// The catalogue encoded at one moment. Snapshots are numbered in the order they were
/// encoded, and ⚑ an older one is never written over a newer one: the blocking task of a
/// cancelled flush may run after a later flush saved a newer catalogue.
pub(crate) struct Snapshot {
    saved: Arc<Mutex<Saved>>,
    generation: u64,
    bytes: Vec<u8>,
}

impl Snapshot {
    /// Writes the snapshot to the meta file, unless it is what is saved or a newer
    /// snapshot was handled already. Blocks (a write and two syncs).
    pub(crate) fn save_if_changed(self, wal: &Wal) -> Result<(), memdb_wal::Error> {
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation <= saved.generation {
            return Ok(());
        }
        if self.bytes != saved.bytes {
            wal.write_meta(&self.bytes)?;
            saved.bytes = self.bytes;
        }
        saved.generation = self.generation;
        Ok(())
    }
}

impl Inner {
    /// The runs not yet checked against PostgreSQL's LSN floor, oldest first.
    pub(crate) fn unverified(&self) -> Vec<Unverified> {
        self.unverified.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The catalogue now, numbered (see [`Snapshot`]).
    pub(crate) fn catalogue_snapshot(&self) -> Snapshot {
        let mut saved = self.catalogue_saved.lock().unwrap_or_else(PoisonError::into_inner);
        saved.taken += 1;
        let bytes = encode(&self.tables, self.unverified());
        Snapshot { saved: Arc::clone(&self.catalogue_saved), generation: saved.taken, bytes }
    }

    /// Saves the catalogue in the WAL directory now (if it changed).
    pub(crate) async fn save_catalogue(&self) -> Result<()> {
        let snapshot = self.catalogue_snapshot();
        let wal = Arc::clone(&self.wal);
        tokio::task::spawn_blocking(move || snapshot.save_if_changed(&wal)).await.map_err(|_| Error::Closed)??;
        Ok(())
    }
}
