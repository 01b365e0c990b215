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
//! From nothing to a running database — this example runs as a test, against a private
//! throwaway PostgreSQL (`memdb::postgres`, from the `testkit` feature; a daemon would use
//! [`Config::from_env`], which reads `PG_DSN` and a `.env` file):
//!
//! ```
//! use memdb::{Config, MemDb};
//! use serde_json::json;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dsn = memdb::postgres::test_dsn().await?; // `PG_DSN`, or a private cluster
//! let wal = tempfile::tempdir()?;
//! let db = MemDb::open(Config::new(dsn, wal.path())).await?;
//!
//! db.create_table("quickstart_calls", &json!({"status": "string", "start_time": "timestamp"})).await?;
//! db.insert("quickstart_calls", "call:1", &json!({"status": "ringing", "start_time": "2026-11-26T03:17:00Z"})).await?;
//! let call = db.get("quickstart_calls", "call:1").await?.expect("just written");
//! assert_eq!(call.to_value()["status"], "ringing");
//!
//! // The hot path: a handle skips the table lookup on every call.
//! let calls = db.table("quickstart_calls").await?;
//! calls.insert("call:2", &json!({"status": "up", "start_time": "2026-11-26T03:18:00Z"})).await?;
//!
//! // Queries run in PostgreSQL, after a flush of the table: they see every write.
//! let up = db.query("quickstart_calls", "data->>'status' = 'up'", 100).await?;
//! assert_eq!(up.len(), 1);
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

pub use config::{Config, Pooler};
pub use db::MemDb;
pub use error::{Error, Result};
pub use handle::Table;
pub use json::{Json, Row};
pub use memdb_wal as wal;
pub use memdb_wal::Durability;
pub use schema::{FieldType, Schema};
pub use stats::Stats;
pub use store::{Misconfiguration, StoreError, connect_postgres};
pub use tokio_postgres::types::ToSql;
pub use typed::Typed;
pub use validate::{MAX_KEY_BYTES, MAX_TABLE_NAME};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
