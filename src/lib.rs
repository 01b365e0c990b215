//! memdb: an embedded write-behind store. The engine lands with issue 3; today the
//! crate re-exports its write-ahead log.

pub use memdb_wal as wal;
