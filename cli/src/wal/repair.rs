//! `memdb wal repair DIR --truncate-at-corruption`: cut the log at its first corruption,
//! after copying everything it cuts into a sibling directory, and say what was lost.
//!
//! Invariant: it changes nothing unless it holds the directory's `LOCK` (so never under a
//! live process) and the backup of every file it will change is written and synced.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memdb::wal::inspect::{Inspection, SegmentInfo, SegmentState};
use memdb::wal::storage::{Access, DirStorage, Storage};
use memdb::wal::{Durability, Options, RecoveryMode, Wal};

use super::{describe, read};
use crate::failure::Failure;
use crate::live::thousands;

pub const HELP: &str = "\
Cuts the log at its first corruption — inside the damaged segment when its header is
sound (the records before the damage stay), or before it when its header is not — and
deletes every later segment. Every record after the cut is lost: dump them first if you
want them. The damaged and deleted segments are first copied, unchanged, into a sibling
directory DIR.repair-<unix time>. Refuses while a live process has the log open (its LOCK
is held), and refuses segments of a newer format (that is not damage). A torn tail needs
no repair: the next open cuts it.

Example:
  memdb wal dump ./memdb-wal > salvage.jsonl
  memdb wal repair ./memdb-wal --truncate-at-corruption";

#[derive(clap::Args)]
pub struct Args {
    /// The WAL directory.
    dir: PathBuf,
    /// Required: agree to lose every record after the first corruption.
    #[arg(long)]
    truncate_at_corruption: bool,
}

pub fn run(args: &Args) -> Result<u8, Failure> {
    let dir = &args.dir;
    if !args.truncate_at_corruption {
        return Err(Failure {
            what: "repair loses every record after the first corruption, so it must be asked for explicitly".into(),
            todo: format!("run `memdb wal repair {} --truncate-at-corruption`", dir.display()),
            code: 2,
        });
    }
    // Read-only look first: a non-directory or an empty one is refused before locking.
    read(dir, |_| ())?;
    // The log keeps its modes: a directory operators may read stays so.
    let access = match fs::metadata(dir).map(|m| m.permissions().mode() & 0o070) {
        Ok(0) | Err(_) => Access::Private,
        Ok(_) => Access::Group,
    };
    let storage = DirStorage::open_with(dir, access).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Failure::new(
                format!("{} is in use: a live process holds its LOCK", dir.display()),
                "stop the process that has the log open (it may not be damaged at all: a running log was opened \
                 fine), then repair",
            )
        } else {
            Failure::from_error("cannot lock the WAL directory", &e, "check the directory's permissions")
        }
    })?;
    // With the lock held, nobody else writes: this look is what the repair acts on.
    let inspection = read(dir, |_| ())?;
    let Some((index, damaged)) = inspection.first_problem() else {
        match inspection.torn_tail() {
            Some((segment, offset)) => {
                println!("nothing to repair: only a torn tail ({segment} at offset {offset}), which the next open cuts")
            }
            None => println!("nothing to repair: the log is clean"),
        }
        return Ok(0);
    };
    let SegmentState::Corrupt(corruption) = &damaged.state else {
        let (_, sentence) = describe(&damaged.state);
        return Err(Failure::new(
            format!("segment {} is not damaged but of a newer format: {sentence}", damaged.name),
            "open the log with the newer memdb that wrote it; repair would destroy good data",
        ));
    };
    let doomed = &inspection.segments[index..];
    let backup = backup(dir, doomed)?;
    println!("backed up {} segment(s) to {}", doomed.len(), backup.display());

    if corruption.offset > 0 {
        // The header is sound: recovery in repair mode cuts inside the segment.
        let opts = Options {
            durability: Durability::Sync,
            recovery: RecoveryMode::TruncateAtCorruption,
            segment_size: damaged.file_len.clamp(memdb::wal::format::MIN_SEGMENT_SIZE, u64::from(u32::MAX)),
            ..Options::default()
        };
        let wal = Wal::open_with(Arc::new(storage), opts)
            .map_err(|e| Failure::from_error("the repair failed", &e, "the backup holds the original files"))?;
        wal.close().map_err(|e| Failure::from_error("syncing the repaired log", &e, "check the disk"))?;
    } else {
        // Nothing of the segment is readable: remove it and every later one. Opening is
        // left to the engine, which picks the next LSN above PostgreSQL's rows when no
        // segment is left.
        for segment in doomed {
            storage.remove(&segment.name).map_err(|e| {
                Failure::from_error("removing a segment", &e, "the backup holds the original files; retry")
            })?;
        }
        storage.sync_dir().map_err(|e| Failure::from_error("syncing the directory", &e, "check the disk"))?;
        storage.release();
    }
    report_loss(&inspection, index, &backup);
    let after = read(dir, |_| ()).ok();
    match after.as_ref().and_then(|a| a.first_problem().map(|(_, s)| s.name.clone())) {
        Some(name) => println!("the log is still damaged at {name}: run `memdb wal verify` and repair again"),
        None => println!(
            "the log now opens: {} records{}",
            thousands(after.as_ref().map_or(0, Inspection::records)),
            after.and_then(|a| a.next_lsn()).map_or(String::new(), |next| format!(", next LSN {next}"))
        ),
    }
    Ok(0)
}

/// Copies `segments` into a new sibling directory of `dir` and syncs them.
fn backup(dir: &Path, segments: &[SegmentInfo]) -> Result<PathBuf, Failure> {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let base = dir.file_name().map_or_else(|| "wal".into(), |n| n.to_string_lossy().into_owned());
    let backup = dir.with_file_name(format!("{base}.repair-{since}"));
    let fail = |e: std::io::Error| {
        Failure::from_error(
            &format!("cannot back up into {}", backup.display()),
            &e,
            "free space or give write access next to the WAL directory; nothing was changed",
        )
    };
    // The backup holds the same records: it gets the log's modes (files: `fs::copy`
    // copies them; the directory: here, whatever the umask).
    let mode = fs::metadata(dir).map_err(fail)?.permissions().mode() & 0o7777;
    fs::DirBuilder::new().mode(mode).create(&backup).map_err(fail)?;
    fs::set_permissions(&backup, fs::Permissions::from_mode(mode)).map_err(fail)?;
    for segment in segments {
        let to = backup.join(&segment.name);
        fs::copy(dir.join(&segment.name), &to).map_err(fail)?;
        fs::File::open(&to).and_then(|f| f.sync_all()).map_err(fail)?;
    }
    fs::File::open(&backup).and_then(|f| f.sync_all()).map_err(fail)?;
    Ok(backup)
}

/// Prints exactly what the cut lost: where, which segments, which LSNs, how many records.
fn report_loss(inspection: &Inspection, index: usize, backup: &Path) {
    let damaged = &inspection.segments[index];
    let SegmentState::Corrupt(corruption) = &damaged.state else { return };
    println!("cut: {} at offset {} ({})", damaged.name, corruption.offset, corruption.problem);
    let mut lost_records = 0;
    let mut lost_lsns: Option<(u64, u64)> = None;
    let mut widen = |first: u64, last: u64| {
        lost_lsns = Some(lost_lsns.map_or((first, last), |(a, b)| (a.min(first), b.max(last))));
    };
    if let Some(beyond) = damaged.beyond_damage {
        println!(
            "  lost in {}: {} bytes from offset {}: the damaged frame and {} intact frame(s) after it{}",
            damaged.name,
            thousands(beyond.bytes),
            corruption.offset,
            beyond.frames,
            if beyond.frames > 0 {
                format!(" (LSN {}..={})", beyond.first_lsn, beyond.last_lsn)
            } else {
                String::new()
            }
        );
        lost_records += beyond.frames;
        if beyond.frames > 0 {
            widen(beyond.first_lsn, beyond.last_lsn);
        }
    }
    if corruption.offset == 0 && damaged.records > 0 {
        lost_records += damaged.records;
    }
    for segment in &inspection.segments[index + 1..] {
        let range = if segment.records > 0 {
            let last = segment.first_lsn + segment.records - 1;
            widen(segment.first_lsn, last);
            format!("LSN {}..={}", segment.first_lsn, last)
        } else {
            "no readable records".into()
        };
        println!("  deleted segment {}: {} records ({range})", segment.name, thousands(segment.records));
        lost_records += segment.records;
    }
    if corruption.offset == 0 {
        println!("  deleted segment {} (unreadable header)", damaged.name);
    }
    let kept_next = inspection.segments[..=index]
        .iter()
        .rev()
        .find(|s| corruption.offset > 0 || s.name != damaged.name)
        .map(|s| s.first_lsn + s.records);
    match lost_lsns {
        Some((first, last)) => {
            let from = kept_next.unwrap_or(first).min(first);
            println!(
                "lost: LSN {from}..={last} — {} readable record(s){}; the log now ends before LSN {from}",
                thousands(lost_records),
                if from < first { " and the damaged frame(s) before them" } else { "" }
            );
        }
        None => println!("lost: the damaged bytes only, no readable record"),
    }
    println!("the cut files are kept, unchanged, in {}", backup.display());
}
