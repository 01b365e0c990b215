//! memdb: an embedded write-behind store for latency-critical daemons.
//!
//! Records are JSON objects by `(table, key)`, read and written at memory speed. Every
//! write is appended to a checksummed local write-ahead log (the [`wal`] crate) before
//! it changes memory and before it is acknowledged, so a crash never loses an
//! acknowledged write; background tasks flush dirty records to PostgreSQL (one JSONB
//! table per logical table, with a GIN index) and evict idle clean ones. On open, the
//! WAL is replayed into memory and open returns; the backlog drains into PostgreSQL in
//! the background, also when PostgreSQL comes back only later.
//!
//! It is not a SQL database: queries go to PostgreSQL (after flushing the table, so
//! they see every acknowledged write), and `where_sql` is trusted SQL.
//!
//! ```no_run
//! use memdb::{Config, MemDb};
//! use serde_json::json;
//!
//! # async fn demo() -> memdb::Result<()> {
//! let db = MemDb::open(Config::from_env()?).await?;
//! db.create_table("calls", &json!({"status": "string", "start_time": "timestamp"})).await?;
//! db.insert("calls", "call:1", &json!({"status": "ringing", "start_time": "2026-11-26T03:17:00Z"})).await?;
//! let call = db.get("calls", "call:1").await?.expect("just written");
//! assert_eq!(call.to_value()["status"], "ringing");
//! let ringing = db.query("calls", "data->>'status' = 'ringing'", 100).await?;
//! assert_eq!(ringing.len(), 1);
//! db.close().await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod background;
mod cache;
mod catalogue;
mod config;
mod connect;
mod counter;
mod db;
mod drain;
#[cfg(feature = "testkit")]
pub mod drill;
mod durability;
mod error;
mod flush;
mod handle;
#[cfg(feature = "internals")]
mod internals;
mod json;
mod log;
mod ops;
mod pg;
#[cfg(feature = "testkit")]
pub mod postgres;
mod record;
mod recovery;
mod schema;
mod stats;
mod store;
mod tables;
mod text;
mod typed;
mod validate;

pub use config::Config;
pub use db::MemDb;
pub use error::{Error, Result};
pub use handle::Table;
pub use json::{Json, Row};
pub use memdb_wal as wal;
pub use memdb_wal::Durability;
pub use schema::{FieldType, Schema};
pub use stats::Stats;
pub use store::StoreError;
pub use tokio_postgres::types::ToSql;
pub use typed::Typed;
pub use validate::{MAX_KEY_BYTES, MAX_TABLE_NAME};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
