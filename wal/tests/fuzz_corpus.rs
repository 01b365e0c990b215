//! Replays every committed fuzz input (`fuzz/corpus/*/`, `fuzz/regressions/*/`) through
//! the check its fuzz target runs, so `cargo test` keeps every input ever found passing.
//!
//! The seed corpus is generated here too: `MEMDB_WRITE_SEED_CORPUS=1 cargo test -p
//! memdb-wal --all-features --test fuzz_corpus` (re)writes it under `fuzz/corpus/`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memdb_wal::format::{
    FRAME_VERSION, HEADER_CRC, HEADER_FRAME_VERSION, HEADER_LEN, HEADER_RECORD_VERSION, encode_header, frame_size,
};
use memdb_wal::internals::{check_parse, check_recover, dir_image, dir_image_with_flags, encode_segment};
use memdb_wal::parse::scan;
use memdb_wal::storage::{SimStorage, Storage};
use memdb_wal::{Durability, Entry, Op, Options, RecordRef, Wal};

/// A check a fuzz target runs on its input.
type Check = fn(&[u8]);

/// Each fuzz target (a file in `fuzz/fuzz_targets/`) and the check it runs.
const TARGETS: &[(&str, Check)] = &[("parse_segment", check_parse), ("recover_dir", check_recover)];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn check_for(target: &str) -> Option<Check> {
    TARGETS.iter().find(|(name, _)| *name == target).map(|&(_, check)| check)
}

/// The files directly under `dir`, sorted; none if it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> =
        entries.map(|e| e.expect("listing a fuzz input directory").path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// The subdirectories of `dir`, by name.
fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.expect("listing a fuzz directory"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_fuzz_target_has_a_check_here() {
    let targets = fuzz_dir().join("fuzz_targets");
    let mut found = 0;
    for path in files_in(&targets) {
        let name = path.file_stem().expect("a file name").to_string_lossy();
        assert!(
            check_for(&name).is_some(),
            "fuzz target {name} has no check in tests/fuzz_corpus.rs: add it to TARGETS"
        );
        found += 1;
    }
    assert_eq!(found, TARGETS.len(), "TARGETS names targets missing from {}", targets.display());
    for kind in ["corpus", "regressions"] {
        for target in subdirs(&fuzz_dir().join(kind)) {
            assert!(check_for(&target).is_some(), "fuzz/{kind}/{target} belongs to no known target");
        }
    }
}

#[test]
fn every_committed_input_passes_its_check() {
    let mut replayed = 0;
    let mut failures = Vec::new();
    for kind in ["corpus", "regressions"] {
        for &(target, check) in TARGETS {
            for path in files_in(&fuzz_dir().join(kind).join(target)) {
                let bytes = std::fs::read(&path).expect("reading a fuzz input");
                replayed += 1;
                if catch_unwind(AssertUnwindSafe(|| check(&bytes))).is_err() {
                    failures.push(path.display().to_string());
                }
            }
        }
    }
    println!("replayed {replayed} fuzz inputs");
    assert!(replayed >= TARGETS.len(), "no seed corpus found under {}", fuzz_dir().display());
    assert!(
        failures.is_empty(),
        "{} fuzz inputs fail their check (panic messages above):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn seed_corpus_passes_and_can_be_written() {
    let seeds = seed_corpus();
    let write = std::env::var_os("MEMDB_WRITE_SEED_CORPUS").is_some();
    for (target, name, bytes) in &seeds {
        assert!(bytes.len() <= 9 << 10, "seed {target}/{name} is over ~8 KiB");
        let check = check_for(target).expect("seeds only for known targets");
        check(bytes);
        if write {
            let dir = fuzz_dir().join("corpus").join(target);
            std::fs::create_dir_all(&dir).expect("creating the corpus directory");
            std::fs::write(dir.join(name), bytes).expect("writing a seed");
        }
    }
}

/// The seed corpus: a few valid segments, a torn one, corrupted ones, and directory
/// images built from them. Deterministic.
fn seed_corpus() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut parse = |name: &str, bytes: Vec<u8>| seeds.push(("parse_segment", name.to_owned(), bytes));

    let (fresh, _) = log_with(&[], 4096);
    let (few, few_ends) = log_with(&records(6, 40), 4096);
    let (rotated, _) = log_with(&records(40, 150), 4096);
    let first = |log: &[(String, Vec<u8>)]| log.first().expect("a segment").1.clone();
    parse("fresh-empty.wal", first(&fresh));
    parse("few-records.wal", first(&few));
    parse("full-sealed.wal", first(&rotated));

    // A crash mid-append: the second half of the last frame never reached the disk.
    let few_bytes = first(&few);
    let last_start = few_ends[few_ends.len() - 2];
    let last_end = few_ends[few_ends.len() - 1];
    let mut torn = few_bytes.clone();
    torn[(last_start + last_end) / 2..last_end].fill(0);
    parse("torn-tail.wal", torn.clone());

    // A flipped bit in the middle, vouched for by the synced frames after it.
    let mut corrupt = few_bytes.clone();
    corrupt[few_ends[2] + 30] ^= 0x10;
    parse("corrupt-middle.wal", corrupt.clone());

    // Stray bytes after the end of data, as unsynced sectors after a power cut leave.
    let mut garbage = few_bytes.clone();
    garbage[last_end + 1024..last_end + 1040].fill(0xa5);
    parse("garbage-after-end.wal", garbage);

    // A header from a newer format version.
    let mut newer = encode_header(7, 0).to_vec();
    newer[HEADER_FRAME_VERSION..HEADER_RECORD_VERSION].copy_from_slice(&(FRAME_VERSION + 1).to_le_bytes());
    let crc = crc32fast::hash(&newer[..HEADER_CRC]);
    newer[HEADER_CRC..HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    newer.resize(512, 0);
    parse("newer-version.wal", newer);

    // LSNs at the top of the range, where arithmetic overflows.
    let entries = records(3, 20);
    let top = u64::MAX - 1;
    let refs: Vec<RecordRef<'_>> =
        (0u64..).zip(&entries).map(|(i, e)| RecordRef { lsn: top.wrapping_add(i), entry: e.entry() }).collect();
    let wrapping = encode_segment(top, &refs);
    parse("lsn-wraps.wal", wrapping);

    let mut recover = |name: &str, files: &[&[u8]]| seeds.push(("recover_dir", name.to_owned(), dir_image(files)));
    let trimmed: Vec<Vec<u8>> = rotated.iter().map(|(_, b)| trim(b)).collect();
    assert_eq!(trimmed.len(), 2, "the rotated log has two segments");
    let [sealed, active] = [&trimmed[0], &trimmed[1]];
    recover("fresh", &[&trim(&first(&fresh))]);
    recover("one-segment", &[&trim(&few_bytes)]);
    recover("rotated", &[sealed, active]);
    recover("torn-tail", &[&trim(&torn)]);
    recover("corrupt-newest", &[&trim(&corrupt)]);
    let mut corrupt_sealed = sealed.clone();
    corrupt_sealed[HEADER_LEN + 100] ^= 0x01;
    recover("corrupt-sealed", &[&corrupt_sealed, active]);
    let gap = encode_segment(1000, &[]);
    recover("lsn-gap", &[sealed, &padded(gap)]);
    let (emptied, _) = log_truncated_through_all(&records(10, 60));
    let emptied: Vec<Vec<u8>> = emptied.iter().map(|(_, b)| trim(b)).collect();
    let emptied: Vec<&[u8]> = emptied.iter().map(Vec::as_slice).collect();
    recover("truncated-through-all", &emptied);
    // A log whose last record has the highest LSN: it opens, and refuses appends.
    let max = memdb_wal::format::MAX_LSN;
    let top = records(1, 20);
    let top = [RecordRef { lsn: max, entry: top[0].entry() }];
    recover("full-at-max-lsn", &[&padded(encode_segment(max, &top))]);
    seeds.push((
        "recover_dir",
        "leftover-temp".to_owned(),
        dir_image_with_flags(&[&trim(&few_bytes), b"half-made segment"], 0b0010_0000),
    ));
    seeds
}

/// An owned record to append in the seeds.
struct Owned {
    op: Op,
    key: String,
    value: Vec<u8>,
}

impl Owned {
    fn entry(&self) -> Entry<'_> {
        Entry { op: self.op, table: "calls", key: &self.key, value: &self.value }
    }
}

/// `n` records of every kind, values of about `size` bytes of JSON.
fn records(n: usize, size: usize) -> Vec<Owned> {
    (0..n)
        .map(|i| {
            let op = match i % 5 {
                0 if i == 0 => Op::CreateTable,
                3 => Op::Delete,
                _ => Op::Put,
            };
            let value = match op {
                Op::Delete => Vec::new(),
                _ => format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(size + i % 7)).into_bytes(),
            };
            Owned { op, key: format!("c:{i}"), value }
        })
        .collect()
}

/// The segments (name, bytes) of a log on a simulated disk after appending `records` in
/// `Sync` mode, and the end offset of every frame appended to the first segment.
fn log_with(records: &[Owned], segment_size: u64) -> (Vec<(String, Vec<u8>)>, Vec<usize>) {
    let storage = SimStorage::default();
    let opts = Options { durability: Durability::Sync, segment_size, ..Options::default() };
    let wal = Wal::open_with(Arc::new(storage.clone()), opts).expect("opening a simulated log");
    for r in records {
        wal.append(&r.entry()).expect("appending");
    }
    wal.close().expect("closing");
    let files = segments(&storage);
    let first = &files.first().expect("a segment").1;
    let scanned = scan(first).expect("a valid segment");
    let mut ends = vec![HEADER_LEN];
    let mut at = HEADER_LEN;
    for _ in &scanned.records {
        at += frame_size(encoded_body_len(first, at));
        ends.push(at);
    }
    (files, ends)
}

/// The body length stored in the frame at `offset`.
fn encoded_body_len(segment: &[u8], offset: usize) -> usize {
    let field: [u8; 4] = segment[offset..offset + 4].try_into().expect("four bytes");
    u32::from_le_bytes(field) as usize
}

/// A log whose every record was truncated away: only an empty segment keeps the LSN floor.
fn log_truncated_through_all(records: &[Owned]) -> (Vec<(String, Vec<u8>)>, u64) {
    let storage = SimStorage::default();
    let opts = Options { durability: Durability::Sync, segment_size: 4096, ..Options::default() };
    let wal = Wal::open_with(Arc::new(storage.clone()), opts).expect("opening a simulated log");
    let mut last = 0;
    for r in records {
        last = wal.append(&r.entry()).expect("appending");
    }
    wal.truncate_through(last).expect("truncating");
    wal.close().expect("closing");
    (segments(&storage), last)
}

fn segments(storage: &SimStorage) -> Vec<(String, Vec<u8>)> {
    let mut names = storage.list().expect("listing");
    names.retain(|n| memdb_wal::format::parse_segment_name(n).is_some());
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = storage.read(&n).expect("reading");
            (n, bytes)
        })
        .collect()
}

/// The segment without its trailing zeros, but with room left for a few more records.
fn trim(segment: &[u8]) -> Vec<u8> {
    let used = segment.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let keep = (used.next_multiple_of(512) + 512).min(segment.len());
    segment[..keep].to_vec()
}

/// A short segment image padded with zeros to leave room for appends.
fn padded(mut segment: Vec<u8>) -> Vec<u8> {
    segment.resize(segment.len().next_multiple_of(512) + 512, 0);
    segment
}
