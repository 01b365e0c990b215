//! WAL benchmarks: append throughput, group commit against the disk's own sync rate, replay.
//!
//! Every durable-mode number has the machine's sync cost measured beside it in the same
//! run (STYLE.md item 14): the `durable/fdatasync_*` and `durable/msync_fallocated` cases
//! are the baselines for `durable/sync_append/*`. Records are 256-byte frames (the value
//! length is calibrated at start; the frame size is printed). After criterion's report a
//! summary gives records per sync, append latencies, CPU time per record and the goals.
//!
//! CPU time and run-queue wait come from `/proc/thread-self/schedstat`: on a shared
//! 2-core machine, "waiting for a CPU" says how much of a wall-clock number is the
//! neighbours' load rather than the log.
//!
//! Run: `cargo bench --bench wal` (about 2½ minutes on the 2-core dev machine).
//! Smoke (each case once, small): `cargo bench --bench wal -- --test`.
//! Files go under `MEMDB_BENCH_DIR` if set, else under cargo's `CARGO_TARGET_TMPDIR` (the
//! target dir's disk); point it at the disk the WAL will really use.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Barrier, Mutex, PoisonError};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use memdb::wal::storage::{DirStorage, Storage};
use memdb::wal::{Durability, Entry, Op, Options, Wal};
use tempfile::TempDir;

/// Target size of one encoded frame (header + body + padding), in bytes.
const FRAME_TARGET: u64 = 256;
const TABLE: &str = "calls";
const KEY: &str = "call:0000000042";
/// Records written once and read back by the replay benchmarks.
const REPLAY_RECORDS: u64 = 1_000_000;
/// Records for the replay benchmarks in smoke (`--test`) mode.
const REPLAY_RECORDS_SMOKE: u64 = 10_000;
/// Records in the log of the small-log recovery case.
const SMALL_LOG_RECORDS: u64 = 1_000;
/// Threads of the concurrent fdatasync baseline (the disk's flush rate under concurrency).
const CONCURRENT_SYNCERS: u64 = 8;

/// Lines printed after criterion's report.
static SUMMARY: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn summary(line: String) {
    eprintln!("  >> {line}");
    SUMMARY.lock().unwrap_or_else(PoisonError::into_inner).push(line);
}

/// `--test` (or no `--bench`, as under `cargo test --benches`): each case runs once, small.
fn smoke() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench")
}

fn bench_root() -> PathBuf {
    let root =
        std::env::var_os("MEMDB_BENCH_DIR").map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&root).expect("create the bench directory");
    root
}

fn tempdir() -> TempDir {
    tempfile::tempdir_in(bench_root()).expect("create a temp dir")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

/// This thread's (on-CPU, waiting-for-a-CPU) nanoseconds so far; zeros where unsupported.
fn sched() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
    (fields.next().unwrap_or(0), fields.next().unwrap_or(0))
}

/// The record every benchmark appends: its value sized so the frame is `FRAME_TARGET` bytes.
struct Workload {
    value: Vec<u8>,
    frame: u64,
}

impl Workload {
    fn entry(&self) -> Entry<'_> {
        Entry { op: Op::Put, table: TABLE, key: KEY, value: &self.value }
    }

    /// Finds the value length whose frame is `FRAME_TARGET` bytes, by appending to a scratch log.
    fn calibrate() -> Self {
        let dir = tempdir();
        let opts = Options { segment_size: 1 << 20, ..Options::default() };
        let wal = Wal::open(dir.path(), opts).expect("open scratch WAL");
        let frame_of = |len: usize| {
            let value = json_value(len);
            let before = wal.stats().bytes;
            wal.append(&Entry { op: Op::Put, table: TABLE, key: KEY, value: &value }).expect("append");
            wal.stats().bytes - before
        };
        let len =
            (0..FRAME_TARGET as usize).rev().find(|&len| frame_of(len) <= FRAME_TARGET).expect("a value that fits");
        let frame = frame_of(len);
        Self { value: json_value(len), frame }
    }
}

/// JSON text of exactly `len` bytes (the engine stores JSON; the WAL treats it as bytes).
fn json_value(len: usize) -> Vec<u8> {
    let mut v = br#"{"status":"ringing","note":""#.to_vec();
    v.truncate(len.saturating_sub(2));
    while v.len() + 2 < len {
        v.push(b'x');
    }
    v.extend_from_slice(&br#""}"#[..len.min(2)]);
    v
}

/// What the threads of one `concurrently` call did.
struct Run<T> {
    /// From the first thread's start to the last one's finish.
    elapsed: Duration,
    /// On-CPU and waiting-for-a-CPU time, summed over the threads.
    cpu: Duration,
    waiting: Duration,
    outputs: Vec<T>,
}

/// Runs `work(count)` on `threads` threads that start together, splitting `iters` among
/// them; thread spawn and join are not timed.
fn concurrently<T: Send>(threads: u64, iters: u64, work: impl Fn(u64) -> T + Sync) -> Run<T> {
    let barrier = Barrier::new(threads as usize);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let count = iters / threads + u64::from(i < iters % threads);
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || {
                    barrier.wait();
                    let (cpu, waiting) = sched();
                    let start = Instant::now();
                    let out = work(count);
                    let end = Instant::now();
                    let (cpu2, waiting2) = sched();
                    (start, end, cpu2 - cpu, waiting2 - waiting, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    let start = results.iter().map(|r| r.0).min().expect("a thread");
    let end = results.iter().map(|r| r.1).max().expect("a thread");
    Run {
        elapsed: end - start,
        cpu: Duration::from_nanos(results.iter().map(|r| r.2).sum()),
        waiting: Duration::from_nanos(results.iter().map(|r| r.3).sum()),
        outputs: results.into_iter().map(|r| r.4).collect(),
    }
}

fn percentile(sorted_nanos: &[u64], p: f64) -> Duration {
    if sorted_nanos.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted_nanos.len() - 1) as f64 * p).round() as usize;
    Duration::from_nanos(sorted_nanos[i])
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// `1.23M` for large rates, `4567` for small ones.
fn fmt_rate(rate: f64) -> String {
    if rate >= 1e5 { format!("{:.2}M", rate / 1e6) } else { format!("{rate:.0}") }
}

fn verdict(ok: bool) -> &'static str {
    match (smoke(), ok) {
        (true, _) => "not judged in smoke mode",
        (false, true) => "MET",
        (false, false) => "MISSED",
    }
}

/// Totals across every timed call of one benchmark (warm-up included).
#[derive(Default)]
struct Totals {
    records: u64,
    elapsed: Duration,
    cpu: Duration,
    waiting: Duration,
    syncs: u64,
    latencies: Vec<u64>,
}

impl Totals {
    fn add<T>(&mut self, records: u64, run: &Run<T>) {
        self.records += records;
        self.elapsed += run.elapsed;
        self.cpu += run.cpu;
        self.waiting += run.waiting;
    }

    fn rate(&self) -> f64 {
        per_sec(self.records, self.elapsed)
    }

    fn latency_line(&mut self) -> String {
        self.latencies.sort_unstable();
        let (p50, p99) = (percentile(&self.latencies, 0.5), percentile(&self.latencies, 0.99));
        format!("p50 {p50:.1?}, p99 {p99:.1?}")
    }

    /// CPU per record, and how much of the threads' wall time they spent waiting for a CPU.
    fn cpu_line(&self, threads: u64) -> String {
        let per_record = self.cpu.as_nanos() as f64 / self.records.max(1) as f64;
        let wall = self.elapsed.as_secs_f64() * threads as f64;
        let waiting = 100.0 * self.waiting.as_secs_f64() / wall.max(f64::MIN_POSITIVE);
        format!("{per_record:.0} ns CPU per record, {waiting:.0}% of thread time waiting for a CPU")
    }
}

fn periodic_append(c: &mut Criterion, w: &Workload) {
    let mut group = c.benchmark_group("periodic_append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(6));
    for threads in [1u64, 2] {
        let dir = tempdir();
        let wal = Wal::open(dir.path(), Options::default()).expect("open WAL");
        let mut totals = Totals::default();
        group.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter_custom(|iters| {
                let entry = w.entry();
                let run = concurrently(threads, iters, |n| {
                    for _ in 0..n {
                        wal.append(&entry).expect("append");
                    }
                });
                totals.add(iters, &run);
                // Keep the disk bounded: drop all but the active segment (untimed).
                if wal.stats().segments > 2 {
                    wal.truncate_through(wal.next_lsn() - 1).expect("truncate");
                }
                run.elapsed
            });
        });
        if totals.records == 0 {
            continue;
        }
        let rate = totals.rate();
        let goal = if threads == 1 { format!(" (goal >= 2M/s: {})", verdict(rate >= 2e6)) } else { String::new() };
        summary(format!(
            "periodic_append/threads/{threads}: {:.2}M appends/s over {} appends, {:.0} MB/s of frames{goal}; {}",
            rate / 1e6,
            totals.records,
            rate * w.frame as f64 / 1e6,
            totals.cpu_line(threads),
        ));
    }
    group.finish();
}

/// The disk's own sync rate, several ways, in the directory the WAL benchmarks use.
fn sync_baselines(group: &mut BenchmarkGroup<'_, WallTime>) {
    let record = vec![0xA5u8; FRAME_TARGET as usize];
    let report = |name: &str, totals: &mut Totals| {
        if totals.records == 0 {
            return;
        }
        let line = totals.latency_line();
        summary(format!("durable/{name}: {:.0} syncs/s, latency {line}", totals.rate()));
    };

    // Append to a growing file + fdatasync (the size changes, so metadata goes too).
    {
        let dir = tempdir();
        let path = dir.path().join("append.dat");
        let mut file = OpenOptions::new().create(true).append(true).open(path).expect("open");
        let mut totals = Totals::default();
        group.bench_function("fdatasync_append", |b| {
            b.iter_custom(|iters| {
                timed_syncs(iters, &mut totals, || {
                    file.write_all(&record).expect("write");
                    file.sync_data().expect("fdatasync");
                })
            });
        });
        report("fdatasync_append", &mut totals);
    }

    // Overwrite a file already written with zeros and synced: data only, the disk's floor.
    {
        let dir = tempdir();
        let len: u64 = 64 << 20;
        let file = prezeroed(&dir.path().join("overwrite.dat"), len);
        let mut offset = 0u64;
        let mut totals = Totals::default();
        group.bench_function("fdatasync_overwrite", |b| {
            b.iter_custom(|iters| {
                timed_syncs(iters, &mut totals, || {
                    file.write_all_at(&record, offset).expect("write");
                    file.sync_data().expect("fdatasync");
                    offset = (offset + FRAME_TARGET) % len;
                })
            });
        });
        report("fdatasync_overwrite", &mut totals);
    }

    // The same with several threads syncing at once, each in its own region: how many
    // flushes per second the disk completes when more than one is in flight.
    {
        let dir = tempdir();
        let region: u64 = 8 << 20;
        let file = prezeroed(&dir.path().join("concurrent.dat"), region * CONCURRENT_SYNCERS);
        let next = std::sync::atomic::AtomicU64::new(0);
        let mut totals = Totals::default();
        let name = format!("fdatasync_overwrite_{CONCURRENT_SYNCERS}threads");
        group.bench_function(name.as_str(), |b| {
            b.iter_custom(|iters| {
                let run = concurrently(CONCURRENT_SYNCERS, iters, |n| {
                    let base = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % CONCURRENT_SYNCERS * region;
                    let mut lat = Vec::with_capacity(n as usize);
                    for i in 0..n {
                        let t = Instant::now();
                        file.write_all_at(&record, base + i * FRAME_TARGET % region).expect("write");
                        file.sync_data().expect("fdatasync");
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    lat
                });
                totals.add(iters, &run);
                totals.latencies.extend(run.outputs.into_iter().flatten());
                run.elapsed
            });
        });
        report(&name, &mut totals);
    }

    // The WAL's own I/O path: memcpy into a posix_fallocate'd, mmapped file + msync.
    {
        let dir = tempdir();
        let storage = DirStorage::open(dir.path()).expect("open storage");
        let len: u64 = 64 << 20;
        let mut n = 0u64;
        let mut file = storage.create(&format!("seg{n}"), len).expect("create");
        let mut offset = 0u64;
        let mut totals = Totals::default();
        group.bench_function("msync_fallocated", |b| {
            b.iter_custom(|iters| {
                timed_syncs(iters, &mut totals, || {
                    if offset + FRAME_TARGET > len {
                        n += 1;
                        let _ = storage.remove(&format!("seg{}", n - 1));
                        file = storage.create(&format!("seg{n}"), len).expect("create");
                        offset = 0;
                    }
                    // SAFETY: this loop is the file's only writer.
                    unsafe { file.write_at(offset, &record) }.expect("write");
                    file.sync_range(offset, FRAME_TARGET).expect("msync");
                    offset += FRAME_TARGET;
                })
            });
        });
        report("msync_fallocated", &mut totals);
    }
}

fn prezeroed(path: &Path, len: u64) -> File {
    let mut file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path).expect("open");
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..len / chunk.len() as u64 {
        file.write_all(&chunk).expect("zero-fill");
    }
    file.sync_all().expect("sync");
    file
}

/// Runs `op` `iters` times on this thread, recording each latency; returns the total time.
fn timed_syncs(iters: u64, totals: &mut Totals, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let t = Instant::now();
        op();
        totals.latencies.push(t.elapsed().as_nanos() as u64);
    }
    let elapsed = start.elapsed();
    totals.records += iters;
    totals.elapsed += elapsed;
    elapsed
}

fn durable(c: &mut Criterion, w: &Workload) {
    let mut group = c.benchmark_group("durable");
    group.throughput(Throughput::Elements(1));
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    sync_baselines(&mut group);

    for threads in [1u64, 8, 64] {
        let dir = tempdir();
        let opts = Options { durability: Durability::Sync, ..Options::default() };
        let wal = Wal::open(dir.path(), opts).expect("open WAL");
        let mut totals = Totals::default();
        group.bench_function(BenchmarkId::new("sync_append", threads), |b| {
            b.iter_custom(|iters| {
                let entry = w.entry();
                let syncs = wal.stats().syncs;
                let run = concurrently(threads, iters, |n| {
                    let mut lat = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        let t = Instant::now();
                        wal.append(&entry).expect("append");
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    lat
                });
                totals.syncs += wal.stats().syncs - syncs;
                totals.add(iters, &run);
                totals.latencies.extend(run.outputs.into_iter().flatten());
                run.elapsed
            });
        });
        if totals.records == 0 {
            continue;
        }
        let per_sync = totals.records as f64 / totals.syncs.max(1) as f64;
        let goal = if threads == 64 {
            format!(" (goal >= 20 records/sync: {})", verdict(per_sync >= 20.0))
        } else {
            String::new()
        };
        let line = totals.latency_line();
        let round = totals.elapsed / u32::try_from(totals.syncs.max(1)).unwrap_or(u32::MAX);
        summary(format!(
            "durable/sync_append/{threads}: {:.0} records/s, {} records / {} syncs = {per_sync:.1} records per sync{goal}; {round:.1?} per sync round; append latency {line}; {}",
            totals.rate(),
            totals.records,
            totals.syncs,
            totals.cpu_line(threads),
        ));
    }
    group.finish();
}

fn replay(c: &mut Criterion, w: &Workload) {
    let many = if smoke() { REPLAY_RECORDS_SMOKE } else { REPLAY_RECORDS };
    let mut group = c.benchmark_group("replay");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(15));
    // One big segment (as the goal is stated); the default 64 MiB segments; and the fixed
    // cost of opening a small log, whose active segment is mostly unused.
    let big = (many * w.frame + 4096).next_multiple_of(1 << 20);
    let default = Options::default().segment_size;
    for (label, records, segment_size) in
        [("one_segment", many, big), ("64MiB_segments", many, default), ("small_log", SMALL_LOG_RECORDS, default)]
    {
        group.throughput(Throughput::Elements(records));
        let opts = Options { segment_size, ..Options::default() };
        // Written on first use, so a filtered-out case costs nothing.
        let mut log: Option<(TempDir, Duration)> = None;
        let mut totals = Totals::default();
        let (mut segments, mut open_time) = (0, Duration::ZERO);
        group.bench_function(BenchmarkId::new(label, records), |b| {
            let (dir, _) = log.get_or_insert_with(|| write_log(w, &opts, records));
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let (cpu, waiting) = sched();
                for _ in 0..iters {
                    let start = Instant::now();
                    let wal = Wal::open(dir.path(), opts.clone()).expect("open WAL");
                    open_time += start.elapsed();
                    let (mut n, mut bytes) = (0u64, 0usize);
                    for record in wal.replay(1) {
                        bytes += record.expect("replay").value.len();
                        n += 1;
                    }
                    elapsed += start.elapsed();
                    let expected = (records, records as usize * w.value.len());
                    assert_eq!((n, bytes), expected, "replay lost records");
                    segments = wal.stats().segments;
                }
                let (cpu2, waiting2) = sched();
                totals.cpu += Duration::from_nanos(cpu2 - cpu);
                totals.waiting += Duration::from_nanos(waiting2 - waiting);
                totals.records += iters * records;
                totals.elapsed += elapsed;
                elapsed
            });
        });
        let (Some((_, written)), true) = (log, totals.records > 0) else {
            continue;
        };
        let rate = totals.rate();
        let opens = u32::try_from(totals.records / records).unwrap_or(1).max(1);
        let goal = if records >= REPLAY_RECORDS_SMOKE {
            format!(" (goal >= 1M/s: {})", verdict(rate >= 1e6))
        } else {
            String::new()
        };
        summary(format!(
            "replay/{label}: open + replay(1) of {records} records in {segments} segment(s) of {} MiB: {} records/s{goal}; Wal::open alone {:.0?} of {:.0?}; {}; written in {written:.2?}, read from a warm page cache",
            segment_size >> 20,
            fmt_rate(rate),
            open_time / opens,
            totals.elapsed / opens,
            totals.cpu_line(1),
        ));
    }
    group.finish();
}

/// Writes `records` records with `Periodic` durability into a new directory; returns it
/// and the time taken.
fn write_log(w: &Workload, opts: &Options, records: u64) -> (TempDir, Duration) {
    let dir = tempdir();
    let start = Instant::now();
    let wal = Wal::open(dir.path(), opts.clone()).expect("open WAL");
    let entry = w.entry();
    for _ in 0..records {
        wal.append(&entry).expect("append");
    }
    wal.close().expect("close");
    (dir, start.elapsed())
}

fn main() {
    // Fewer resamples and no plots: the analysis otherwise takes a minute of a 2-core machine.
    let mut c = Criterion::default().nresamples(20_000).without_plots().configure_from_args();
    let root = bench_root();
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    let same_disk = dev(&root) == dev(Path::new(env!("CARGO_MANIFEST_DIR")));
    let w = Workload::calibrate();
    summary(format!(
        "memdb WAL bench: {}-byte frames (table {TABLE:?}, key {KEY:?}, {}-byte JSON value) in {} (same device as the workspace: {same_disk}); load average at start {}{}",
        w.frame,
        w.value.len(),
        root.display(),
        loadavg(),
        if smoke() { "; smoke mode" } else { "" },
    ));

    periodic_append(&mut c, &w);
    durable(&mut c, &w);
    replay(&mut c, &w);

    c.final_summary();
    summary(format!("load average at end {}", loadavg()));
    eprintln!("\n==== memdb WAL bench summary ====");
    for line in SUMMARY.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        eprintln!("{line}");
    }
}
