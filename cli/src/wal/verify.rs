//! `memdb wal verify DIR`: check every frame; exit 0 if the log opens as it is, 1 if not.

use std::path::Path;

use memdb::wal::inspect::SegmentState;

use super::{advice, describe, read};
use crate::failure::Failure;
use crate::live::thousands;

pub const HELP: &str = "\
Checks every frame's checksum, LSN sequence and fields, and the chain of segments, as
opening the log does, without opening it (read-only, no lock taken).

A torn tail (the end of the newest segment, cut short by a crash) is reported as such: it
is normal, the next open cuts it, and the exit code is 0. Corruption (damage no crash
explains) or a segment of a newer format is exit code 1, with the first bad segment and
offset.

Example:
  memdb wal verify ./memdb-wal && echo clean";

pub fn run(dir: &Path) -> Result<u8, Failure> {
    let inspection = read(dir, |_| ())?;
    println!(
        "checked {} segment(s), {} valid records{}",
        inspection.segments.len(),
        thousands(inspection.records()),
        if inspection.in_use { " (in use by a live process: its newest tail may be mid-write)" } else { "" }
    );
    if let Some((index, segment)) = inspection.first_problem() {
        let (word, sentence) = describe(&segment.state);
        println!("{word}: segment {} — {sentence}", segment.name);
        if let SegmentState::Corrupt(corruption) = &segment.state {
            println!("  first bad segment: {}, offset {}", corruption.segment, corruption.offset);
            if let Some(beyond) = segment.beyond_damage {
                println!(
                    "  after it in that segment: {} intact frame(s){}, {} bytes",
                    beyond.frames,
                    if beyond.frames > 0 {
                        format!(" (LSN {}..={})", beyond.first_lsn, beyond.last_lsn)
                    } else {
                        String::new()
                    },
                    thousands(beyond.bytes)
                );
            }
            let later: Vec<_> = inspection.segments.iter().skip(index + 1).collect();
            if !later.is_empty() {
                let records: u64 = later.iter().map(|s| s.records).sum();
                println!("  later segments not read on open: {} ({} records)", later.len(), thousands(records));
            }
        }
        if let Some(todo) = advice(dir, &inspection) {
            println!("DAMAGED: the log refuses to open. What to do:\n  {todo}");
        }
        return Ok(crate::EXIT_DAMAGED);
    }
    match inspection.torn_tail() {
        Some((segment, offset)) => {
            let state = inspection.segments.iter().find(|s| s.name == segment).map(|s| describe(&s.state).1);
            println!("TORN TAIL: segment {segment} — {}", state.unwrap_or_default());
            println!("OK: the log opens (the torn tail at offset {offset} is cut on open)");
        }
        None => println!("OK: clean"),
    }
    Ok(0)
}
