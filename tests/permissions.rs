//! The WAL is private: created `0700`/`0600` (or `0750`/`0640` with group access)
//! whatever the umask, and a WAL directory or segment that others may write, or that
//! another user owns, is refused — with the fix named, before anything is replayed.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use memdb::wal::storage::Access;
use memdb::{Error, MemDb};
use serde_json::json;

/// Sets the process's umask (the tests here hold whatever it is: the modes are exact).
fn umask(mask: libc::mode_t) {
    // SAFETY: umask has no preconditions; it only sets this process's file mode mask.
    unsafe { libc::umask(mask) };
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Writes enough 1 KiB records to fill several 1 MiB segments, flushes some.
async fn fill(db: &MemDb, table: &str) {
    let pad = "x".repeat(1000);
    for i in 0..3_000 {
        db.insert(table, &format!("k{i}"), &json!({"pad": pad})).await.expect("insert");
        if i == 1_000 {
            db.flush(None).await.expect("flush");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatever_the_umask_the_wal_is_0700_and_every_file_0600_or_the_group_modes() {
    for (mask, access, dir_mode, file_mode) in [
        (0o000, Access::Private, 0o700, 0o600),
        (0o000, Access::Group, 0o750, 0o640),
        // A strict umask takes the group's bits: they are set back exactly.
        (0o077, Access::Group, 0o750, 0o640),
    ] {
        umask(mask);
        let test = common::open(|c| c.wal_access = access).await;
        fill(&test.db, "private_modes").await;
        test.db.close().await.expect("close");
        let wal = test.dir.path().join("wal");
        assert_eq!(mode(&wal), dir_mode, "umask {mask:03o}, {access:?}: the WAL directory");
        let files: Vec<_> = fs::read_dir(&wal).expect("list").map(|e| e.expect("entry").path()).collect();
        assert!(files.len() >= 3, "segments, meta and LOCK: {files:?}");
        for file in files {
            assert_eq!(mode(&file), file_mode, "umask {mask:03o}, {access:?}: {}", file.display());
        }
    }
    umask(0o022);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_others_may_write_or_another_user_owns_is_refused_and_nothing_is_replayed() {
    let (config, dir, dsn) = common::config(|_| {}).await;
    let db = MemDb::open(config.clone()).await.expect("open");
    fill(&db, "planted").await;
    let flushed = common::pg_rows(&dsn, "planted").await.len();
    drop(db); // Unflushed records stay in the WAL, as after a crash.
    let wal = dir.path().join("wal");
    let segment = fs::read_dir(&wal)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .expect("a segment");

    /// What is done, how, how it is undone, and the fix the error must name.
    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, Box<dyn Fn() + 'a>, &'a str);
    let mut cases: Vec<Case<'_>> = vec![
        ("a world-writable directory", Box::new(|| chmod(&wal, 0o777)), Box::new(|| chmod(&wal, 0o700)), "chmod -R"),
        (
            "a group-writable segment",
            Box::new(|| chmod(&segment, 0o660)),
            Box::new(|| chmod(&segment, 0o600)),
            "chmod 600",
        ),
    ];
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let owner = |uid| {
            let segment = segment.clone();
            move || std::os::unix::fs::chown(&segment, Some(uid), None).expect("chown")
        };
        cases.push(("a segment another user owns", Box::new(owner(65_534)), Box::new(owner(0)), "run as the user"));
    } else {
        common::report("a segment owned by another user: SKIPPED (needs root to chown)");
    }
    for (case, spoil, mend, fix) in &cases {
        spoil();
        let err = MemDb::open(config.clone()).await.expect_err(case);
        let message = err.to_string();
        match err {
            Error::Wal(memdb::wal::Error::UnsafePermissions(refused)) => {
                assert!(refused.fix.starts_with(fix), "{case}: the fix is named: {message}");
                assert!(message.contains(&*refused.path.to_string_lossy()), "{case}: the path is named: {message}");
            }
            other => panic!("{case}: expected UnsafePermissions, got {other:?}"),
        }
        assert_eq!(common::pg_rows(&dsn, "planted").await.len(), flushed, "{case}: nothing replayed");
        mend();
    }
    // Mended, the log opens and every record is there.
    let db = MemDb::open(config).await.expect("open once mended");
    common::until_drained(&db).await;
    db.close().await.expect("close");
    assert_eq!(common::pg_rows(&dsn, "planted").await.len(), 3_000);
}
