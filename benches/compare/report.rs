//! What a run found, as one serialisable value, and its Markdown rendering (the table
//! printed at the end and written as results.md beside results.json).

use std::fmt::Write as _;

use serde::Serialize;

use crate::hist::Hist;
use crate::workload::{Op, Outcome};

#[derive(Serialize, Default)]
pub struct Report {
    pub meta: Meta,
    /// One per (workload, system).
    pub runs: Vec<Run>,
    pub fdatasync: Option<Fsync>,
    pub flush: Option<Flush>,
    pub under_flush: Option<UnderFlush>,
    pub get_hit: Vec<GetHit>,
    pub memory: Option<Memory>,
    pub ratios: Vec<Ratio>,
    pub goals: Vec<Goal>,
    pub scale: Vec<ScalePoint>,
}

#[derive(Serialize, Default)]
pub struct Meta {
    pub mode: String,
    pub unix_time: u64,
    pub git: String,
    pub cpus: usize,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub postgres: String,
    pub wal_dir: String,
    pub record_bytes: usize,
    pub tasks: usize,
    pub live_calls: usize,
    pub seconds_total: f64,
}

#[derive(Serialize, Clone)]
pub struct Latency {
    pub op: &'static str,
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    pub fn of(op: Op, h: &Hist) -> Self {
        let us = |n: u64| n as f64 / 1e3;
        Self {
            op: op.name(),
            count: h.count(),
            p50_us: us(h.quantile(0.5)),
            p99_us: us(h.quantile(0.99)),
            p999_us: us(h.quantile(0.999)),
            max_us: us(h.max()),
        }
    }

    /// Every op kind that ran.
    pub fn all(outcome: &Outcome) -> Vec<Self> {
        Op::ALL.iter().zip(&outcome.hists).filter(|(_, h)| h.count() > 0).map(|(op, h)| Self::of(*op, h)).collect()
    }
}

#[derive(Serialize)]
pub struct Run {
    pub workload: &'static str,
    pub system: &'static str,
    pub tasks: usize,
    pub seconds: f64,
    pub ops: u64,
    pub ops_per_s: f64,
    pub misses: u64,
    pub latency: Vec<Latency>,
    /// memdb only: WAL bytes appended per record written.
    pub wal_bytes_per_record: Option<f64>,
    /// This process's CPU per operation (PostgreSQL's server not included), in µs.
    pub cpu_us_per_op: f64,
    /// Share of this process's runnable time spent waiting for a CPU (neighbours' load).
    pub cpu_waiting_pct: f64,
}

impl Run {
    pub fn p999(&self, op: &str) -> Option<f64> {
        self.latency.iter().find(|l| l.op == op).map(|l| l.p999_us)
    }
}

#[derive(Serialize)]
pub struct Fsync {
    pub per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

#[derive(Serialize)]
pub struct Flush {
    pub records: u64,
    pub memdb_rows_per_s: f64,
    pub copy_rows_per_s: f64,
    /// PostgreSQL's on-disk bytes per row (heap, TOAST, primary key, GIN).
    pub pg_bytes_per_row: f64,
}

#[derive(Serialize)]
pub struct UnderFlush {
    pub records: u64,
    pub flush_seconds: f64,
    pub offered_ops_per_s: f64,
    pub quiet: Vec<Latency>,
    pub during_flush: Vec<Latency>,
}

#[derive(Serialize)]
pub struct GetHit {
    pub threads: usize,
    pub records: u64,
    pub memdb_per_s: f64,
    pub bare_per_s: f64,
    /// Median of the paired rounds' memdb/bare ratios.
    pub ratio: f64,
    pub round_ratios: Vec<f64>,
}

#[derive(Serialize)]
pub struct Memory {
    pub records: u64,
    pub method: &'static str,
    pub memdb_dirty_bytes: f64,
    pub memdb_clean_bytes: f64,
    pub memdb_clean_rss_bytes: f64,
    pub bare_bytes: f64,
    pub bare_rss_bytes: f64,
}

#[derive(Serialize)]
pub struct Ratio {
    pub figure: String,
    pub memdb: &'static str,
    pub baseline: &'static str,
    pub memdb_value: f64,
    pub baseline_value: f64,
    /// How many times better memdb is (throughput: memdb/baseline; latency:
    /// baseline/memdb).
    pub times_better: f64,
}

#[derive(Serialize)]
pub struct Goal {
    pub goal: &'static str,
    pub measured: String,
    /// `None`: not measured in this run.
    pub met: Option<bool>,
}

#[derive(Serialize)]
pub struct ScalePoint {
    pub records: u64,
    pub insert_per_s: f64,
    pub get_per_s: f64,
    /// Live heap bytes per record while dirty (counting allocator).
    pub heap_bytes_per_record: f64,
    pub rss_bytes_per_record: f64,
    pub wal_bytes_per_record: f64,
    pub flush_s: f64,
    /// The WAL opened and read alone (no engine): the floor of any recovery.
    pub wal_replay_s: f64,
    /// `MemDb::open` after the crash, PostgreSQL up / unreachable: until it returns.
    pub open_up_s: f64,
    pub open_down_s: f64,
    /// From open's return until PostgreSQL holds the whole backlog.
    pub drain_s: f64,
    /// The foreground's p99.9 meanwhile (one task, paced: 5 gets and 5 inserts per ms).
    pub drain_get_p999_us: f64,
    pub drain_insert_p999_us: f64,
}

pub fn fmt_rate(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else if rate >= 1e4 {
        format!("{:.0}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

/// Microseconds with their unit: `4.2 µs`, `623 µs`, `151 ms`.
pub fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.0} ms", us / 1e3)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

fn lat_cell(latency: &[Latency], op: &str) -> String {
    latency
        .iter()
        .find(|l| l.op == op)
        .map_or_else(|| "–".into(), |l| format!("{} / {} / {}", fmt_us(l.p50_us), fmt_us(l.p99_us), fmt_us(l.p999_us)))
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "MET",
        Some(false) => "MISSED",
        None => "not run",
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.meta;
        let mut s = String::new();
        let _ = writeln!(s, "# memdb side by side ({} run)\n", m.mode);
        let _ = writeln!(
            s,
            "Commit `{}`, {} CPUs, load average {} at start and {} at end, {:.0} s in all. PostgreSQL: {}. \
             WAL directory: {}. Records: {} bytes of JSON. Workloads: {} concurrent tasks, {} live calls.\n",
            m.git,
            m.cpus,
            m.loadavg_start,
            m.loadavg_end,
            m.seconds_total,
            m.postgres,
            m.wal_dir,
            m.record_bytes,
            m.tasks,
            m.live_calls
        );
        if !self.goals.is_empty() {
            let _ = writeln!(s, "## Goals\n\n| goal | measured (same run) | verdict |\n|---|---|---|");
            for g in &self.goals {
                let _ = writeln!(s, "| {} | {} | {} |", g.goal, g.measured, verdict(g.met));
            }
            s.push('\n');
        }
        if !self.runs.is_empty() {
            let _ = writeln!(
                s,
                "## Throughput and latency\n\nLatency is p50 / p99 / p99.9, each call timed alone. `insert` \
                 creates a new key; the telephony workload creates a call, reads it 3 times, updates it \
                 (status, turns) 4 times with 3 reads after each, and deletes every other call. CPU/op is this \
                 process's CPU time (all threads, the driver included; PostgreSQL's server not counted) per operation; \
                 wait is the share of its runnable time spent waiting for a CPU (the neighbours' load).\n\n\
                 | workload | system | ops/s | insert | get | update | delete | WAL B/record | CPU/op (wait) |\n|---|---|---|---|---|---|---|---|---|"
            );
            for r in &self.runs {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} µs ({:.0}%) |",
                    r.workload,
                    r.system,
                    fmt_rate(r.ops_per_s),
                    lat_cell(&r.latency, "insert"),
                    lat_cell(&r.latency, "get"),
                    lat_cell(&r.latency, "update"),
                    lat_cell(&r.latency, "delete"),
                    r.wal_bytes_per_record.map_or_else(|| "–".into(), |b| format!("{b:.0}")),
                    r.cpu_us_per_op,
                    r.cpu_waiting_pct,
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s, "## Limits, flush and memory\n\n| figure | value |\n|---|---|");
        if let Some(f) = &self.fdatasync {
            let _ = writeln!(
                s,
                "| raw fdatasync of the WAL's disk (4 KiB overwrite, 1 thread) | {}/s (p50 {}, p99 {}) |",
                fmt_rate(f.per_s),
                fmt_us(f.p50_us),
                fmt_us(f.p99_us)
            );
        }
        if let Some(f) = &self.flush {
            let _ = writeln!(
                s,
                "| flush of {} dirty records into the GIN-indexed table | memdb {} rows/s; plain COPY into an identical table {} rows/s ({:.2}×) |",
                f.records,
                fmt_rate(f.memdb_rows_per_s),
                fmt_rate(f.copy_rows_per_s),
                f.memdb_rows_per_s / f.copy_rows_per_s.max(f64::MIN_POSITIVE)
            );
            let _ =
                writeln!(s, "| PostgreSQL's bytes per row on disk (heap + keys + GIN) | {:.0} B |", f.pg_bytes_per_row);
        }
        if let Some(mem) = &self.memory {
            let _ = writeln!(
                s,
                "| memory per cached record, {} records ({}) | memdb clean {:.0} B (RssAnon {:.0} B), dirty {:.0} B; bare map {:.0} B (RssAnon {:.0} B) |",
                mem.records,
                mem.method,
                mem.memdb_clean_bytes,
                mem.memdb_clean_rss_bytes,
                mem.memdb_dirty_bytes,
                mem.bare_bytes,
                mem.bare_rss_bytes
            );
        }
        for g in &self.get_hit {
            let _ = writeln!(
                s,
                "| get hit, {} thread(s), uniform over {} records | memdb {}/s, bare map {}/s: {:.2}× (median of paired rounds {}) |",
                g.threads,
                g.records,
                fmt_rate(g.memdb_per_s),
                fmt_rate(g.bare_per_s),
                g.ratio,
                g.round_ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")
            );
        }
        s.push('\n');
        if let Some(u) = &self.under_flush {
            let _ = writeln!(
                s,
                "## Foreground latency while a flush of {} records runs ({:.1} s)\n\n\
                 memdb Periodic, the telephony workload paced at {} ops/s offered. p50 / p99 / p99.9 / max.\n\n\
                 | op | no flush | during the flush |\n|---|---|---|",
                u.records,
                u.flush_seconds,
                fmt_rate(u.offered_ops_per_s)
            );
            for q in &u.quiet {
                let b = u.during_flush.iter().find(|b| b.op == q.op);
                let cell = |l: &Latency| {
                    format!(
                        "{} / {} / {} / {} ({} calls)",
                        fmt_us(l.p50_us),
                        fmt_us(l.p99_us),
                        fmt_us(l.p999_us),
                        fmt_us(l.max_us),
                        l.count
                    )
                };
                let _ = writeln!(s, "| {} | {} | {} |", q.op, cell(q), b.map_or_else(|| "–".into(), cell));
            }
            s.push('\n');
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(
                s,
                "## memdb against each baseline (same run)\n\n× = how many times better memdb is: ops/s divided by the baseline's; \
                 latency: the baseline's divided by memdb's.\n\n| figure | memdb | baseline | memdb value | baseline value | × |\n|---|---|---|---|---|---|"
            );
            for r in &self.ratios {
                let value = |v: f64| if r.figure.contains("µs") { fmt_us(v) } else { fmt_rate(v) };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {:.2} |",
                    r.figure,
                    r.memdb,
                    r.baseline,
                    value(r.memdb_value),
                    value(r.baseline_value),
                    r.times_better
                );
            }
            s.push('\n');
        }
        if !self.scale.is_empty() {
            let _ = writeln!(
                s,
                "## Scale\n\nPer size: inserts from 2 tasks (Periodic), gets from 2 threads uniformly over all records, memory per dirty \
                 record (live heap bytes by a counting allocator; RssAnon growth beside), then a crash (`MemDb::crash`) and \
                 the recovery: the WAL opened and read alone (baseline), `MemDb::open` with PostgreSQL unreachable and with it \
                 up (until open returns), and the drain of the backlog into PostgreSQL in the background with one foreground \
                 task's p99.9 meanwhile (paced: 5 gets and 5 inserts per ms); last, the flush of as many fresh records into another table.\n\n\
                 | records | insert/s | get/s | heap B/record | RssAnon B/record | WAL B/record | flush s (rows/s) | WAL-only replay s | open s (PG down) | open / WAL-only | drain s (rows/s) | p99.9 get / insert during drain µs |\n\
                 |---|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for p in &self.scale {
                let n = p.records as f64;
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} ({}) | {:.2} | {:.2} ({:.2}) | {:.2} | {:.2} ({}) | {:.1} / {:.1} |",
                    p.records,
                    fmt_rate(p.insert_per_s),
                    fmt_rate(p.get_per_s),
                    p.heap_bytes_per_record,
                    p.rss_bytes_per_record,
                    p.wal_bytes_per_record,
                    p.flush_s,
                    fmt_rate(n / p.flush_s.max(f64::MIN_POSITIVE)),
                    p.wal_replay_s,
                    p.open_up_s,
                    p.open_down_s,
                    p.open_up_s.max(p.open_down_s) / p.wal_replay_s.max(f64::MIN_POSITIVE),
                    p.drain_s,
                    fmt_rate(n / p.drain_s.max(f64::MIN_POSITIVE)),
                    p.drain_get_p999_us,
                    p.drain_insert_p999_us
                );
            }
            s.push('\n');
        }
        s
    }
}
