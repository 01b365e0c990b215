//! The calls on one table, once it is found: shared by `MemDb`'s string-named calls and
//! the [`crate::Table`] handle, so both behave alike by construction.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use memdb_wal::Lsn;
use serde::Serialize;
use tokio_postgres::types::ToSql;

use crate::cache::{Epoch, Lookup, Value};
use crate::db::Inner;
use crate::error::{Error, Result};
use crate::json::{Json, Row, merge_patch};
use crate::record::Record;
use crate::tables::Table;
use crate::validate;

impl Inner {
    /// A get's hit path, memory only: the record (`None` for a tombstone), counted as a
    /// hit — or the epoch of the lookup that missed, for [`Inner::get_miss`].
    #[inline]
    pub(crate) fn lookup(&self, t: &Table, key: &str) -> std::result::Result<Option<Json>, Epoch> {
        match t.cache.get(key, self.clock.now()) {
            Lookup::Hit(value) => {
                self.counters.cache_hits.incr();
                Ok(value.map(Json::new))
            }
            Lookup::Miss { epoch } => Err(epoch),
        }
    }

    /// A whole record to write to `table` under `key`: the key and the value checked,
    /// serialised once; waits out backpressure.
    pub(crate) async fn prepare_put<T: Serialize + ?Sized>(&self, table: &str, key: &str, value: &T) -> Result<Record> {
        validate::key(key)?;
        let record = crate::json::serialize(key, value).map_err(|e| Error::InvalidValue {
            table: table.into(),
            key: key.into(),
            reason: e.to_string(),
        })?;
        validate::value(table, key, record.value().unwrap_or_default().as_bytes(), self.config.max_record_bytes)?;
        if self.over_budget.load(Ordering::Relaxed) {
            // Boxed, as every rarely taken await here: the common path's future stays small.
            Box::pin(self.backpressure()).await?;
        }
        Ok(record)
    }

    /// Writes a prepared record into `t` (schema checked, logged, in memory); returns its
    /// LSN and the table's dirty count, for [`Inner::after_write`].
    pub(crate) fn put(&self, t: &Table, key: &str, record: &Record) -> Result<(Lsn, usize)> {
        t.schema().check(&t.name, key, record.value().unwrap_or_default().as_bytes())?;
        let lsn = self.log_write(t, key, record)?;
        self.counters.inserts.incr();
        Ok((lsn, t.cache.dirty()))
    }

    /// Applies a merge patch to the record (loaded from PostgreSQL when not in memory).
    pub(crate) async fn patch_in(&self, t: &Table, key: &str, patch: &serde_json::Value) -> Result<Json> {
        validate::key(key)?;
        self.backpressure().await?;
        loop {
            let base = match t.cache.peek(key) {
                Some(_) => None,
                None => self.load_from_pg(t, key).await?,
            };
            let update = |current: Option<&str>| -> Result<Record> {
                let mut doc =
                    current.map_or_else(|| serde_json::json!({}), |v| serde_json::from_str(v).unwrap_or_default());
                merge_patch(&mut doc, patch);
                let json = doc.to_string();
                validate::value(&t.name, key, json.as_bytes(), self.config.max_record_bytes)?;
                t.schema().check(&t.name, key, json.as_bytes())?;
                Ok(Record::put(key, &json))
            };
            match self.log_update(t, key, base, update) {
                Ok((lsn, record)) => {
                    self.counters.inserts.incr();
                    self.after_write(lsn, t.cache.dirty()).await?;
                    return Ok(Json::new(record));
                }
                Err(crate::cache::Update::Raced) => continue,
                Err(crate::cache::Update::Failed(e)) => return Err(e),
            }
        }
    }

    /// Deletes the record: a dirty tombstone until flushed.
    pub(crate) async fn delete_in(&self, t: &Table, key: &str) -> Result<()> {
        validate::key(key)?;
        self.backpressure().await?;
        let lsn = self.log_write(t, key, &Record::tombstone(key))?;
        self.counters.deletes.incr();
        self.after_write(lsn, t.cache.dirty()).await
    }

    /// The query, after flushing the table so it sees every acknowledged write.
    pub(crate) async fn query_in(
        &self,
        t: &Arc<Table>,
        where_sql: &str,
        params: &[&(dyn ToSql + Sync)],
        limit: usize,
    ) -> Result<Vec<Row>> {
        if t.cache.dirty() > 0 || !t.pg_ready() {
            self.flush_all(Some(t)).await?;
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.pg().await?.query(&t.name, where_sql, params, limit).await?;
        Ok(rows.into_iter().map(|(key, data)| Row { data: Json::put(&key, &data), key }).collect())
    }

    /// A read that missed memory: from PostgreSQL, then cached as clean unless a write
    /// or a removal raced it (`epoch` is that of the lookup that missed).
    pub(crate) async fn get_miss(&self, t: &Table, key: &str, epoch: Epoch) -> Result<Option<Json>> {
        self.counters.cache_misses.incr();
        validate::key(key)?;
        self.ensure_pg_table(t).await?;
        let Some((json, lsn)) = self.pg().await?.get(&t.name, key).await? else { return Ok(None) };
        let record = Record::put(key, &json);
        t.cache.load(key, record.clone(), lsn, epoch, self.clock.now());
        Ok(Some(Json::new(record)))
    }

    /// Loads a record from PostgreSQL for a read-modify-write: its value (a tombstone
    /// when absent) and the shard epoch of the lookup that missed; `None` when the record
    /// is in memory after all (the update reads it there).
    async fn load_from_pg(&self, t: &Table, key: &str) -> Result<Option<(Value, Epoch)>> {
        let Lookup::Miss { epoch } = t.cache.get(key, self.clock.now()) else { return Ok(None) };
        self.counters.cache_misses.incr();
        self.ensure_pg_table(t).await?;
        let row = self.pg().await?.get(&t.name, key).await?;
        Ok(Some((row.map(|(json, _)| Record::put(key, &json)), epoch)))
    }
}
