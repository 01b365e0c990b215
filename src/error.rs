//! The engine's one error type: what happened, and what to do about it.

use memdb_wal::Lsn;

/// Everything the engine can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A table name that is not `^[a-z_][a-z0-9_]*$` or too long.
    #[error("invalid table name {name:?}: {reason}")]
    InvalidTableName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key that is empty, too long or holds a NUL character.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key (truncated to 64 characters).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value that is not a JSON object, holds `\u0000`, or does not serialise.
    #[error("invalid value for {table}/{key}: {reason}")]
    InvalidValue {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value larger than `Config::max_record_bytes`.
    #[error("the value for {table}/{key} is {size} bytes, over the limit of {max} (Config::max_record_bytes)")]
    RecordTooLarge {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// The value's size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A value whose field contradicts the table's schema.
    #[error("{table}/{key}: field {field:?} must be {expected}, found {found}")]
    SchemaViolation {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// The field.
        field: String,
        /// The declared type.
        expected: &'static str,
        /// What the value holds.
        found: String,
    },
    /// A schema that is not an object of field name to a known type.
    #[error("invalid schema for table {table}: {reason}")]
    InvalidSchema {
        /// The table.
        table: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value that cannot work.
    #[error("invalid configuration: {name}={value:?}: {reason}")]
    Config {
        /// The variable or setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The write-ahead log failed (corruption on open, a failed sync, a full disk...).
    #[error(transparent)]
    Wal(#[from] memdb_wal::Error),
    /// PostgreSQL failed or did not answer in time.
    #[error("PostgreSQL: {0}")]
    Postgres(crate::store::StoreError),
    /// PostgreSQL is known to be down, so a call that needs it (a read that misses
    /// memory, `get_uncached`, `query`, `flush`) fails at once instead of waiting out a
    /// timeout. Writes go on into the WAL and memory; what memory holds reads as usual;
    /// the backlog drains once a background probe gets through.
    #[error(
        "PostgreSQL is unavailable: known down for {down_for:?} ({cause}), so {what} was not tried; \
         writes go on into the WAL and memory, and the backlog drains once it answers"
    )]
    Unavailable {
        /// What needed PostgreSQL.
        what: &'static str,
        /// How long it has been known to be down.
        down_for: std::time::Duration,
        /// The last failure seen.
        cause: String,
    },
    /// Too many unflushed records or WAL bytes (PostgreSQL is down or slow) for too long.
    #[error(
        "backpressure: {dirty} unflushed records and {wal_bytes} WAL bytes are over the configured limits and \
         PostgreSQL has not caught up within {waited_ms} ms; retry later, check PostgreSQL, or raise the limits"
    )]
    Backpressure {
        /// Unflushed records.
        dirty: usize,
        /// WAL bytes.
        wal_bytes: u64,
        /// How long the write waited.
        waited_ms: u64,
    },
    /// The database was closed.
    #[error("the database is closed")]
    Closed,
    /// The engine stopped accepting writes after an internal failure (fail-stop): reads
    /// of what memory holds go on; every write acknowledged before is in the WAL.
    #[error(
        "the engine stopped accepting writes: {cause}. Every acknowledged write is in the WAL; close and \
         reopen the database (or restart the process) to go on"
    )]
    Failed {
        /// What failed.
        cause: String,
    },
    /// A stored record failed to deserialise into the requested type.
    #[error("{table}/{key} (LSN {lsn}) does not deserialise into the requested type: {source}")]
    Deserialize {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// The record's LSN, 0 when read from PostgreSQL.
        lsn: Lsn,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Down { what, down_for, cause } => Self::Unavailable { what, down_for, cause },
            e => Self::Postgres(e),
        }
    }
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
