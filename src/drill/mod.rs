//! Crash drills, as a product feature: `kill -9` a process that runs memdb at random
//! moments (or at a named [`crate::wal::kill_point`]), reopen, and check that no
//! acknowledged write was lost.
//!
//! [`run`] is the parent. It starts a child process again and again on one WAL directory
//! and one PostgreSQL database. Each child opens memdb (recovery and replay), reports the
//! value of every key of the drill's key space as the engine reads it, waits for the
//! parent to compare those and PostgreSQL with its model of acknowledged operations,
//! then inserts, upserts, patches and deletes at random — reporting each operation
//! before it starts and once it is acknowledged — while it flushes to PostgreSQL
//! concurrently and the WAL rotates through small segments. The parent `SIGKILL`s it
//! after a random delay (5–500 ms by default) and starts the next child.
//!
//! With its own private PostgreSQL (no `pg_dsn`) and no kill point, every fourth child runs with
//! PostgreSQL stopped across its whole life: it opens on the WAL alone, writes (puts and
//! deletes; a patch may need PostgreSQL), and is killed while PostgreSQL is still down;
//! then PostgreSQL starts, and the next child drains the backlog and is checked.
//!
//! The check: every key reads back (from the engine and from PostgreSQL alike) as the
//! last acknowledged operation left it, or as the one operation that was in flight
//! when the child died. A deleted key stays deleted.
//!
//! The child is this same program re-executed: the program's `main` must call
//! [`child_main`] when [`is_child`] says so, before anything else (sled's pattern).
//!
//! ```no_run
//! use memdb::drill;
//!
//! fn main() -> std::process::ExitCode {
//!     if drill::is_child() {
//!         return drill::child_main();
//!     }
//!     let mut options = drill::Options::default();
//!     options.iterations = 50;
//!     let exe = std::env::current_exe().expect("this program");
//!     let report = drill::run(&options, || std::process::Command::new(&exe)).expect("the drill ran");
//!     println!("{report}");
//!     if report.passed() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
//! }
//! ```
//!
//! The drill writes tables `drill_a` and `drill_b` (PostgreSQL tables `memdb_drill_a`
//! and `memdb_drill_b`); rows there from an earlier run are adopted as the starting state.
//! Nothing here runs unless called: it is not on any path of the engine.

mod child;
mod model;
mod parent;
pub(crate) mod rng;

use std::path::PathBuf;
use std::time::Duration;

pub use child::{child_main, is_child};
pub use parent::run;

use crate::Durability;

/// What a drill run does.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// How many children are killed.
    pub iterations: u64,
    /// The seed of every random choice; `None` draws one (printed in the report).
    pub seed: Option<u64>,
    /// The children's durability; `None` alternates `Sync` and `Periodic(50 ms)`.
    pub durability: Option<Durability>,
    /// PostgreSQL; `None` uses `PG_DSN`, else a fresh database on a private cluster.
    pub pg_dsn: Option<String>,
    /// The WAL directory; `None` uses a temporary one, removed afterwards.
    pub wal_dir: Option<PathBuf>,
    /// The shortest and longest random delay before a kill.
    pub kill_after: (Duration, Duration),
    /// Kill at this named point (a name from [`crate::wal::kill_point::ALL`]; the drill
    /// picks which passage) instead of after a random delay.
    pub kill_point: Option<String>,
    /// Flush between operations instead of concurrently with them, so that a flush
    /// takes every record acknowledged before it (for the "committed but not
    /// truncated" check of [`crate::wal::kill_point::PG_COMMITTED`]).
    pub inline_flush: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            iterations: 100,
            seed: None,
            durability: None,
            pg_dsn: None,
            wal_dir: None,
            kill_after: (Duration::from_millis(5), Duration::from_millis(500)),
            kill_point: None,
            inline_flush: false,
        }
    }
}

/// What a drill run found.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// The seed: `Options { seed: Some(seed), .. }` replays the run's choices.
    pub seed: u64,
    /// Children killed.
    pub drills: u64,
    /// Of those, children in `Sync` mode.
    pub drills_sync: u64,
    /// Of those, children that opened, wrote and died with PostgreSQL stopped.
    pub drills_pg_down: u64,
    /// Kills that landed while a flush to PostgreSQL ran.
    pub kills_during_flush: u64,
    /// Kills that landed during a WAL segment rotation.
    pub kills_during_rotation: u64,
    /// Kills by the armed kill point (the rest were by the parent).
    pub kills_at_point: u64,
    /// Acknowledged operations whose effect was checked after a kill.
    pub acknowledged_checked: u64,
    /// Keys whose state after recovery no acknowledged history explains.
    pub lost: u64,
    /// Replays after a kill at `flush.committed` that left PostgreSQL byte-for-byte as
    /// it was (the table checksum before and after recovery).
    pub replays_unchanged: u64,
    /// Everything that went wrong, each with its drill number.
    pub problems: Vec<String>,
    /// How long the run took.
    pub elapsed: Duration,
}

impl Report {
    /// No loss and no other problem.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.problems.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "drills {} ({} Sync, {} Periodic, {} with PostgreSQL down), kills during flush {}, during rotation {}, at the kill point {}, \
             acknowledged operations checked {}, lost {}, replays unchanged {}, problems {}, seed {:#x}, {:.1?}",
            self.drills,
            self.drills_sync,
            self.drills - self.drills_sync,
            self.drills_pg_down,
            self.kills_during_flush,
            self.kills_during_rotation,
            self.kills_at_point,
            self.acknowledged_checked,
            self.lost,
            self.replays_unchanged,
            self.problems.len(),
            self.seed,
            self.elapsed,
        )
    }
}

/// A drill that could not run (as opposed to one that found a problem: see [`Report`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrillError {
    /// No PostgreSQL to drill against.
    #[error("drill: no PostgreSQL: {0}")]
    Postgres(String),
    /// Creating the WAL directory, spawning or talking to a child failed.
    #[error("drill: {what}: {source}")]
    Io {
        /// What the drill was doing.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
