//! `Table`: a handle on one table, for the calls a daemon makes millions of times —
//! without naming the table, or looking it up, on every call.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::types::ToSql;

use crate::Durability;
use crate::db::MemDb;
use crate::error::Result;
use crate::json::{Json, Row};

/// A handle on one table of a [`MemDb`], from [`MemDb::table`]: the same calls as the
/// database's string-named ones, with the same errors and cancel safety, minus the
/// registry lookup. Cheap to clone (two reference counts); keeps the database alive
/// like a [`MemDb`] clone does.
///
/// ```
/// # async fn demo(db: memdb::MemDb) -> memdb::Result<()> {
/// let calls = db.table("calls").await?;
/// calls.insert("call:1", &serde_json::json!({"status": "ringing"})).await?;
/// assert_eq!(calls.get("call:1").await?.expect("just written").to_value()["status"], "ringing");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Table {
    db: MemDb,
    table: Arc<crate::tables::Table>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("name", &self.table.name).finish_non_exhaustive()
    }
}

impl MemDb {
    /// A handle on the table `name`, created (with an empty schema) if it does not
    /// exist, as the first insert into it would.
    ///
    /// # Errors
    /// [`crate::Error::InvalidTableName`], WAL errors; [`crate::Error::Unavailable`] for a table this
    /// WAL directory does not know while PostgreSQL is down (it may be there, with a
    /// schema).
    ///
    /// # Cancel safety
    /// As [`MemDb::create_table`]: dropped before it returns, the table may or may not
    /// have been created; nothing else is affected.
    pub async fn table(&self, name: &str) -> Result<Table> {
        self.check_writable()?;
        let table = self.inner.table_for_write(name).await?;
        Ok(Table { db: self.clone(), table })
    }
}

impl Table {
    /// The table's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.table.name
    }

    /// As [`MemDb::get`].
    ///
    /// # Errors
    /// As [`MemDb::get`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a read changes nothing but the cache (a miss caches the record only
    /// if no write raced it).
    pub async fn get(&self, key: &str) -> Result<Option<Json>> {
        self.db.check_open()?;
        tokio::task::coop::consume_budget().await;
        let inner = &self.db.inner;
        match inner.lookup(&self.table, key) {
            Ok(value) => Ok(value),
            // Boxed: the hit path's future stays a few words, not the PostgreSQL read's.
            Err(epoch) => Box::pin(inner.get_miss(&self.table, key, epoch)).await,
        }
    }

    /// As [`MemDb::get_as`].
    ///
    /// # Errors
    /// As [`MemDb::get`], and [`crate::Error::Deserialize`].
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`Table::get`].
    pub async fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get(key).await?.map(|json| json.deserialize_in(&self.table.name, key)).transpose()
    }

    /// As [`MemDb::insert`]: sets the whole record.
    ///
    /// # Errors
    /// As [`MemDb::insert`].
    ///
    /// # Cancel safety
    /// Dropped before it returns, the write may or may not have happened (it is then in
    /// the WAL and memory, or nowhere); it is never half done and never acknowledged, and
    /// nothing else is affected.
    pub async fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        self.insert_with(key, value, self.db.inner.config.durability).await
    }

    /// As [`MemDb::insert_with`]: acknowledged as `durability` says.
    ///
    /// # Errors
    /// As [`MemDb::insert`].
    ///
    /// # Cancel safety
    /// As [`MemDb::insert_with`].
    pub async fn insert_with<T: Serialize + ?Sized>(&self, key: &str, value: &T, durability: Durability) -> Result<()> {
        self.db.check_writable()?;
        tokio::task::coop::consume_budget().await;
        let inner = &self.db.inner;
        let record = inner.prepare_put(&self.table.name, key, value).await?;
        let (lsn, dirty) = inner.put(&self.table, key, &record)?;
        inner.acknowledge(lsn, dirty, durability).await
    }

    /// As [`MemDb::upsert`], the same as [`Table::insert`].
    ///
    /// # Errors
    /// As [`MemDb::insert`].
    ///
    /// # Cancel safety
    /// As [`Table::insert`].
    pub async fn upsert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        self.insert(key, value).await
    }

    /// As [`MemDb::patch`].
    ///
    /// # Errors
    /// As [`MemDb::patch`].
    ///
    /// # Cancel safety
    /// As [`Table::insert`].
    pub async fn patch(&self, key: &str, patch: &serde_json::Value) -> Result<Json> {
        self.db.check_writable()?;
        tokio::task::coop::consume_budget().await;
        self.db.inner.patch_in(&self.table, key, patch).await
    }

    /// As [`MemDb::delete`].
    ///
    /// # Errors
    /// As [`MemDb::delete`].
    ///
    /// # Cancel safety
    /// As [`Table::insert`].
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.db.check_writable()?;
        tokio::task::coop::consume_budget().await;
        self.db.inner.delete_in(&self.table, key).await
    }

    /// As [`MemDb::query`]: `where_sql` is **trusted SQL**.
    ///
    /// # Errors
    /// As [`MemDb::query`].
    ///
    /// # Cancel safety
    /// As [`MemDb::query`].
    pub async fn query(&self, where_sql: &str, limit: usize) -> Result<Vec<Row>> {
        self.query_params(where_sql, &[], limit).await
    }

    /// As [`MemDb::query_params`].
    ///
    /// # Errors
    /// As [`MemDb::query`].
    ///
    /// # Cancel safety
    /// As [`MemDb::query`].
    pub async fn query_params(
        &self,
        where_sql: &str,
        params: &[&(dyn ToSql + Sync)],
        limit: usize,
    ) -> Result<Vec<Row>> {
        self.db.check_open()?;
        self.db.inner.query_in(&self.table, where_sql, params, limit).await
    }
}
