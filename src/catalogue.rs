//! The table catalogue kept in the WAL directory (the WAL's meta file): every table
//! with its schema and the LSN of the create record that set it. With it a restart
//! with PostgreSQL down knows every table and enforces the same schemas. ⚑ It is saved
//! before any WAL truncation that follows a change, so a truncation never forgets a
//! table or its schema.

use std::sync::{Arc, PoisonError};

use memdb_wal::{Lsn, Wal};
use serde::{Deserialize, Serialize};

use crate::db::Inner;
use crate::error::{Error, Result};
use crate::schema::Schema;
use crate::tables::Tables;
use crate::validate;

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    tables: Vec<SavedTable>,
}

#[derive(Serialize, Deserialize)]
struct SavedTable {
    name: String,
    schema: serde_json::Value,
    lsn: Lsn,
}

/// The catalogue of `tables` as the meta file's payload.
pub(crate) fn encode(tables: &Tables) -> Vec<u8> {
    let tables = tables
        .all()
        .iter()
        .map(|t| {
            let (schema, lsn) = t.schema_with_lsn();
            SavedTable { name: t.name.clone(), schema: schema.to_json(), lsn }
        })
        .collect();
    serde_json::to_vec(&Saved { version: VERSION, tables }).unwrap_or_default()
}

/// Loads the catalogue saved in `wal`'s directory into `tables` (PostgreSQL gets each
/// table again on its first flush). Returns the payload, `None` when there is none: a
/// directory that never reached PostgreSQL.
pub(crate) fn load(wal: &Wal, tables: &Tables) -> Result<Option<Vec<u8>>> {
    let Some(payload) = wal.read_meta()? else { return Ok(None) };
    let bad = |problem| Error::Wal(memdb_wal::Error::BadMeta { problem });
    let saved: Saved = serde_json::from_slice(&payload).map_err(|_| bad("not a memdb table catalogue"))?;
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
    Ok(Some(payload))
}

impl Inner {
    /// The catalogue's bytes if they differ from those last saved.
    pub(crate) fn catalogue_if_changed(&self) -> Option<Vec<u8>> {
        let bytes = encode(&self.tables);
        let saved = self.catalogue_saved.lock().unwrap_or_else(PoisonError::into_inner);
        (*saved != bytes).then_some(bytes)
    }

    /// Saves the catalogue in the WAL directory now.
    pub(crate) async fn save_catalogue(&self) -> Result<()> {
        let bytes = encode(&self.tables);
        let wal = Arc::clone(&self.wal);
        let bytes = tokio::task::spawn_blocking(move || wal.write_meta(&bytes).map(|()| bytes))
            .await
            .map_err(|_| Error::Closed)??;
        *self.catalogue_saved.lock().unwrap_or_else(PoisonError::into_inner) = bytes;
        Ok(())
    }
}
