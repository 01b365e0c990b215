//! `Typed<T>`: a table handle whose records are a Rust type — serialised on the way in,
//! deserialised on the way out, checked against the table's schema hints on every write.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Durability;
use crate::error::Result;
use crate::handle::Table;

/// A [`Table`] whose records are `T` ([`Table::typed`], [`crate::MemDb::typed`]). The
/// schema hints, declared once with [`crate::MemDb::create_table`], are checked on every
/// write as for untyped ones; a stored record that does not fit `T` reads as
/// [`crate::Error::Deserialize`]. Cheap to clone.
///
/// ```
/// # async fn demo(db: memdb::MemDb) -> memdb::Result<()> {
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Call { status: String, turns: u32 }
///
/// let calls = db.typed::<Call>("calls").await?;
/// calls.insert("call:1", &Call { status: "ringing".into(), turns: 1 }).await?;
/// assert_eq!(calls.get("call:1").await?, Some(Call { status: "ringing".into(), turns: 1 }));
/// # Ok(()) }
/// ```
pub struct Typed<T> {
    table: Table,
    _records: PhantomData<fn() -> T>,
}

impl<T> Clone for Typed<T> {
    fn clone(&self) -> Self {
        Self { table: self.table.clone(), _records: PhantomData }
    }
}

impl<T> std::fmt::Debug for Typed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("table", &self.table.name())
            .field("records", &std::any::type_name::<T>())
            .finish()
    }
}

impl crate::MemDb {
    /// A typed handle on the table `name` (created with an empty schema if missing, as
    /// [`crate::MemDb::table`]).
    ///
    /// # Errors
    /// As [`crate::MemDb::table`].
    ///
    /// # Cancel safety
    /// As [`crate::MemDb::table`].
    pub async fn typed<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<Typed<T>> {
        Ok(self.table(name).await?.typed())
    }
}

impl Table {
    /// This table, with its records read and written as `T`.
    #[must_use]
    pub fn typed<T: Serialize + DeserializeOwned>(&self) -> Typed<T> {
        Typed { table: self.clone(), _records: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned> Typed<T> {
    /// The untyped handle on the same table.
    #[must_use]
    pub fn untyped(&self) -> &Table {
        &self.table
    }

    /// The record as `T`, as [`Table::get`] reads it.
    ///
    /// # Errors
    /// As [`Table::get`], and [`crate::Error::Deserialize`] when the record does not fit `T`.
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`Table::get`].
    pub async fn get(&self, key: &str) -> Result<Option<T>> {
        self.table.get_as(key).await
    }

    /// Sets the whole record to `value`, as [`Table::insert`].
    ///
    /// # Errors
    /// As [`Table::insert`].
    ///
    /// # Cancel safety
    /// As [`Table::insert`].
    pub async fn insert(&self, key: &str, value: &T) -> Result<()> {
        self.table.insert(key, value).await
    }

    /// [`Typed::insert`], acknowledged as `durability` says ([`Table::insert_with`]).
    ///
    /// # Errors
    /// As [`Table::insert`].
    ///
    /// # Cancel safety
    /// As [`Table::insert_with`].
    pub async fn insert_with(&self, key: &str, value: &T, durability: Durability) -> Result<()> {
        self.table.insert_with(key, value, durability).await
    }

    /// Deletes the record, as [`Table::delete`].
    ///
    /// # Errors
    /// As [`Table::delete`].
    ///
    /// # Cancel safety
    /// As [`Table::insert`].
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.table.delete(key).await
    }

    /// Rows matching `where_sql` (**trusted SQL**, as [`Table::query`]) as `(key, T)`.
    ///
    /// # Errors
    /// As [`Table::query`], and [`crate::Error::Deserialize`] for a row that does not fit `T`.
    ///
    /// # Cancel safety
    /// As [`Table::query`].
    pub async fn query(&self, where_sql: &str, limit: usize) -> Result<Vec<(String, T)>> {
        let rows = self.table.query(where_sql, limit).await?;
        rows.into_iter()
            .map(|row| {
                let value = row.data.deserialize_in(self.table.name(), &row.key)?;
                Ok((row.key, value))
            })
            .collect()
    }
}
