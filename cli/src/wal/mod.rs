//! `memdb wal …`: read a log directory without opening it (inspect, verify, dump), and
//! the one command that changes it (repair, explicit and backed up).

mod dump;
mod inspect;
mod repair;
mod verify;

use std::path::{Path, PathBuf};

use clap::Subcommand;
use memdb::wal::inspect::{Inspection, Seen, SegmentState};

use crate::failure::Failure;

/// The WAL tools.
#[derive(Subcommand)]
pub enum Command {
    /// Segments, LSN ranges, record counts, bytes, per-table counts, first retained LSN.
    #[command(after_help = inspect::HELP)]
    Inspect {
        /// The WAL directory (MEMDB_WAL_DIR of the process that writes it).
        dir: PathBuf,
    },
    /// Check every frame; exit 0 if the log opens as it is, 1 if it is damaged.
    #[command(after_help = verify::HELP)]
    Verify {
        /// The WAL directory.
        dir: PathBuf,
    },
    /// Print records as JSON lines, oldest first.
    #[command(after_help = dump::HELP)]
    Dump(dump::Args),
    /// Cut the log at its first corruption, backing up what is cut.
    #[command(after_help = repair::HELP)]
    Repair(repair::Args),
}

/// Runs a WAL tool; returns the exit code.
pub fn run(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Inspect { dir } => inspect::run(&dir),
        Command::Verify { dir } => verify::run(&dir),
        Command::Dump(args) => dump::run(&args),
        Command::Repair(args) => repair::run(&args),
    }
}

/// Reads the log in `dir` without opening it (read-only, no lock taken), visiting records.
fn read(dir: &Path, visit: impl FnMut(Seen<'_>)) -> Result<Inspection, Failure> {
    if !dir.is_dir() {
        return Err(Failure::new(
            format!("{} is not a directory", dir.display()),
            "give the WAL directory: the MEMDB_WAL_DIR of the process that writes the log (default ./memdb-wal)",
        ));
    }
    let inspection = memdb::wal::inspect::inspect(dir, visit).map_err(|e| {
        Failure::from_error("cannot read the WAL", &e, "check that the directory and its files are readable")
    })?;
    if inspection.segments.is_empty() {
        return Err(Failure::new(
            format!("{} holds no WAL segments (files named <20 digits>.wal)", dir.display()),
            "give the directory a memdb process writes its log to (MEMDB_WAL_DIR)",
        ));
    }
    Ok(inspection)
}

/// One word for a segment's state, and a sentence on what it means.
fn describe(state: &SegmentState) -> (&'static str, String) {
    match state {
        SegmentState::Clean => ("clean", "valid to its end".into()),
        SegmentState::TornTail { offset, damage } => (
            "torn tail",
            format!(
                "{} at offset {offset}: the normal remains of a crash; the next open cuts it, \
                 losing nothing promised durable",
                damage.map_or_else(|| "stray bytes after the end of data".to_owned(), |d| d.to_string()),
            ),
        ),
        SegmentState::Corrupt(c) => ("CORRUPT", format!("{} at offset {}", c.problem, c.offset)),
        SegmentState::Unsupported { frame, record } => {
            ("NEWER FORMAT", format!("format version {frame}.{record}: written by a newer memdb, which can read it"))
        }
        _ => ("unknown", "a state this build does not know".into()),
    }
}

/// What an operator should run about a damaged log.
fn advice(dir: &Path, inspection: &Inspection) -> Option<String> {
    let (_, segment) = inspection.first_problem()?;
    Some(match segment.state {
        SegmentState::Unsupported { .. } => "open the log with the newer memdb that wrote it; do not repair it".into(),
        _ => format!(
            "memdb wal dump {0} > salvage.jsonl   # keep every readable record first\n  \
             memdb wal repair {0} --truncate-at-corruption   # then cut the log there (backs up what it cuts)",
            dir.display()
        ),
    })
}
