//! The engine's kill -9 drill on a real PostgreSQL ([`memdb::drill`]): children writing
//! in `Sync` and `Periodic` mode are killed at random moments and at every named kill
//! point; after each kill the next child recovers and the parent checks PostgreSQL and
//! the engine's reads against the model of acknowledged operations.
//!
//! This binary (`harness = false`) re-executes itself as the child. Settings:
//! `MEMDB_DRILL_ITERATIONS` (random kills, default 200), `MEMDB_DRILL_POINT_ITERATIONS`
//! (per kill point, default 27; 0 skips them), `MEMDB_DRILL_SEED` (replays a run; the
//! seed is printed first), `PG_DSN` (your own PostgreSQL instead of a private one).

use std::process::{Command, ExitCode};
use std::time::Instant;

use memdb::drill::{self, Options, Report};
use memdb::wal::kill_point;

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={text:?} is not a number: {e}")))
}

fn main() -> ExitCode {
    if drill::is_child() {
        return drill::child_main();
    }
    let started = Instant::now();
    let seed = env_u64("MEMDB_DRILL_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    let iterations = env_u64("MEMDB_DRILL_ITERATIONS").unwrap_or(200);
    let per_point = env_u64("MEMDB_DRILL_POINT_ITERATIONS").unwrap_or(27);
    println!("crash drill: seed {seed:#x} (replay with MEMDB_DRILL_SEED={seed:#x})");
    let exe = std::env::current_exe().expect("the path of this test binary");
    let child = || Command::new(&exe);
    let mut failed = false;

    let mut random = Options::default();
    random.iterations = iterations;
    random.seed = Some(seed);
    let report = drill::run(&random, child).expect("the drill runs");
    failed |= !judge("random kills", &report, |r| {
        // The bar: at least a tenth of the kills land during a flush.
        if r.drills >= 100 && r.kills_during_flush * 10 < r.drills {
            return Err(format!("only {} of {} kills landed during a flush", r.kills_during_flush, r.drills));
        }
        Ok(())
    });

    if per_point > 0 {
        for (i, point) in kill_point::ALL.iter().enumerate() {
            let mut options = Options::default();
            // Recovery is killed in every other drill only (see `drill::run`).
            options.iterations = if *point == kill_point::DURING_RECOVERY { per_point * 2 } else { per_point };
            options.seed = Some(seed ^ (i as u64 + 1));
            options.kill_point = Some((*point).to_owned());
            options.inline_flush = *point == kill_point::PG_COMMITTED;
            let report = drill::run(&options, child).expect("the drill runs");
            let wanted = per_point * 9 / 10;
            failed |= !judge(point, &report, |r| {
                if r.kills_at_point < wanted {
                    return Err(format!("the point was hit {} times, fewer than {wanted}", r.kills_at_point));
                }
                if *point == kill_point::PG_COMMITTED && r.replays_unchanged < wanted {
                    return Err(format!("only {} replays were checked unchanged", r.replays_unchanged));
                }
                Ok(())
            });
        }
    }
    println!("crash drill: {} in {:.1?}", if failed { "FAILED" } else { "passed" }, started.elapsed());
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Prints the report and its problems; false if it failed.
fn judge(what: &str, report: &Report, extra: impl Fn(&Report) -> Result<(), String>) -> bool {
    println!("{what}: {report}");
    for problem in &report.problems {
        println!("  {problem}");
    }
    let verdict = extra(report);
    if let Err(e) = &verdict {
        println!("  {e}");
    }
    report.passed() && verdict.is_ok()
}
