//! The systems the workload runs against, behind one trait: memdb in both durability
//! modes, PostgreSQL directly (one statement per operation), and a bare concurrent map.

pub mod bare_map;
pub mod memdb;
pub mod postgres;

use std::future::Future;

use crate::common::record::Call;

/// One key-value store as the workload sees it. `lane` is the calling task's number,
/// below the concurrency the system was opened for (a connection per lane for
/// PostgreSQL; the others ignore it). Errors end the benchmark (they are bugs here).
pub trait System: Send + Sync + 'static {
    /// Sets the whole record; `create` says whether it is the call's first write.
    fn put(&self, lane: usize, key: &str, call: &Call, create: bool) -> impl Future<Output = ()> + Send;
    /// Reads the record; whether it was found.
    fn get(&self, lane: usize, key: &str) -> impl Future<Output = bool> + Send;
    fn delete(&self, lane: usize, key: &str) -> impl Future<Output = ()> + Send;
}

/// The systems of the side-by-side table, in report order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Which {
    MemdbPeriodic,
    MemdbSync,
    PgSyncOn,
    PgSyncOff,
    BareMap,
}

impl Which {
    pub const ALL: [Self; 5] = [Self::MemdbPeriodic, Self::MemdbSync, Self::PgSyncOn, Self::PgSyncOff, Self::BareMap];

    pub fn name(self) -> &'static str {
        match self {
            Self::MemdbPeriodic => "memdb Periodic",
            Self::MemdbSync => "memdb Sync",
            Self::PgSyncOn => "PostgreSQL synchronous_commit=on",
            Self::PgSyncOff => "PostgreSQL synchronous_commit=off",
            Self::BareMap => "bare map (limit)",
        }
    }
}
