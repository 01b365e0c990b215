//! Ratios of every memdb figure to every baseline, and the goals judged on them
//! — all from numbers of the same run.

use crate::report::{Goal, Ratio, Report, Run, fmt_rate};
use crate::systems::Which;

/// The original Python MemDB's insert rate, the yardstick.
const PYTHON_INSERTS_PER_S: f64 = 100_000.0;

fn run<'a>(report: &'a Report, workload: &str, which: Which) -> Option<&'a Run> {
    report.runs.iter().find(|r| r.workload == workload && r.system == which.name())
}

pub fn ratios(report: &Report) -> Vec<Ratio> {
    let mut out = Vec::new();
    for memdb in [Which::MemdbPeriodic, Which::MemdbSync] {
        for baseline in [Which::PgSyncOn, Which::PgSyncOff, Which::BareMap] {
            for workload in ["insert", "telephony"] {
                let (Some(m), Some(b)) = (run(report, workload, memdb), run(report, workload, baseline)) else {
                    continue;
                };
                out.push(Ratio {
                    figure: format!("{workload} workload: ops/s"),
                    memdb: memdb.name(),
                    baseline: baseline.name(),
                    memdb_value: m.ops_per_s,
                    baseline_value: b.ops_per_s,
                    times_better: m.ops_per_s / b.ops_per_s.max(f64::MIN_POSITIVE),
                });
                for l in &m.latency {
                    let Some(bl) = b.latency.iter().find(|x| x.op == l.op) else { continue };
                    out.push(Ratio {
                        figure: format!("{workload} workload: {} p99.9 (µs)", l.op),
                        memdb: memdb.name(),
                        baseline: baseline.name(),
                        memdb_value: l.p999_us,
                        baseline_value: bl.p999_us,
                        times_better: bl.p999_us / l.p999_us.max(f64::MIN_POSITIVE),
                    });
                }
            }
        }
        if let (Some(m), Some(f)) = (run(report, "insert", memdb), &report.fdatasync) {
            out.push(Ratio {
                figure: "insert workload: ops/s vs fdatasyncs/s".into(),
                memdb: memdb.name(),
                baseline: "raw fdatasync (limit of one sync per write)",
                memdb_value: m.ops_per_s,
                baseline_value: f.per_s,
                times_better: m.ops_per_s / f.per_s.max(f64::MIN_POSITIVE),
            });
        }
    }
    if let Some(f) = &report.flush {
        out.push(Ratio {
            figure: format!("flush rows/s ({} records)", f.records),
            memdb: "memdb flush",
            baseline: "plain COPY into the same GIN-indexed table",
            memdb_value: f.memdb_rows_per_s,
            baseline_value: f.copy_rows_per_s,
            times_better: f.memdb_rows_per_s / f.copy_rows_per_s.max(f64::MIN_POSITIVE),
        });
    }
    out
}

pub fn goals(report: &Report, tasks: usize) -> Vec<Goal> {
    let mut goals = Vec::new();
    let insert = |w| run(report, "insert", w).map(|r| r.ops_per_s);
    let (periodic, sync, pg_on) = (insert(Which::MemdbPeriodic), insert(Which::MemdbSync), insert(Which::PgSyncOn));
    let ratio_goal = |goal, m: Option<f64>, b: Option<f64>, need: f64, what: &str| match (m, b) {
        (Some(m), Some(b)) => Goal {
            goal,
            measured: format!(
                "{} vs {} ops/s = {:.1}× ({what})",
                fmt_rate(m),
                fmt_rate(b),
                m / b.max(f64::MIN_POSITIVE)
            ),
            met: Some(m / b.max(f64::MIN_POSITIVE) >= need),
        },
        _ => Goal { goal, measured: "not measured".into(), met: None },
    };
    goals.push(ratio_goal(
        "insert Periodic ≥ 100× direct PostgreSQL upsert, synchronous_commit=on",
        periodic,
        pg_on,
        100.0,
        &format!("{tasks} tasks each"),
    ));
    goals.push(ratio_goal(
        "insert Periodic ≥ 10× the original Python's ~100k/s",
        periodic,
        Some(PYTHON_INSERTS_PER_S),
        10.0,
        "Python's figure quoted, not measured",
    ));
    goals.push(match report.get_hit.iter().map(|g| (g.threads, g.ratio)).collect::<Vec<_>>() {
        hits if !hits.is_empty() => Goal {
            goal: "get hit ≥ 0.8× the bare map",
            measured: hits.iter().map(|(t, r)| format!("{r:.2}× on {t} thread(s)")).collect::<Vec<_>>().join(", "),
            met: Some(hits.iter().all(|(_, r)| *r >= 0.8)),
        },
        _ => Goal { goal: "get hit ≥ 0.8× the bare map", measured: "not measured".into(), met: None },
    });
    goals.push(ratio_goal(
        "Sync ≥ 3× direct PostgreSQL synchronous_commit=on at 64 concurrent writers",
        sync,
        pg_on,
        3.0,
        &format!("{tasks} writers each"),
    ));
    goals.push(match &report.under_flush {
        Some(u) => {
            let worst = u.during_flush.iter().max_by(|a, b| a.p999_us.total_cmp(&b.p999_us));
            Goal {
                goal: "p99.9 of every foreground op ≤ 100 µs while a flush of 100k runs",
                measured: worst.map_or_else(
                    || "no calls".into(),
                    |w| format!("worst: {} p99.9 {:.1} µs during a flush of {} records", w.op, w.p999_us, u.records),
                ),
                met: worst.map(|w| w.p999_us <= 100.0),
            }
        }
        None => Goal {
            goal: "p99.9 of every foreground op ≤ 100 µs while a flush of 100k runs",
            measured: "not measured".into(),
            met: None,
        },
    });
    let one_m = report.scale.iter().find(|p| p.records == 1_000_000);
    let goal =
        "open with a backlog of 1M unflushed records ≤ 1.5 s and ≤ 1.5× the WAL-only replay, PostgreSQL up or down";
    goals.push(match one_m {
        Some(p) => {
            let slowest = p.open_up_s.max(p.open_down_s);
            Goal {
                goal,
                measured: format!(
                    "open {:.2} s (PostgreSQL down: {:.2} s) vs WAL-only replay {:.2} s = {:.2}×",
                    p.open_up_s,
                    p.open_down_s,
                    p.wal_replay_s,
                    slowest / p.wal_replay_s.max(f64::MIN_POSITIVE)
                ),
                met: Some(slowest <= 1.5 && slowest <= 1.5 * p.wal_replay_s),
            }
        }
        None => Goal { goal, measured: "not measured (scale sizes without 1M)".into(), met: None },
    });
    let goal =
        "the drain of 1M records into PostgreSQL no slower than flushing them, foreground p99.9 ≤ 100 µs meanwhile";
    goals.push(match one_m {
        Some(p) => Goal {
            goal,
            measured: format!(
                "drain {:.1} s vs flush {:.1} s = {:.2}×; p99.9 get {:.1} µs, insert {:.1} µs",
                p.drain_s,
                p.flush_s,
                p.drain_s / p.flush_s.max(f64::MIN_POSITIVE),
                p.drain_get_p999_us,
                p.drain_insert_p999_us
            ),
            met: Some(p.drain_s <= p.flush_s * 1.1 && p.drain_get_p999_us.max(p.drain_insert_p999_us) <= 100.0),
        },
        None => Goal { goal, measured: "not measured (scale sizes without 1M)".into(), met: None },
    });
    goals
}
