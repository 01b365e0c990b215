//! `memdb wal dump DIR`: records as JSON lines, with filters.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use memdb::wal::{Op, RecordRef};

use super::read;
use crate::failure::Failure;

pub const HELP: &str = "\
One JSON object per line, oldest first:
  {\"lsn\":7,\"op\":\"put\",\"table\":\"calls\",\"key\":\"call:1\",\"segment\":\"…\",\"value\":{…}}
op is put, delete (value null) or create_table (value = the schema). A value that is not
JSON is given as \"value_text\" (UTF-8) or \"value_hex\". Reads the log without opening it
(read-only). On a damaged log every readable record is dumped: the intact ones found
beyond the damage (which opening would not read, and a repair cuts) carry
\"beyond_damage\":true; a note goes to stderr and the exit code is 1.

Examples:
  memdb wal dump ./memdb-wal --table calls --key call:1
  memdb wal dump ./memdb-wal --from-lsn 1000 | jq .key";

#[derive(clap::Args)]
pub struct Args {
    /// The WAL directory.
    dir: PathBuf,
    /// Only records of this table.
    #[arg(long)]
    table: Option<String>,
    /// Only records of this key.
    #[arg(long)]
    key: Option<String>,
    /// Only records with an LSN of at least this.
    #[arg(long, value_name = "N", default_value_t = 0)]
    from_lsn: u64,
}

pub fn run(args: &Args) -> Result<u8, Failure> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut failed = None;
    let inspection = read(&args.dir, |seen| {
        let record = seen.record;
        let wanted = record.lsn >= args.from_lsn
            && args.table.as_deref().is_none_or(|t| t == record.entry.table)
            && args.key.as_deref().is_none_or(|k| k == record.entry.key);
        if wanted && failed.is_none() {
            let line = json_line(seen.segment, &record, seen.beyond_damage);
            if let Err(e) = writeln!(out, "{line}") {
                failed = Some(e);
            }
        }
    })?;
    let flushed = out.flush();
    // A closed pipe (`| head`) is the reader's choice, not a failure.
    match failed.map_or(flushed, Err) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(Failure::new(format!("cannot write the dump: {e}"), "check where the output goes"));
        }
        _ => {}
    }
    if inspection.first_problem().is_some() {
        eprintln!(
            "note: the log is damaged (see `memdb wal verify {}`); the intact records found beyond the damage, \
             which opening would not read, are included with \"beyond_damage\":true.",
            args.dir.display()
        );
        return Ok(crate::EXIT_DAMAGED);
    }
    Ok(0)
}

fn json_line(segment: &str, record: &RecordRef<'_>, beyond_damage: bool) -> String {
    use serde_json::Value;
    let entry = &record.entry;
    let op = match entry.op {
        Op::Put => "put",
        Op::Delete => "delete",
        Op::CreateTable => "create_table",
    };
    let (field, value) = if entry.op == Op::Delete && entry.value.is_empty() {
        ("value", Value::Null)
    } else if let Ok(value) = serde_json::from_slice::<Value>(entry.value) {
        ("value", value)
    } else if let Ok(text) = std::str::from_utf8(entry.value) {
        ("value_text", Value::String(text.to_owned()))
    } else {
        ("value_hex", Value::String(entry.value.iter().map(|b| format!("{b:02x}")).collect()))
    };
    // Written by hand so the fields keep this order (a JSON map would sort them).
    let text = |s: &str| Value::String(s.to_owned()).to_string();
    let beyond = if beyond_damage { r#","beyond_damage":true"# } else { "" };
    format!(
        r#"{{"lsn":{},"op":"{op}","table":{},"key":{},"segment":{}{beyond},"{field}":{value}}}"#,
        record.lsn,
        text(entry.table),
        text(entry.key),
        text(segment)
    )
}
