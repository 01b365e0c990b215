//! `memdb wal inspect DIR`: what a log directory holds, segment by segment.

use std::path::Path;

use memdb::wal::inspect::OpCounts;

use super::{advice, describe, read};
use crate::failure::Failure;
use crate::live::thousands;

pub const HELP: &str = "\
Reads the segments without opening the log: never takes its LOCK, never writes, so it is
safe beside a running process (whose newest segment may then be mid-write).

Example:
  memdb wal inspect ./memdb-wal";

pub fn run(dir: &Path) -> Result<u8, Failure> {
    let inspection = read(dir, |_| ())?;
    let in_use = if inspection.in_use { "in use by a live process" } else { "not in use" };
    println!("WAL {} ({in_use})", dir.display());
    println!();
    println!(
        "{:<26} {:>12} {:>12} {:>9} {:>12} {:>12}  state",
        "segment", "first LSN", "last LSN", "records", "bytes used", "file size"
    );
    let mut tables = std::collections::BTreeMap::<&str, OpCounts>::new();
    for segment in &inspection.segments {
        let last =
            if segment.records == 0 { "-".to_owned() } else { (segment.first_lsn + segment.records - 1).to_string() };
        let (word, _) = describe(&segment.state);
        let after = if segment.after_damage { " (after the damage: not read on open)" } else { "" };
        println!(
            "{:<26} {:>12} {:>12} {:>9} {:>12} {:>12}  {word}{after}",
            segment.name,
            segment.first_lsn,
            last,
            thousands(segment.records),
            thousands(segment.used),
            thousands(segment.file_len)
        );
        for (table, counts) in &segment.tables {
            let total = tables.entry(table).or_default();
            total.puts += counts.puts;
            total.deletes += counts.deletes;
            total.create_tables += counts.create_tables;
        }
    }
    println!();
    println!("{:<26} {:>9} {:>9} {:>13}", "table", "puts", "deletes", "create_table");
    for (table, counts) in &tables {
        println!(
            "{table:<26} {:>9} {:>9} {:>13}",
            thousands(counts.puts),
            thousands(counts.deletes),
            thousands(counts.create_tables)
        );
    }
    println!();
    let used: u64 = inspection.segments.iter().map(|s| s.used).sum();
    println!(
        "records:            {} in {} segment(s), {} bytes of data",
        thousands(inspection.records()),
        inspection.segments.len(),
        thousands(used)
    );
    match inspection.first_lsn() {
        Some(first) if first > 1 => println!(
            "first retained LSN: {first} (the log was truncated through LSN {}: the flush watermark \
             when it was last compacted; older records are in PostgreSQL)",
            first - 1
        ),
        Some(first) => println!("first retained LSN: {first} (nothing truncated yet)"),
        None => {}
    }
    if let Some(next) = inspection.next_lsn() {
        println!("next LSN on open:   {next}");
    }
    if !inspection.temp_files.is_empty() {
        println!("leftover temp files (removed on open): {}", inspection.temp_files.join(", "));
    }
    for segment in &inspection.segments {
        if !matches!(segment.state, memdb::wal::inspect::SegmentState::Clean) {
            let (word, sentence) = describe(&segment.state);
            println!("{word}: {} — {sentence}", segment.name);
        }
    }
    match advice(dir, &inspection) {
        Some(todo) => {
            println!("verdict: DAMAGED — opening the log fails. What to do:\n  {todo}");
            Ok(crate::EXIT_DAMAGED)
        }
        None => {
            println!("verdict: the log opens as it is");
            Ok(0)
        }
    }
}
