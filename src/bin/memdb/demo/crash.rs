//! The demo's last act: a writer child killed with SIGKILL mid-stream, then recovery —
//! reopen, replay the WAL, flush — and a check that every acknowledged write is in
//! PostgreSQL.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use memdb::{Config, MemDb};

use super::show::Pg;
use super::writer::PREFIX;
use super::{Plan, TABLE, engine};
use crate::failure::Failure;
use crate::live::{Live, thousands};

/// What the parent saw of its child.
struct Killed {
    /// The highest write number the child printed: writes 1..=acked were acknowledged.
    acked: u64,
    /// When the kill was sent, that many were acknowledged.
    at_kill: u64,
    signal: Option<i32>,
}

pub async fn kill_and_recover(plan: &Plan, dsn: &str, wal_dir: &Path, pg: &Pg) -> Result<(), Failure> {
    println!("\n8. kill -9: a writer child process takes over the database and is killed mid-stream");
    println!("   (this process closed its database first: everything flushed, the WAL released)");
    let (exe, dir, dsn_arg, kill_after) = (current_exe()?, wal_dir.to_owned(), dsn.to_owned(), plan.kill_after);
    let killed = tokio::task::spawn_blocking(move || run_child(&exe, &dir, &dsn_arg, kill_after))
        .await
        .map_err(|e| Failure::from_error("watching the writer child", &e, "a bug in the demo: please report it"))??;
    println!(
        "   SIGKILL sent after {} acknowledged writes; the child had {} acknowledged when it died ({})",
        thousands(killed.at_kill),
        thousands(killed.acked),
        killed.signal.map_or_else(|| "exited".into(), |s| format!("killed by signal {s}"))
    );
    let inspection = memdb::wal::inspect::inspect(wal_dir, |_| ())
        .map_err(|e| Failure::from_error("reading the WAL", &e, "a bug in the demo: please report it"))?;
    let on_disk: u64 = inspection.records();
    let rows = pg.rows(PREFIX).await?;
    println!("   {:<34} {:>12} | {:>10}", "", "WAL records", "PG rows");
    println!(
        "   {:<34} {:>12} | {:>10}   (the child never flushed: its writes live only in the WAL)",
        "after the kill",
        thousands(on_disk),
        thousands(rows)
    );

    println!("\n9. Recovery: reopen — replay the WAL into memory, flush it to PostgreSQL");
    let started = Instant::now();
    let db =
        MemDb::open(Config::new(dsn, wal_dir)).await.map_err(|e| engine("reopening after the kill (recovery)", &e))?;
    let took = started.elapsed();
    let rows = pg.rows(PREFIX).await?;
    let present = pg.child_rows_through(PREFIX, killed.acked).await?;
    super::show::header();
    println!("{}", super::show::line(&format!("reopened ({:.0} ms)", took.as_secs_f64() * 1e3), &db, rows));
    println!(
        "   acknowledged before the kill: {} — in PostgreSQL now: {} {}",
        thousands(killed.acked),
        thousands(present),
        if present == killed.acked { "(all of them)" } else { "(MISSING SOME: a bug, please report it)" }
    );
    if rows > present {
        println!(
            "   plus {} write(s) that reached the WAL but whose acknowledgement the kill cut off",
            thousands(rows - present)
        );
    }
    let last = format!("{PREFIX}{}", killed.acked);
    let value = db.get(TABLE, &last).await.map_err(|e| engine("reading", &e))?;
    println!("   get({last}) → {}", value.map_or_else(|| "-".into(), |v| v.to_string()));
    db.close().await.map_err(|e| engine("closing", &e))?;
    if present != killed.acked {
        return Err(Failure::new(
            format!("{} acknowledged writes are missing after recovery", killed.acked - present),
            "this must never happen: report it with the output above",
        ));
    }
    Ok(())
}

fn current_exe() -> Result<std::path::PathBuf, Failure> {
    std::env::current_exe().map_err(|e| {
        Failure::from_error("finding this program to start the writer child", &e, "run memdb from a readable path")
    })
}

/// Starts the child, follows its acknowledgements live, kills it after `kill_after`,
/// and reads what it printed until it died.
fn run_child(exe: &Path, wal_dir: &Path, dsn: &str, kill_after: u64) -> Result<Killed, Failure> {
    let mut child = Command::new(exe)
        .arg("demo-writer")
        .arg("--wal-dir")
        .arg(wal_dir)
        .arg("--dsn")
        .arg(dsn)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Failure::from_error("starting the writer child", &e, "check that the memdb binary is executable")
        })?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or_else(|| Failure::new("the child has no stdout", "a bug: report it"))?;
    let mut live = Live::start();
    let mut acked = 0u64;
    let mut at_kill = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(n) = line.map_err(drop).and_then(|l| l.trim().parse::<u64>().map_err(drop)) else { break };
        acked = n;
        if at_kill.is_none() && acked >= kill_after {
            // SIGKILL: no destructor, no flush, no sync runs in the child.
            child.kill().map_err(|e| Failure::from_error("killing the writer child", &e, "a bug: report it"))?;
            at_kill = Some(acked);
        }
        live.update(&format!("   child pid {pid}: {} writes acknowledged", thousands(acked)));
    }
    let status = child.wait().map_err(|e| Failure::from_error("waiting for the child", &e, "a bug: report it"))?;
    live.finish(&format!("   child pid {pid}: {} writes acknowledged, then killed", thousands(acked)));
    let Some(at_kill) = at_kill else {
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        return Err(Failure::new(
            format!("the writer child stopped by itself after {acked} writes ({status}): {}", stderr.trim()),
            "see its error above",
        ));
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(Killed { acked, at_kill, signal: status.signal() })
}
