//! The drill's child: open memdb (recovering), report what it reads, wait for the
//! parent's check, then write at random — reporting every operation before it starts
//! and once acknowledged — until it is killed.

use std::io::{BufRead as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use super::model::{KEYS, Op, TABLES, key_name, key_space, token};
use super::rng::Rng;
use crate::{Config, Durability, MemDb};

/// Set in the child's environment: what it is and what to do.
pub(crate) const ROLE: &str = "MEMDB_DRILL_ROLE";
pub(crate) const DSN: &str = "MEMDB_DRILL_DSN";
pub(crate) const WAL_DIR: &str = "MEMDB_DRILL_WAL_DIR";
pub(crate) const DURABILITY: &str = "MEMDB_DRILL_DURABILITY";
pub(crate) const SEED: &str = "MEMDB_DRILL_CHILD_SEED";
pub(crate) const INLINE_FLUSH: &str = "MEMDB_DRILL_INLINE_FLUSH";
/// Set when PostgreSQL is stopped for this child's whole life.
pub(crate) const PG_DOWN: &str = "MEMDB_DRILL_PG_DOWN";

/// Small WAL segments, so that every few hundred operations rotate.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 10;

/// Whether this process is a drill's child (started by [`super::run`]).
#[must_use]
pub fn is_child() -> bool {
    std::env::var_os(ROLE).is_some()
}

/// The child's whole life: call it from `main` when [`is_child`]. It returns only on an
/// error (reported to the parent) or when the parent goes away; it is meant to be killed.
#[must_use]
pub fn child_main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(live()),
        Err(e) => Err(format!("starting the runtime: {e}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("X {e}"));
            ExitCode::FAILURE
        }
    }
}

/// One line to the parent, whole and flushed before anything else happens. A parent
/// that is gone ends the child.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if out.write_all(format!("{line}\n").as_bytes()).and_then(|()| out.flush()).is_err() {
        std::process::exit(2);
    }
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

async fn live() -> Result<(), String> {
    let mut config = Config::new(var(DSN)?, var(WAL_DIR)?);
    config.durability = match var(DURABILITY)?.as_str() {
        "sync" => Durability::Sync,
        ms => Durability::Periodic(Duration::from_millis(ms.parse().map_err(|e| format!("{DURABILITY}: {e}"))?)),
    };
    // The child flushes itself (concurrently or inline), so a kill during a flush is seen.
    config.flush_interval = Duration::from_secs(3600);
    config.wal_segment_bytes = SEGMENT_BYTES;
    let seed: u64 = var(SEED)?.parse().map_err(|e| format!("{SEED}: {e}"))?;
    let inline_flush = std::env::var_os(INLINE_FLUSH).is_some();
    let pg_down = std::env::var_os(PG_DOWN).is_some();

    let db = MemDb::open(config).await.map_err(|e| format!("open: {e}"))?;
    say("O");
    // The check needs PostgreSQL whole: the backlog is drained first. With PostgreSQL
    // down, the keys not in memory cannot be read: they are reported unknown.
    if !pg_down {
        db.flush(None).await.map_err(|e| format!("flush after open: {e}"))?;
    }
    for (table, key) in key_space() {
        match db.get(&table, &key).await {
            Ok(value) => say(&format!("R {table} {key} {}", token(value.map(|v| v.to_value()).as_ref()))),
            Err(crate::Error::Unavailable { .. } | crate::Error::Postgres(_)) if pg_down => {
                say(&format!("R {table} {key} ?"));
            }
            Err(e) => return Err(format!("get {table}/{key}: {e}")),
        }
    }
    say("E");
    let go = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("reading the parent's go: {e}"))?;
    if go.trim() != "go" {
        return Ok(()); // the parent is done
    }

    let mut rng = Rng(seed);
    if !inline_flush && !pg_down {
        let (db, mut rng) = (db.clone(), Rng(rng.next()));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
                flush(&db).await;
            }
        });
    }
    for n in 0u64.. {
        operate(&db, n, &mut rng, pg_down).await?;
        if inline_flush && !pg_down && rng.below(40) == 0 {
            flush(&db).await;
        }
    }
    Ok(())
}

async fn flush(db: &MemDb) {
    say("F");
    if let Err(e) = db.flush(None).await {
        say(&format!("X flush: {e}"));
        std::process::exit(1);
    }
    say("f");
}

/// One random operation, reported before it starts and once it is acknowledged. With
/// PostgreSQL down a patch (which may need to read it) is a put instead.
async fn operate(db: &MemDb, n: u64, rng: &mut Rng, pg_down: bool) -> Result<(), String> {
    let table = TABLES[usize::try_from(rng.below(TABLES.len() as u64)).unwrap_or(0)];
    let key = key_name(rng.below(KEYS));
    let roll = match rng.below(10) {
        5..8 if pg_down => 0,
        roll => roll,
    };
    let (op, arg) = match roll {
        0..5 => {
            // Mostly small records, some large, so that segments fill and rotate.
            let pad = if rng.below(20) == 0 { 2_000 + rng.below(8_000) } else { rng.below(200) };
            (Op::Put, Some(json!({"n": n, "pad": "x".repeat(usize::try_from(pad).unwrap_or(0))})))
        }
        5..8 => {
            let patch = if rng.below(3) == 0 { json!({"p": n, "pad": null}) } else { json!({"p": n}) };
            (Op::Patch, Some(patch))
        }
        _ => (Op::Delete, None),
    };
    say(&format!("W {n} {table} {key} {} {}", op.as_str(), token(arg.as_ref())));
    let result: Option<Value> = match (op, &arg) {
        (Op::Put, Some(value)) => db.upsert(table, &key, value).await.map(|()| arg.clone()),
        (Op::Patch, Some(patch)) => db.patch(table, &key, patch).await.map(|v| Some(v.to_value())),
        _ => db.delete(table, &key).await.map(|()| None),
    }
    .map_err(|e| format!("operation {n} ({} {table}/{key}): {e}", op.as_str()))?;
    say(&format!("A {n} {}", token(result.as_ref())));
    Ok(())
}
