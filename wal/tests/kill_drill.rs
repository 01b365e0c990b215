//! Kill drill: the log on a real directory survives `kill -9` at any moment.
//!
//! sled's pattern: this binary (`harness = false`) re-executes itself as a child, which
//! opens the log in `Periodic` mode and appends records whose bytes follow from their
//! LSN, printing each LSN once its append returned (the acknowledgement). The parent
//! SIGKILLs it after a random delay, opens the log itself and checks that every
//! acknowledged record not truncated away is there with the right bytes, that LSNs run
//! consecutively, and that the next LSN is above every LSN ever acknowledged or
//! recovered. The same directory carries over to the next child, which continues the log.
//!
//! `MEMDB_DRILL_SEED` (decimal or 0x-hex) replays a run; `MEMDB_DRILL_ITERATIONS` sets the
//! number of kills (default 100). The seed is printed first.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memdb_wal::format::follows;
use memdb_wal::{Durability, Entry, Lsn, Op, Options, Record, Wal};

/// Set in the child: the directory of the log.
const CHILD_DIR: &str = "MEMDB_DRILL_CHILD_DIR";
/// Set in the child: the run's seed (record contents) and the child's own seed (sizes
/// of nothing but its truncation choices).
const CHILD_SEED: &str = "MEMDB_DRILL_CHILD_SEED";
const CHILD_RUN_SEED: &str = "MEMDB_DRILL_RUN_SEED";

const TABLE: &str = "t";
/// Small segments, so that rotations and truncations happen in every run.
const SEGMENT_SIZE: u64 = 64 << 10;

fn main() -> ExitCode {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
        return ExitCode::FAILURE; // `child` only returns on error; it is meant to be killed
    }
    parent()
}

/// A small deterministic generator (splitmix64), so a seed replays the same run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The record the drill writes at `lsn`: everything about it follows from the run's
/// seed and the LSN, so the parent can check any record it finds.
fn expected(run_seed: u64, lsn: Lsn) -> (Op, String, Vec<u8>) {
    let h = mix(run_seed ^ lsn.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let key = format!("k{}", lsn % 997);
    if h.is_multiple_of(16) {
        return (Op::Delete, key, Vec::new());
    }
    // Mostly small values, some large ones (up to a third of a segment).
    let len = if h % 8 == 1 { 1024 + (h >> 8) % 20_000 } else { (h >> 8) % 600 };
    let fill = b'a' + ((h >> 40) % 26) as u8;
    let mut value = format!(r#"{{"lsn":{lsn},"pad":""#).into_bytes();
    value.resize(value.len() + len as usize, fill);
    value.extend_from_slice(br#""}"#);
    (Op::Put, key, value)
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(v) => Some(v),
        Err(e) => panic!("{name}={text:?} is not a number: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// The child: append until killed.

fn child(dir: &Path) {
    let run_seed = env_u64(CHILD_RUN_SEED).expect("the parent sets the run seed");
    let mut rng = Rng(env_u64(CHILD_SEED).expect("the parent sets the child seed"));
    let opts = Options {
        durability: Durability::Periodic(Duration::from_millis(50)),
        segment_size: SEGMENT_SIZE,
        ..Options::default()
    };
    let wal = match Wal::open(dir, opts) {
        Ok(wal) => wal,
        Err(e) => {
            eprintln!("kill drill child: opening the log failed: {e}");
            return;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| {
        // The parent must see the line before anything further happens: write it whole,
        // flushed. A closed pipe means the parent is gone; stop then.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            std::process::exit(2);
        }
    };
    say(format!("O {}", wal.next_lsn()));
    loop {
        let lsn = wal.next_lsn();
        let (op, key, value) = expected(run_seed, lsn);
        let entry = Entry { op, table: TABLE, key: &key, value: &value };
        match wal.append(&entry) {
            Ok(got) if got == lsn => {}
            Ok(got) => {
                eprintln!("kill drill child: append got LSN {got}, the log said {lsn} was next");
                return;
            }
            Err(e) => {
                eprintln!("kill drill child: append failed: {e}");
                return;
            }
        }
        say(lsn.to_string());
        // Now and then, truncate as the engine does after a flush: announce first, so a
        // kill mid-truncation never makes the parent expect records that are gone.
        if rng.below(150) == 0 {
            // Sometimes everything, active segment included (the LSN floor must hold).
            let keep = if rng.below(4) == 0 { 0 } else { rng.below(400) };
            let through = lsn.saturating_sub(keep);
            say(format!("T {through}"));
            if let Err(e) = wal.truncate_through(through) {
                eprintln!("kill drill child: truncate_through({through}) failed: {e}");
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The parent: kill, recover, check.

/// What the parent knows about the log across kills.
#[derive(Default)]
struct Model {
    /// Records through this LSN may have been truncated away.
    truncated_through: Lsn,
    /// Acknowledged LSNs not yet checked after a kill.
    unchecked: Vec<Lsn>,
    /// The highest LSN acknowledged, ever.
    max_acked: Lsn,
    /// The highest LSN seen in a recovered log, ever.
    max_recovered: Lsn,
    /// Every LSN acknowledged and checked, or recovered: each must stay until truncated.
    kept: std::collections::BTreeSet<Lsn>,
}

#[derive(Default)]
struct Totals {
    kills: u64,
    checked: u64,
    lost: u64,
    problems: u64,
    truncations: u64,
    kills_before_open: u64,
    max_segments: usize,
}

fn parent() -> ExitCode {
    let seed = env_u64("MEMDB_DRILL_SEED").unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        mix(now.as_nanos() as u64 ^ u64::from(std::process::id()))
    });
    let iterations = env_u64("MEMDB_DRILL_ITERATIONS").unwrap_or(100);
    println!("kill drill: seed {seed:#018x} (replay with MEMDB_DRILL_SEED={seed:#x}), {iterations} iterations");
    let started = Instant::now();
    let mut rng = Rng(seed);
    let run_seed = rng.next();
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let exe = std::env::current_exe().expect("the path of this test binary");
    let mut model = Model::default();
    let mut totals = Totals::default();

    for iteration in 0..iterations {
        let delay = Duration::from_millis(5 + rng.below(196));
        let mut child = Command::new(&exe)
            .env(CHILD_DIR, dir.path())
            .env(CHILD_RUN_SEED, run_seed.to_string())
            .env(CHILD_SEED, rng.next().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning the child");
        let stdout = child.stdout.take().expect("a piped stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                // Each line is one write(2) of a few bytes, which a kill cannot split; were
                // one cut, its prefix would name an earlier LSN, acknowledged as well.
                if tx.send(line.expect("reading the child's output")).is_err() {
                    return;
                }
            }
        });

        // Take acknowledgements until the moment comes, then kill.
        let deadline = Instant::now() + delay;
        let mut opened = false;
        while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            opened |= model.take(&line, &mut totals);
        }
        child.kill().expect("killing the child");
        let status = child.wait().expect("waiting for the child");
        // Lines written before the kill were acknowledged: drain the pipe.
        for line in lines.iter() {
            opened |= model.take(&line, &mut totals);
        }
        reader.join().expect("the reader thread");
        if status.signal() != Some(libc::SIGKILL) {
            eprintln!("iteration {iteration}: the child ended by itself ({status}) instead of being killed");
            totals.problems += 1;
            break;
        }
        totals.kills += 1;
        totals.kills_before_open += u64::from(!opened);

        if let Err(problem) = check(dir.path(), run_seed, &mut model, &mut totals) {
            eprintln!("iteration {iteration} (after {delay:?}): {problem}");
            totals.problems += 1;
            break;
        }
    }

    println!(
        "kill drill: {} kills, {} acknowledged records checked, {} lost, seed {seed:#018x}",
        totals.kills, totals.checked, totals.lost
    );
    println!(
        "kill drill: {} truncations, {} kills before the log opened, up to {} segments, \
         {} LSNs written, {:.1?}",
        totals.truncations,
        totals.kills_before_open,
        totals.max_segments,
        model.max_recovered,
        started.elapsed()
    );
    if totals.lost > 0 || totals.problems > 0 || totals.kills < iterations {
        eprintln!("kill drill FAILED: replay with MEMDB_DRILL_SEED={seed:#x}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

impl Model {
    /// Takes one line of the child's output; true if it says the log was opened.
    fn take(&mut self, line: &str, totals: &mut Totals) -> bool {
        let mut words = line.split_whitespace();
        match (words.next(), words.next().map(str::parse::<Lsn>)) {
            (Some("O"), Some(Ok(_))) => return true,
            (Some("T"), Some(Ok(through))) => {
                self.truncated_through = self.truncated_through.max(through);
                totals.truncations += 1;
            }
            (Some(lsn), None) => {
                if let Ok(lsn) = lsn.parse::<Lsn>() {
                    self.unchecked.push(lsn);
                    self.max_acked = self.max_acked.max(lsn);
                }
            }
            _ => {}
        }
        false
    }
}

/// Opens the log the killed child left and checks it against the model.
fn check(dir: &Path, run_seed: u64, model: &mut Model, totals: &mut Totals) -> Result<(), String> {
    let opts = Options { segment_size: SEGMENT_SIZE, ..Options::default() };
    let wal = Wal::open(dir, opts).map_err(|e| format!("opening the log after the kill failed: {e}"))?;
    let records: Vec<Record> =
        wal.replay(0).collect::<Result<_, _>>().map_err(|e| format!("replaying the recovered log failed: {e}"))?;
    totals.max_segments = totals.max_segments.max(wal.stats().segments);
    let next = wal.next_lsn();

    // Consecutive, but for the jump each reopen makes to a restart LSN.
    for pair in records.windows(2) {
        if let [a, b] = pair
            && !follows(a.lsn, b.lsn)
        {
            return Err(format!("LSNs jump from {} to {}", a.lsn, b.lsn));
        }
    }
    if let Some(last) = records.last()
        && !follows(last.lsn, next)
    {
        return Err(format!("the last record has LSN {}, yet the next LSN is {next}", last.lsn));
    }
    for r in &records {
        let (op, key, value) = expected(run_seed, r.lsn);
        if r.op != op || r.table != TABLE || r.key != key || r.value != value {
            return Err(format!(
                "record {} has the wrong bytes: {:?} {}/{} ({} value bytes)",
                r.lsn,
                r.op,
                r.table,
                r.key,
                r.value.len()
            ));
        }
    }
    if next <= model.max_acked || next <= model.max_recovered {
        return Err(format!(
            "LSNs went backwards: next LSN {next}, acknowledged up to {}, recovered up to {}",
            model.max_acked, model.max_recovered
        ));
    }

    let held: std::collections::HashSet<Lsn> = records.iter().map(|r| r.lsn).collect();
    let holds = |lsn: Lsn| held.contains(&lsn);
    let span = records.first().zip(records.last()).map(|(a, b)| a.lsn..=b.lsn);
    // Every record acknowledged since the last check and above the truncation point.
    for lsn in model.unchecked.drain(..) {
        if lsn <= model.truncated_through {
            continue;
        }
        totals.checked += 1;
        if holds(lsn) {
            model.kept.insert(lsn);
        } else {
            totals.lost += 1;
            eprintln!("acknowledged record {lsn} is lost (the log holds LSNs {span:?})");
        }
    }
    // And every one acknowledged or recovered before, above the truncation point: once
    // recovered, a record stays until truncated.
    model.kept.retain(|&lsn| lsn > model.truncated_through);
    if let Some(missing) = model.kept.iter().find(|&&lsn| !holds(lsn)) {
        return Err(format!("record {missing} was kept before and must still be in the log, it holds {span:?}"));
    }
    model.kept.extend(held.iter().copied().filter(|&lsn| lsn > model.truncated_through));
    model.max_recovered = model.max_recovered.max(records.last().map_or(0, |r| r.lsn));
    wal.close().map_err(|e| format!("closing the log failed: {e}"))?;
    if totals.lost > 0 {
        return Err("acknowledged records were lost".into());
    }
    Ok(())
}
