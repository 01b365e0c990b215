//! `memdb drill`: the engine's kill -9 drill ([`memdb::drill`]) against the configured
//! PostgreSQL, with a summary; this binary re-executes itself as the drill's child.

use std::process::Command;

use memdb::Durability;
use memdb::drill::{self, Options};

use crate::failure::Failure;

pub const HELP: &str = "\
Examples:
  memdb drill --iterations 50                 # against PG_DSN, or a private PostgreSQL
  memdb drill --iterations 200 --seed 0x2a    # replay a run's choices
  memdb drill --kill-point wal.append.synced  # kill at a named point instead of at random

Each child opens memdb (recovery + replay) and writes at random while it flushes; it is
killed with SIGKILL after 5-500 ms; the next child recovers and every acknowledged
operation is checked against PostgreSQL and the engine's reads. Exit code 1 on any loss.
The drill writes the tables drill_a and drill_b.";

#[derive(clap::Args)]
pub struct Args {
    /// Children to kill.
    #[arg(long, default_value_t = 100)]
    iterations: u64,
    /// Seed of every random choice (decimal or 0x-hex); printed in the summary.
    #[arg(long, value_parser = parse_seed)]
    seed: Option<u64>,
    /// `sync` or `periodic` for every child; by default they alternate.
    #[arg(long, value_parser = ["sync", "periodic"])]
    durability: Option<String>,
    /// Kill at this named point instead of after a random delay.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(memdb::wal::kill_point::ALL))]
    kill_point: Option<String>,
    /// Keep the WAL here (default: a temporary directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    wal_dir: Option<std::path::PathBuf>,
}

fn parse_seed(text: &str) -> Result<u64, String> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .map_err(|e| format!("{text:?} is not a number: {e}"))
}

/// Runs the drill; exit code 0 when nothing was lost, 1 otherwise.
pub fn run(args: &Args) -> Result<u8, Failure> {
    let mut options = Options::default();
    options.iterations = args.iterations;
    options.seed = args.seed;
    options.durability = args.durability.as_deref().map(|d| match d {
        "sync" => Durability::Sync,
        _ => Durability::default(),
    });
    options.kill_point.clone_from(&args.kill_point);
    options.wal_dir.clone_from(&args.wal_dir);
    options.pg_dsn = std::env::var("PG_DSN").ok().filter(|d| !d.is_empty());
    let exe = std::env::current_exe().map_err(|e| {
        Failure::from_error("finding this program to run as the drill's child", &e, "run memdb by its path")
    })?;
    println!(
        "memdb drill: {} kills, PostgreSQL {}",
        args.iterations,
        if options.pg_dsn.is_some() { "from PG_DSN" } else { "private (PG_DSN unset)" }
    );
    let report = drill::run(&options, || Command::new(&exe)).map_err(|e| {
        Failure::from_error(
            "running the drill",
            &e,
            "check PG_DSN (or that PostgreSQL's server binaries are installed) and the WAL directory",
        )
    })?;
    println!("{report}");
    for problem in &report.problems {
        println!("  {problem}");
    }
    println!(
        "{}",
        if report.passed() { "PASSED: no acknowledged write lost" } else { "FAILED: see the problems above" }
    );
    Ok(if report.passed() { 0 } else { crate::EXIT_DAMAGED })
}
