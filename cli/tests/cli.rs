//! The `memdb` command run as a process: the WAL tools against copies of the committed
//! golden fixtures (never the fixtures themselves), and the demo against a real PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use memdb::wal::format::segment_name;
use memdb::wal::{Durability, Options, Wal};

/// The golden fixtures of the current format version (their "newer version" is newer
/// than this build).
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../wal/tests/fixtures/v2");

/// A copy of fixture `name` in a fresh temp dir: (temp dir, WAL dir inside it).
fn fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("wal");
    std::fs::create_dir(&dir).expect("mkdir");
    let file = segment_name(1);
    std::fs::copy(Path::new(FIXTURES).join(name).join(&file), dir.join(&file)).expect("copy fixture");
    // Private whatever the umask: a log others may write is refused.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::set_permissions(dir.join(&file), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (temp, dir)
}

fn memdb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memdb")).args(args).output().expect("run memdb")
}

/// Runs `memdb wal <tool> <dir> [extra]`; returns (exit code, stdout, stderr).
fn wal(tool: &str, dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let dir = dir.to_str().expect("utf-8 temp path");
    let out = memdb(&[&["wal", tool, dir], extra].concat());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().expect("exited"), text(&out.stdout), text(&out.stderr))
}

#[test]
fn verify_tells_clean_torn_corrupt_and_newer_apart() {
    for (name, code, says) in [
        ("clean", 0, "OK: clean"),
        ("torn_tail", 0, "TORN TAIL"),
        ("bad_checksum", 1, "first bad segment: 00000000000000000001.wal, offset 344"),
        ("newer_version", 1, "NEWER FORMAT"),
    ] {
        let (_temp, dir) = fixture(name);
        let (got, stdout, stderr) = wal("verify", &dir, &[]);
        assert_eq!(got, code, "{name}: exit code\n{stdout}{stderr}");
        assert!(stdout.contains(says), "{name}: expected {says:?} in\n{stdout}");
    }
}

#[test]
fn inspect_shows_segments_tables_and_first_lsn() {
    let (_temp, dir) = fixture("clean");
    let (code, stdout, _) = wal("inspect", &dir, &[]);
    assert_eq!(code, 0, "{stdout}");
    for says in ["00000000000000000001.wal", "not in use", "first retained LSN: 1", "next LSN on open:   1048576"] {
        assert!(stdout.contains(says), "expected {says:?} in\n{stdout}");
    }
    let table = stdout.lines().find(|l| l.starts_with("t ")).expect("a line for table t");
    assert_eq!(table.split_whitespace().collect::<Vec<_>>(), ["t", "10", "0", "0"]);

    let (code, stdout, _) = wal("inspect", &fixture("bad_checksum").1, &[]);
    assert_eq!(code, 1);
    assert!(stdout.contains("CORRUPT") && stdout.contains("--truncate-at-corruption"), "{stdout}");
}

#[test]
fn dump_prints_json_lines_with_filters() {
    let (_temp, dir) = fixture("clean");
    let lines = |extra: &[&str]| -> Vec<serde_json::Value> {
        let (code, stdout, stderr) = wal("dump", &dir, extra);
        assert_eq!(code, 0, "{stderr}");
        stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    };
    let all = lines(&[]);
    assert_eq!(all.iter().map(|r| r["lsn"].as_u64().expect("lsn")).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert_eq!(all[2]["key"], "k3");
    assert_eq!(all[2]["op"], "put");
    assert_eq!(all[2]["value"]["lsn"], 3, "the value is embedded as JSON");
    assert_eq!(lines(&["--key", "k3"]).len(), 1);
    assert_eq!(lines(&["--from-lsn", "8"]).len(), 3);
    assert_eq!(lines(&["--table", "t", "--from-lsn", "10"]).len(), 1);
    assert!(lines(&["--table", "other"]).is_empty());

    // On a damaged log, the intact records beyond the damage are salvaged and marked.
    let (_temp, dir) = fixture("bad_checksum");
    let (code, stdout, stderr) = wal("dump", &dir, &[]);
    assert_eq!(code, 1, "{stderr}");
    let beyond = stdout.lines().filter(|l| l.contains(r#""beyond_damage":true"#)).count();
    assert_eq!((stdout.lines().count(), beyond), (9, 6), "LSN 1-3 readable, 4 damaged, 5-10 beyond\n{stdout}");
}

#[test]
fn repair_cuts_at_the_corruption_and_backs_up_what_it_cuts() {
    let (temp, dir) = fixture("bad_checksum");
    let original = std::fs::read(dir.join(segment_name(1))).expect("read");

    let (code, _, stderr) = wal("repair", &dir, &[]);
    assert_eq!(code, 2, "repair without --truncate-at-corruption is refused\n{stderr}");
    assert!(stderr.contains("--truncate-at-corruption"), "{stderr}");
    assert_eq!(std::fs::read(dir.join(segment_name(1))).expect("read"), original, "a refusal changes nothing");

    let (code, stdout, stderr) = wal("repair", &dir, &["--truncate-at-corruption"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for says in
        ["offset 344", "6 intact frame(s) after it (LSN 5..=10)", "lost: LSN 4..=10", "the log now opens: 3 records"]
    {
        assert!(stdout.contains(says), "expected {says:?} in\n{stdout}");
    }
    let backups: Vec<_> = std::fs::read_dir(temp.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("wal.repair-")))
        .collect();
    assert_eq!(backups.len(), 1, "one sibling backup dir: {backups:?}");
    assert_eq!(std::fs::read(backups[0].join(segment_name(1))).expect("backup"), original, "the backup is unchanged");

    let (code, stdout, _) = wal("verify", &dir, &[]);
    assert_eq!(code, 0, "{stdout}");
    let wal = Wal::open(&dir, Options { durability: Durability::Sync, ..Options::default() }).expect("opens");
    assert!(wal.next_lsn() > 10, "the LSNs cut (4..=10) are never handed out again: {}", wal.next_lsn());
}

/// `memdb wal repair` keeps the log's modes: its backup and every file it writes get
/// the modes the WAL directory had, private or for a group of operators.
#[test]
fn repair_keeps_the_logs_modes() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    for (dir_mode, file_mode) in [(0o700, 0o600), (0o750, 0o640)] {
        let (temp, dir) = fixture("bad_checksum");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(dir_mode)).expect("chmod");
        let segment = dir.join(segment_name(1));
        std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(file_mode)).expect("chmod");
        let (code, stdout, stderr) = wal("repair", &dir, &["--truncate-at-corruption"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let backup = std::fs::read_dir(temp.path())
            .expect("list")
            .map(|e| e.expect("entry").path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("wal.repair-")))
            .expect("a backup");
        assert_eq!((mode(&dir), mode(&backup)), (dir_mode, dir_mode), "the directories' modes");
        for file in [&backup.join(segment_name(1))]
            .into_iter()
            .cloned()
            .chain(std::fs::read_dir(&dir).expect("list").map(|e| e.expect("entry").path()))
        {
            assert_eq!(mode(&file), file_mode, "{}", file.display());
        }
    }
}

#[test]
fn repair_leaves_torn_tails_and_newer_formats_alone() {
    let (_temp, dir) = fixture("torn_tail");
    let before = std::fs::read(dir.join(segment_name(1))).expect("read");
    let (code, stdout, _) = wal("repair", &dir, &["--truncate-at-corruption"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing to repair: only a torn tail"), "{stdout}");
    assert_eq!(std::fs::read(dir.join(segment_name(1))).expect("read"), before);

    let (_temp, dir) = fixture("newer_version");
    let (code, _, stderr) = wal("repair", &dir, &["--truncate-at-corruption"]);
    assert_eq!(code, 3);
    assert!(stderr.contains("newer format"), "{stderr}");
}

#[test]
fn repair_refuses_a_log_in_use_and_inspect_says_so() {
    let (_temp, dir) = fixture("clean");
    // This process holds the log open (its LOCK) while the tools run.
    let open = Wal::open(&dir, Options { durability: Durability::Sync, ..Options::default() }).expect("open");
    let (code, _, stderr) = wal("repair", &dir, &["--truncate-at-corruption"]);
    assert_eq!(code, 3);
    assert!(stderr.contains("in use") && stderr.contains("what to do"), "{stderr}");
    let (code, stdout, _) = wal("inspect", &dir, &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("in use by a live process"), "{stdout}");
    drop(open);
    let (_, stdout, _) = wal("inspect", &dir, &[]);
    assert!(stdout.contains("not in use"), "{stdout}");
}

#[test]
fn errors_say_what_to_do_and_help_has_examples() {
    let (code, _, stderr) = wal("verify", Path::new("/nonexistent/memdb-wal"), &[]);
    assert_eq!(code, 3);
    assert!(stderr.contains("is not a directory") && stderr.contains("what to do"), "{stderr}");
    for args in
        [&["demo"][..], &["drill"], &["wal", "inspect"], &["wal", "verify"], &["wal", "dump"], &["wal", "repair"]]
    {
        let out = memdb(&[args, &["--help"]].concat());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && help.contains("Example"), "{args:?} --help:\n{help}");
    }
    let top = memdb(&["--help"]);
    assert!(String::from_utf8_lossy(&top.stdout).contains("Exit codes"));
}

#[test]
fn demo_runs_against_postgresql_and_recovers_every_acknowledged_write() {
    let out = memdb(&["demo", "--quick"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for says in [
        "after the automatic flush",
        "after eviction",
        "cache misses 0 → 1",
        "killed by signal 9",
        "served from memory",
        "PostgreSQL is unavailable",
        "postgres_up = false",
        "backlog drained",
        "(all of them)",
    ] {
        assert!(stdout.contains(says), "expected {says:?} in\n{stdout}");
    }
}

#[test]
fn drill_kills_children_and_reports_no_loss() {
    let out = memdb(&["drill", "--iterations", "4", "--seed", "0x5eed"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "drill failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for says in ["drills 4 (", "lost 0", "seed 0x5eed", "PASSED"] {
        assert!(stdout.contains(says), "expected {says:?} in\n{stdout}");
    }
}
