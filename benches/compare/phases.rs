//! The comparison's measurements, one function each: the workload against every system,
//! flush against COPY, latency under a flush, get hits and memory against the bare map.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use memdb::{Durability, MemDb};
use serde_json::value::RawValue;
use tokio::runtime::Runtime;

use crate::args::Settings;
use crate::common::bare_map::BareMap;
use crate::common::heap::{COUNTING, Heap};
use crate::common::record::{Call, Keys, key};
use crate::limits;
use crate::report::{Flush, GetHit, Latency, Memory, Run, UnderFlush, fmt_rate};
use crate::systems::bare_map::BareMapSystem;
use crate::systems::memdb::MemdbSystem;
use crate::systems::postgres::{PostgresSystem, connect};
use crate::systems::{System, Which};
use crate::workload::{self, Mix, Outcome, Plan, Until};

/// What every phase needs.
pub struct Ctx {
    pub rt: Runtime,
    pub dsn: String,
    /// Where WAL directories and the fdatasync probe go.
    pub root: PathBuf,
    pub settings: Settings,
}

impl Ctx {
    /// A table name unique to this process (PG_DSN may be shared).
    pub fn table(&self, tag: &str) -> String {
        format!("cmp{}_{tag}", std::process::id())
    }

    /// Drops a memdb table and its catalogue row.
    pub async fn drop_memdb_table(&self, name: &str) {
        let client = connect(&self.dsn).await;
        let _ = client.batch_execute(&format!("DROP TABLE IF EXISTS memdb_{name}")).await;
        let _ = client.execute("DELETE FROM memdb_tables WHERE name = $1", &[&name]).await;
    }
}

fn durability(which: Which) -> Durability {
    if which == Which::MemdbSync { Durability::Sync } else { Durability::default() }
}

/// Runs `mix` against `which` for the configured time at the configured concurrency.
pub fn workload_run(ctx: &Ctx, which: Which, mix: Mix, run_id: u64) -> Run {
    let s = &ctx.settings;
    let plan = Plan {
        mix,
        tasks: s.tasks,
        calls_per_task: if mix == Mix::Insert { 1 } else { s.calls_per_task },
        until: Until::Elapsed(if mix == Mix::Insert { s.insert_time } else { s.telephony_time }),
        pace: None,
        run_id,
    };
    let table = ctx.table(&format!("run{run_id}"));
    let (outcome, wal_bytes) = ctx.rt.block_on(async {
        match which {
            Which::MemdbPeriodic | Which::MemdbSync => {
                let system = Arc::new(MemdbSystem::open(&ctx.dsn, &ctx.root, durability(which), &table).await);
                let before = system.db.stats().wal_bytes;
                let outcome = workload::run(Arc::clone(&system), &plan).await;
                let wal = system.db.stats().wal_bytes.saturating_sub(before);
                // Dropped without a flush: only the foreground path is measured here.
                drop(system);
                ctx.drop_memdb_table(&table).await;
                let per_record = wal as f64 / outcome.writes().max(1) as f64;
                (outcome, Some(per_record))
            }
            Which::PgSyncOn | Which::PgSyncOff => {
                let system = Arc::new(PostgresSystem::open(&ctx.dsn, &table, s.tasks, which == Which::PgSyncOn).await);
                let outcome = workload::run(Arc::clone(&system), &plan).await;
                system.drop_table().await;
                (outcome, None)
            }
            Which::BareMap => (workload::run(Arc::new(BareMapSystem(BareMap::new())), &plan).await, None),
        }
    });
    assert_eq!(outcome.misses, 0, "{}: every get of a live call finds it", which.name());
    let run = Run {
        workload: if mix == Mix::Insert { "insert" } else { "telephony" },
        system: which.name(),
        tasks: s.tasks,
        seconds: outcome.elapsed.as_secs_f64(),
        ops: outcome.ops(),
        ops_per_s: outcome.rate(),
        misses: outcome.misses,
        latency: Latency::all(&outcome),
        wal_bytes_per_record: wal_bytes,
        cpu_us_per_op: outcome.cpu.on.as_secs_f64() * 1e6 / outcome.ops().max(1) as f64,
        cpu_waiting_pct: outcome.cpu.waiting_pct(),
    };
    eprintln!(
        "  {} / {}: {} ops/s ({} ops in {:.1} s, {:.2} µs CPU/op, {:.0}% waiting for a CPU){}",
        run.workload,
        run.system,
        fmt_rate(run.ops_per_s),
        run.ops,
        run.seconds,
        run.cpu_us_per_op,
        run.cpu_waiting_pct,
        run.latency
            .iter()
            .map(|l| format!("; {} p50 {:.1} p99 {:.1} p99.9 {:.1} µs", l.op, l.p50_us, l.p99_us, l.p999_us))
            .collect::<String>()
    );
    run
}

/// The same rows, flushed by memdb and COPYed directly, each into a fresh GIN-indexed table.
pub fn flush_vs_copy(ctx: &Ctx) -> Flush {
    let n = ctx.settings.flush_records;
    let rows: Vec<(String, String)> = (0..n).map(|i| (key(i), Call::json(i))).collect();
    let table = ctx.table("flush");
    let (memdb_time, pg_bytes, copy_time) = ctx.rt.block_on(async {
        let system = MemdbSystem::open(&ctx.dsn, &ctx.root, Durability::default(), &table).await;
        for (k, json) in &rows {
            let value = RawValue::from_string(json.clone()).expect("raw JSON");
            system.db.insert(&table, k, &*value).await.expect("insert");
        }
        let start = Instant::now();
        let flushed = system.db.flush(None).await.expect("flush");
        let memdb_time = start.elapsed();
        assert_eq!(flushed as u64, n, "the flush wrote every record");
        let client = connect(&ctx.dsn).await;
        let bytes: i64 = client
            .query_one(&format!("SELECT pg_total_relation_size('memdb_{table}')"), &[])
            .await
            .expect("relation size")
            .get(0);
        system.db.close().await.expect("close");
        drop(system);
        ctx.drop_memdb_table(&table).await;
        let copy_time = limits::copy_rows(&client, &ctx.table("copy"), &rows).await;
        (memdb_time, bytes as f64 / n as f64, copy_time)
    });
    let flush = Flush {
        records: n,
        memdb_rows_per_s: n as f64 / memdb_time.as_secs_f64(),
        copy_rows_per_s: n as f64 / copy_time.as_secs_f64(),
        pg_bytes_per_row: pg_bytes,
    };
    eprintln!(
        "  flush {n}: memdb {} rows/s, COPY {} rows/s; PostgreSQL {:.0} B/row",
        fmt_rate(flush.memdb_rows_per_s),
        fmt_rate(flush.copy_rows_per_s),
        flush.pg_bytes_per_row
    );
    flush
}

/// Tasks of the paced workload of [`under_flush`], and the calls each offers per ms.
const PACED_TASKS: usize = 4;
const PACED_OPS_PER_MS: usize = 5;

/// The telephony workload, paced, on memdb Periodic: first alone, then while a flush of
/// `flush_records` preloaded dirty records runs.
pub fn under_flush(ctx: &Ctx) -> UnderFlush {
    let n = ctx.settings.flush_records;
    let table = ctx.table("lat");
    let plan = |until, run_id| Plan {
        mix: Mix::Telephony,
        tasks: PACED_TASKS,
        calls_per_task: ctx.settings.calls_per_task,
        until,
        pace: Some(PACED_OPS_PER_MS),
        run_id,
    };
    let (quiet, busy, flush_time) = ctx.rt.block_on(async {
        let system = Arc::new(MemdbSystem::open(&ctx.dsn, &ctx.root, Durability::default(), &table).await);
        let mut call = Call::new(0);
        for i in 0..n {
            call.vary(i);
            system.put(0, &key(9_000_000_000 + i), &call, true).await;
        }
        let quiet = workload::run(Arc::clone(&system), &plan(Until::Elapsed(ctx.settings.quiet_time), 1)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let ops = tokio::spawn({
            let system = Arc::clone(&system);
            let plan = plan(Until::Flag(Arc::clone(&stop)), 2);
            async move { workload::run(system, &plan).await }
        });
        // Let the paced tasks get going before the flush starts.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        let flushed = system.db.flush(None).await.expect("flush");
        let flush_time = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let busy: Outcome = ops.await.expect("workload");
        assert!(flushed as u64 >= n, "the flush wrote the preloaded records");
        system.db.close().await.expect("close");
        drop(system);
        ctx.drop_memdb_table(&table).await;
        (quiet, busy, flush_time)
    });
    let u = UnderFlush {
        records: n,
        flush_seconds: flush_time.as_secs_f64(),
        offered_ops_per_s: (PACED_TASKS * PACED_OPS_PER_MS * 1_000) as f64,
        quiet: Latency::all(&quiet),
        during_flush: Latency::all(&busy),
    };
    for l in &u.during_flush {
        eprintln!(
            "  during a flush of {n}: {} p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} µs",
            l.op, l.p50_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    u
}

/// Runs `run(state, thread)` on `threads` threads that start together after `setup()`;
/// first start to last finish.
fn parallel<S>(threads: usize, setup: impl Fn() -> S + Sync, run: impl Fn(&mut S, usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, setup, run) = (&barrier, &setup, &run);
                let thread = std::thread::Builder::new().name(format!("bench-get-{t}"));
                thread
                    .spawn_scoped(s, move || {
                        let mut state = setup();
                        barrier.wait();
                        let start = Instant::now();
                        run(&mut state, t);
                        (start, Instant::now())
                    })
                    .expect("spawn a bench thread")
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("a thread");
    spans.iter().map(|s| s.1).max().expect("a thread") - start
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// `count` gets over `keys` (from `offset`) split over `threads` threads.
fn memdb_gets(db: &MemDb, table: &str, keys: &Keys, threads: usize, offset: u64, count: u64) -> Duration {
    let each = count / threads as u64;
    parallel(threads, current_thread, |rt, t| {
        let base = offset + t as u64 * each;
        rt.block_on(async {
            for i in base..base + each {
                let got = db.get(table, keys.get(i)).await.expect("get");
                assert!(std::hint::black_box(got).is_some(), "a hit");
            }
        });
    })
}

fn bare_gets(map: &BareMap, keys: &Keys, threads: usize, offset: u64, count: u64) -> Duration {
    let each = count / threads as u64;
    parallel(
        threads,
        || (),
        |(), t| {
            let base = offset + t as u64 * each;
            for i in base..base + each {
                assert!(std::hint::black_box(map.get(keys.get(i))).is_some(), "a hit");
            }
        },
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Loads the same records into memdb and the bare map, counting heap bytes; then gets
/// on hits, in paired rounds (memdb and the map back to back, alternating who goes first,
/// so both see the same neighbours).
pub fn get_hit_and_memory(ctx: &Ctx) -> (Vec<GetHit>, Memory) {
    let s = &ctx.settings;
    let n = s.get_records;
    let table = ctx.table("mem");
    let keys = Keys::sequential(n);
    let values: Vec<Box<RawValue>> = (0..n).map(|i| RawValue::from_string(Call::json(i)).expect("raw JSON")).collect();
    let system = ctx.rt.block_on(async {
        let system = MemdbSystem::open(&ctx.dsn, &ctx.root, Durability::default(), &table).await;
        // Memory does not depend on PostgreSQL's index; without it the flush that makes
        // the records clean takes a fraction of the time.
        let client = connect(&ctx.dsn).await;
        client.batch_execute(&format!("DROP INDEX memdb_{table}_data_gin")).await.expect("drop the GIN index");
        system
    });
    COUNTING.store(true, Ordering::SeqCst);
    let start = Heap::now();
    ctx.rt.block_on(async {
        for i in 0..n {
            system.db.insert(&table, keys.get(i), &*values[i as usize]).await.expect("insert");
        }
    });
    let dirty = Heap::now();
    ctx.rt.block_on(system.db.flush(None)).expect("flush");
    let clean = Heap::now();
    let map = BareMap::new();
    let map_start = Heap::now();
    for i in 0..n {
        map.insert(keys.get(i), values[i as usize].get());
    }
    let map_end = Heap::now();
    COUNTING.store(false, Ordering::SeqCst);
    let (d_bytes, ..) = dirty.per_record(&start, n);
    let (c_bytes, _, c_rss, _) = clean.per_record(&start, n);
    let (m_bytes, _, m_rss, _) = map_end.per_record(&map_start, n);
    let memory = Memory {
        records: n,
        method: "live heap bytes requested, by a counting global allocator",
        memdb_dirty_bytes: d_bytes,
        memdb_clean_bytes: c_bytes,
        memdb_clean_rss_bytes: c_rss,
        bare_bytes: m_bytes,
        bare_rss_bytes: m_rss,
    };
    eprintln!("  memory per record ({n}): memdb clean {c_bytes:.0} B, dirty {d_bytes:.0} B; bare map {m_bytes:.0} B");

    let picks = Keys::random(n, usize::try_from(s.gets_per_round * 2).unwrap_or(1 << 22), 3);
    let mut results = Vec::new();
    for threads in [1, 2] {
        let count = s.gets_per_round;
        let (mut memdb_rates, mut bare_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..s.get_rounds {
            let m = || memdb_gets(&system.db, &table, &picks, threads, 0, count);
            let b = || bare_gets(&map, &picks, threads, count, count);
            let (mt, bt) = if round.is_multiple_of(2) {
                let mt = m();
                (mt, b())
            } else {
                let bt = b();
                (m(), bt)
            };
            let (mr, br) = (count as f64 / mt.as_secs_f64(), count as f64 / bt.as_secs_f64());
            memdb_rates.push(mr);
            bare_rates.push(br);
            ratios.push(mr / br);
        }
        let hit = GetHit {
            threads,
            records: n,
            memdb_per_s: median(memdb_rates),
            bare_per_s: median(bare_rates),
            ratio: median(ratios.clone()),
            round_ratios: ratios,
        };
        eprintln!(
            "  get hit, {threads} thread(s): memdb {}/s, bare map {}/s, paired ratio {:.2}",
            fmt_rate(hit.memdb_per_s),
            fmt_rate(hit.bare_per_s),
            hit.ratio
        );
        results.push(hit);
    }
    ctx.rt.block_on(async {
        system.db.close().await.expect("close");
        drop(system);
        ctx.drop_memdb_table(&table).await;
    });
    (results, memory)
}
