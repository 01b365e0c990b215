//! memdb side by side (issue 5): one telephony workload against memdb `Periodic` and
//! `Sync`, PostgreSQL directly (an upsert per operation, `synchronous_commit` on and off,
//! one connection per task) and a bare concurrent map, with the limits beside — the
//! disk's raw fdatasync rate and a plain COPY into the same GIN-indexed table — then the
//! scale series (10k … 5M records: insert, get, memory, flush, crash recovery: open with
//! PostgreSQL up and down against the WAL-only replay, the drain and the foreground meanwhile).
//!
//! Prints a Markdown table of ops/s, p50/p99/p99.9 per operation kind, flush rows/s, WAL
//! bytes per record, memory per cached record, every memdb figure as a ratio to every
//! baseline and the issue's goals; writes it as `results.md` with `results.json` and
//! `results.svg` (throughput and tail latency) under `--out` (default `benches/results`;
//! `--quick` writes `quick.*` instead).
//!
//! ```sh
//! cargo bench --bench compare --features internals                   # full: ~15 min on 2 cores
//! cargo bench --bench compare --features internals -- --quick        # ~2 min, sizes 10k and 100k
//! cargo bench --bench compare --features internals -- --only compare # or --only scale (alias --scale)
//! cargo bench --bench compare --features internals -- --sizes 10k,1M --concurrency 64 --out /tmp/r
//! ```
//!
//! PostgreSQL is `PG_DSN` when set, else a private throwaway cluster started for the run
//! with PostgreSQL's crash-safe defaults (`PrivateCluster::start_durable`), so
//! `synchronous_commit=on` is a real commit. WAL files go under `MEMDB_BENCH_DIR` if set,
//! else cargo's `CARGO_TARGET_TMPDIR`: point it at the disk the WAL will use. Without
//! `--bench` (as under `cargo test --benches`) it runs a seconds-long smoke and writes
//! nothing.

#[path = "../common/mod.rs"]
mod common;

mod args;
mod cpu;
mod hist;
mod judge;
mod limits;
mod phases;
mod plot;
mod report;
mod scale;
mod systems;
mod workload;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use memdb::postgres::PrivateCluster;

use crate::args::{Mode, Settings};
use crate::common::record::{Call, RECORD_BYTES};
use crate::common::setup::bench_root;
use crate::phases::Ctx;
use crate::report::{Meta, Report};
use crate::systems::Which;
use crate::systems::postgres::connect;
use crate::workload::Mix;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "?".into(), |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// PostgreSQL's version and the settings that decide what a commit costs.
async fn describe_postgres(dsn: &str, private: bool) -> String {
    let client = connect(dsn).await;
    let mut facts = Vec::new();
    for setting in ["server_version", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers"] {
        let row = client.query_one(&format!("SHOW {setting}"), &[]).await.expect("SHOW");
        facts.push(format!("{setting}={}", row.get::<_, String>(0)));
    }
    format!("{} ({})", if private { "private cluster, crash-safe defaults" } else { "from PG_DSN" }, facts.join(" "))
}

fn main() {
    let settings = Settings::from_args();
    let began = Instant::now();
    assert_eq!(serde_json::to_string(&Call::new(123_456)).expect("serialise").len(), RECORD_BYTES);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let pg_dsn = std::env::var("PG_DSN").ok().filter(|d| !d.trim().is_empty());
    // Kept alive to the end of the run; dropping it stops the server.
    let (cluster, dsn) = match pg_dsn {
        Some(dsn) => (None, dsn),
        None => {
            let cluster = PrivateCluster::start_durable().expect("start a private PostgreSQL");
            let dsn = rt.block_on(cluster.create_database("memdb_compare")).expect("create the bench database");
            (Some(cluster), dsn)
        }
    };
    let postgres = rt.block_on(describe_postgres(&dsn, cluster.is_some()));
    let root = bench_root();
    eprintln!("memdb compare ({} run): PostgreSQL {postgres}; WAL under {}", settings.mode.name(), root.display());
    let ctx = Ctx { rt, dsn, root, settings };
    let s = &ctx.settings;
    let mut report = Report {
        meta: Meta {
            mode: s.mode.name().into(),
            unix_time: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            git: git_commit(),
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            loadavg_start: loadavg(),
            postgres,
            wal_dir: ctx.root.display().to_string(),
            record_bytes: RECORD_BYTES,
            tasks: s.tasks,
            live_calls: s.tasks * s.calls_per_task,
            ..Meta::default()
        },
        ..Report::default()
    };

    if s.compare {
        eprintln!("fdatasync rate of the WAL's disk …");
        report.fdatasync = Some(limits::fdatasync_rate(&ctx.root, s.fsync_time));
        let mut run_id = 10;
        for mix in [Mix::Insert, Mix::Telephony] {
            for which in Which::ALL {
                run_id += 1;
                report.runs.push(phases::workload_run(&ctx, which, mix, run_id));
            }
        }
        eprintln!("flush against COPY …");
        report.flush = Some(phases::flush_vs_copy(&ctx));
        eprintln!("latency while a flush runs …");
        report.under_flush = Some(phases::under_flush(&ctx));
        eprintln!("get hits and memory against the bare map …");
        let (hits, memory) = phases::get_hit_and_memory(&ctx);
        report.get_hit = hits;
        report.memory = Some(memory);
    }
    if s.scale {
        for &n in &s.sizes {
            eprintln!("scale: {n} records …");
            report.scale.push(scale::point(&ctx, n));
        }
    }
    report.ratios = judge::ratios(&report);
    report.goals = judge::goals(&report, s.tasks);
    report.meta.loadavg_end = loadavg();
    report.meta.seconds_total = began.elapsed().as_secs_f64();

    let markdown = report.markdown();
    println!("{markdown}");
    if let Some(out) = &s.out {
        std::fs::create_dir_all(out).expect("create the output directory");
        let stem = if s.mode == Mode::Quick { "quick" } else { "results" };
        let json = serde_json::to_string_pretty(&report).expect("serialise the report");
        for (ext, text) in [("md", markdown), ("json", json), ("svg", plot::svg(&report))] {
            let path = out.join(format!("{stem}.{ext}"));
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            eprintln!("wrote {}", path.display());
        }
    }
    drop(ctx);
    drop(cluster);
}
