//! The demo's last act: a writer child killed with SIGKILL mid-stream, then recovery
//! with PostgreSQL stopped — open replays the WAL and serves at once — then PostgreSQL
//! started and the backlog draining, and a check that every acknowledged write is in
//! PostgreSQL.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memdb::MemDb;
use memdb::postgres::PrivateCluster;
use serde_json::json;

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

/// `server` is the private PostgreSQL when the demo started one: it is stopped across
/// the restart (with PG_DSN set, PostgreSQL stays up).
pub async fn kill_and_recover(
    plan: &Plan,
    dsn: &str,
    wal_dir: &Path,
    pg: Pg,
    server: Option<&'static PrivateCluster>,
) -> Result<(), Failure> {
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

    match server {
        Some(server) => {
            println!("\n9. Restart with PostgreSQL stopped: open replays the WAL into memory and serves at once");
            drop(pg);
            blocking("stopping PostgreSQL", move || server.stop_server()).await?;
            println!("   PostgreSQL stopped (pg_ctl stop)");
        }
        None => println!(
            "\n9. Restart: open replays the WAL into memory and serves at once (PG_DSN is set, so PostgreSQL \
             stays up; unset it to see memdb start with PostgreSQL stopped)"
        ),
    }
    let mut config = super::engine_config(dsn, wal_dir);
    config.flush_interval = plan.interval;
    let started = Instant::now();
    let db = MemDb::open(config).await.map_err(|e| engine("reopening after the kill (recovery)", &e))?;
    let took = started.elapsed();
    let stats = db.stats();
    println!(
        "   open returned in {:.0} ms: {} WAL records replayed, {} to drain into PostgreSQL",
        took.as_secs_f64() * 1e3,
        thousands(stats.replayed_records),
        thousands(stats.replay_backlog as u64)
    );
    let last = format!("{PREFIX}{}", killed.acked);
    let started = Instant::now();
    let value = db.get(TABLE, &last).await.map_err(|e| engine("reading", &e))?;
    println!(
        "   get({last}) → {} ({:.1} µs, served from memory)",
        value.map_or_else(|| "-".into(), |v| v.to_string()),
        started.elapsed().as_secs_f64() * 1e6
    );
    let after = format!("{PREFIX}{}", killed.acked + 1);
    db.insert(TABLE, &after, &json!({"status": "ringing", "turns": 0}))
        .await
        .map_err(|e| engine("writing after the restart", &e))?;
    println!("   insert({after}) → acknowledged: in the WAL and in memory, whatever PostgreSQL does");
    if let Some(server) = server {
        for attempt in ["", " again"] {
            let started = Instant::now();
            let missed = db.get(TABLE, "call:1").await;
            let took = started.elapsed().as_secs_f64() * 1e3;
            match missed {
                Err(e) => println!("   get(call:1){attempt}, not in memory → {:.2} ms: {e}", took),
                Ok(_) => println!(
                    "   get(call:1){attempt}, not in memory → answered in {took:.2} ms (PostgreSQL was reached)"
                ),
            }
        }
        println!("   stats: postgres_up = {}", db.stats().postgres_up);
        println!("\n10. PostgreSQL starts: a background probe gets through and the backlog drains");
        blocking("starting PostgreSQL", move || server.start_server()).await?;
        println!("   PostgreSQL started (pg_ctl start)");
    }
    let pg = Pg::connect(&super::engine_config(dsn, Path::new(""))).await?;
    super::show::header();
    let acked = killed.acked + 1;
    super::show::watch_until("backlog drained", &db, &pg, PREFIX, Duration::from_secs(120), |db| {
        let stats = db.stats();
        stats.replay_backlog == 0 && stats.dirty_records == 0
    })
    .await?;
    let rows = pg.rows(PREFIX).await?;
    let present = pg.child_rows_through(PREFIX, acked).await?;
    println!(
        "   acknowledged: {} before the kill + 1 after the restart — in PostgreSQL now: {} {}",
        thousands(killed.acked),
        thousands(present),
        if present == acked { "(all of them)" } else { "(MISSING SOME: a bug, please report it)" }
    );
    if rows > present {
        println!(
            "   plus {} write(s) that reached the WAL but whose acknowledgement the kill cut off",
            thousands(rows - present)
        );
    }
    db.close().await.map_err(|e| engine("closing", &e))?;
    if present != acked {
        return Err(Failure::new(
            format!("{} acknowledged writes are missing after recovery", acked - present),
            "this must never happen: report it with the output above",
        ));
    }
    Ok(())
}

/// Runs `f` (a `pg_ctl` call) off the runtime's threads.
async fn blocking(
    doing: &'static str,
    f: impl FnOnce() -> Result<(), memdb::postgres::ClusterError> + Send + 'static,
) -> Result<(), Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure::from_error(doing, &e, "a bug in the demo: please report it"))?
        .map_err(|e| Failure::from_error(doing, &e, "check the private PostgreSQL's log"))
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
