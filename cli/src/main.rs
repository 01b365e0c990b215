//! `memdb`: the operator's command — the live demo, the kill drill and the WAL tools.
//!
//! Exit codes (the same for every subcommand):
//! 0 done (for `drill`: nothing lost; for `wal verify`: the log opens as it is — clean, or a torn tail the next open
//! cuts); 1 the WAL is damaged (corruption, or a segment of a newer format), or the drill
//! found a loss; 2 the command
//! line is wrong; 3 the command could not do its job (a missing directory, a log in use,
//! PostgreSQL unreachable, bad configuration) — the message says what to do.

mod demo;
mod drill;
mod failure;
mod live;
mod wal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code: the WAL is damaged.
pub const EXIT_DAMAGED: u8 = 1;
/// Exit code: the command could not do its job.
pub const EXIT_FAILED: u8 = 3;

const EXIT_CODES: &str = "\
Exit codes: 0 done (wal verify: the log opens as it is), 1 the WAL is damaged,
2 bad command line, 3 could not do the job (the message says what to do).

Configuration comes from the environment and ./.env, as for the library: PG_DSN,
MEMDB_WAL_DIR, MEMDB_DURABILITY, FLUSH_INTERVAL, IDLE_TTL, MAX_CONNECTIONS.";

/// memdb: an embedded write-behind store — a live demo and tools for its write-ahead log.
#[derive(Parser)]
#[command(name = "memdb", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Walk through memory vs PostgreSQL live: writes, flush, eviction, a kill -9 and recovery.
    #[command(after_help = demo::HELP)]
    Demo(demo::Args),
    /// Kill -9 a writer again and again and check that no acknowledged write is lost.
    #[command(after_help = drill::HELP)]
    Drill(drill::Args),
    /// Look into a WAL directory: inspect, verify, dump, repair.
    #[command(subcommand)]
    Wal(wal::Command),
    /// The writer child of `memdb demo` (internal: killed with SIGKILL by the demo).
    #[command(hide = true)]
    DemoWriter(demo::writer::Args),
}

fn main() -> ExitCode {
    // `memdb drill` runs this program again as the process it kills.
    if memdb::drill::is_child() {
        return memdb::drill::child_main();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Drill(args) => drill::run(&args),
        Command::Wal(command) => wal::run(command),
        Command::DemoWriter(args) => demo::writer::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::from(failure.code)
        }
    }
}
