//! The write-ahead log of memdb: checksummed, preallocated, mmap-backed segments.
//!
//! Every record gets a strictly increasing LSN and is copied into the kernel's page
//! cache before [`Wal::append`] returns, so a killed process loses nothing; in
//! [`Durability::Sync`] mode it is also on stable storage (concurrent appenders share
//! one sync). Opening the log recovers it: a torn tail left by a crash is cut, damage
//! that no crash explains is refused with its segment and offset. The crate knows
//! bytes, files and LSNs; it knows nothing of PostgreSQL or of the engine.
//!
//! The format is specified in `FORMAT.md`; [`parse`] reads it from any bytes.
//!
//! ```
//! use memdb_wal::{Durability, Entry, Op, Options, Wal};
//!
//! let dir = tempfile::tempdir()?;
//! let opts = Options { durability: Durability::Sync, ..Options::default() };
//! let wal = Wal::open(dir.path(), opts.clone())?;
//! let lsn = wal.append(&Entry { op: Op::Put, table: "calls", key: "c1", value: br#"{"status":"ringing"}"# })?;
//! drop(wal);
//!
//! let wal = Wal::open(dir.path(), opts)?;
//! let records: Vec<_> = wal.replay(1).collect::<Result<_, _>>()?;
//! assert_eq!(records[0].lsn, lsn);
//! assert_eq!(records[0].key, "c1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
// The format code must not panic on any input; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod check;
mod error;
pub mod format;
mod frame;
pub mod identity;
pub mod inspect;
#[cfg(feature = "internals")]
pub mod internals;
pub mod kill_point;
pub mod meta;
mod options;
pub mod parse;
mod prefault;
mod record;
mod recovery;
mod replay;
mod segment;
pub mod storage;
mod sync;
mod wal;
mod writer;

pub use error::{Corruption, Error, Problem};
pub use frame::Damage;
pub use options::{Durability, Options, RecoveryMode};
pub use record::{Entry, Lsn, Op, Record, RecordRef};
pub use recovery::RecoveryReport;
pub use replay::{Replay, SegmentReplay};
pub use wal::{Wal, WalStats};
