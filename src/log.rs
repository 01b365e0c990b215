//! ⚑ The one place a change is logged and applied: every mutation is appended to the WAL
//! first and applied to the map after, under the key's shard lock (so within a shard the
//! map changes in LSN order). Nothing else in the engine appends to the WAL.

use memdb_wal::{Entry, Lsn, Op};

use crate::cache::{Epoch, Update, Value};
use crate::db::Inner;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::schema::Schema;
use crate::tables::Table;

impl Inner {
    /// Logs and applies `record` (a value or a tombstone) as the whole record of `key`.
    /// On error nothing is logged or applied.
    #[inline]
    pub(crate) fn log_write(&self, t: &Table, key: &str, record: &Record) -> Result<Lsn> {
        t.cache.write(key, record.clone(), self.clock.now(), || self.append(t, key, record))
    }

    /// Read-modify-write of `key`: `update` derives the new record from the current one
    /// (see [`crate::cache::Cache::update`]); it is logged, then applied.
    pub(crate) fn log_update(
        &self,
        t: &Table,
        key: &str,
        base: Option<(Value, Epoch)>,
        update: impl FnOnce(Option<&str>) -> Result<Record>,
    ) -> Result<(Lsn, Record), Update<Error>> {
        t.cache.update(key, self.clock.now(), base, update, |record| self.append(t, key, record))
    }

    /// Logs `schema` as the table's and sets it; the WAL keeps the record until
    /// PostgreSQL has the table (see [`Table::log_schema`]).
    pub(crate) fn log_schema(&self, t: &Table, schema: Schema) -> Result<Lsn> {
        let json = schema.to_json().to_string();
        let entry = Entry { op: Op::CreateTable, table: &t.name, key: "", value: json.as_bytes() };
        t.log_schema(schema, self.wal.next_lsn(), || Ok(self.wal.append_nowait(&entry)?))
    }

    fn append(&self, t: &Table, key: &str, record: &Record) -> Result<Lsn> {
        let (op, value) = match record.value() {
            Some(json) => (Op::Put, json.as_bytes()),
            None => (Op::Delete, &b""[..]),
        };
        Ok(self.wal.append_nowait(&Entry { op, table: &t.name, key, value })?)
    }
}
