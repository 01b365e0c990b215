//! Command-line settings: `--quick`, `--only compare|scale`, `--scale`, `--sizes`,
//! `--concurrency`, `--out`; sizes and durations follow from the mode.

use std::path::PathBuf;
use std::time::Duration;

/// How big a run is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// About 15 minutes on the 2-core dev machine with the scale series.
    Full,
    /// About 2 minutes.
    Quick,
    /// Seconds: `--smoke`, or what `cargo test --benches` runs (no `--bench` argument);
    /// writes nothing unless `--out` is given.
    Smoke,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Quick => "quick",
            Self::Smoke => "smoke",
        }
    }

    fn pick<T>(self, full: T, quick: T, smoke: T) -> T {
        match self {
            Self::Full => full,
            Self::Quick => quick,
            Self::Smoke => smoke,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    pub compare: bool,
    pub scale: bool,
    /// Concurrent tasks (writers) of the workload runs.
    pub tasks: usize,
    /// Live calls per task.
    pub calls_per_task: usize,
    pub insert_time: Duration,
    pub telephony_time: Duration,
    /// Records of the flush comparison and of the flush the latency runs under.
    pub flush_records: u64,
    /// Records read by the get-hit comparison (and counted for memory).
    pub get_records: u64,
    pub get_rounds: usize,
    pub gets_per_round: u64,
    pub fsync_time: Duration,
    pub quiet_time: Duration,
    pub sizes: Vec<u64>,
    pub scale_gets: u64,
    /// Where results.{md,json,svg} go; `None`: nowhere.
    pub out: Option<PathBuf>,
}

fn parse_count(s: &str) -> u64 {
    let s = s.trim().to_ascii_lowercase();
    let (num, mul) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1_000),
        Some('m') => (&s[..s.len() - 1], 1_000_000),
        _ => (&s[..], 1),
    };
    num.parse::<u64>().unwrap_or_else(|_| panic!("not a count: {s} (e.g. 10k, 1M, 5000)")) * mul
}

impl Settings {
    pub fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
        let mode = if has("--smoke") {
            Mode::Smoke
        } else if has("--quick") {
            Mode::Quick
        } else if has("--bench") || has("--full") {
            Mode::Full
        } else {
            Mode::Smoke
        };
        let only = value("--only").or_else(|| has("--scale").then(|| "scale".to_owned()));
        let (compare, scale) = match only.as_deref() {
            None => (true, true),
            Some("compare") => (true, false),
            Some("scale") => (false, true),
            Some(other) => panic!("--only takes compare or scale, not {other}"),
        };
        let sizes = value("--sizes").map_or_else(
            || mode.pick(vec![10_000, 100_000, 1_000_000, 5_000_000], vec![10_000, 100_000], vec![2_000]),
            |s| s.split(',').map(parse_count).collect(),
        );
        let default_out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results");
        let out = value("--out").map(PathBuf::from).or_else(|| (mode != Mode::Smoke).then_some(default_out));
        let secs = Duration::from_secs_f64;
        Self {
            mode,
            compare,
            scale,
            tasks: value("--concurrency").map_or(64, |v| parse_count(&v) as usize).max(1),
            calls_per_task: 16,
            insert_time: secs(mode.pick(3.0, 1.0, 0.2)),
            telephony_time: secs(mode.pick(5.0, 1.5, 0.2)),
            flush_records: mode.pick(100_000, 20_000, 1_000),
            get_records: mode.pick(100_000, 20_000, 1_000),
            get_rounds: mode.pick(7, 3, 1),
            gets_per_round: mode.pick(1_000_000, 200_000, 5_000),
            fsync_time: secs(mode.pick(2.0, 0.5, 0.1)),
            quiet_time: secs(mode.pick(2.0, 0.5, 0.1)),
            sizes,
            scale_gets: mode.pick(2_000_000, 400_000, 10_000),
            out,
        }
    }
}
