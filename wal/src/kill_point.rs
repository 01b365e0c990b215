//! Named kill points: places where a crash drill can stop the process dead.
//!
//! `MEMDB_KILL_POINT=name[:nth]` makes the `nth` (default first) passage through the
//! point named `name` send the process `SIGKILL`, exactly as `kill -9` would at that
//! instant: no destructor, no flush, no sync. `MEMDB_KILL_TRACE=1` makes every point
//! print `P name` as one line on stdout when passed, so a drill can tell where a random
//! kill landed (during a rotation, say). Both are read once; with neither set a point
//! costs one relaxed atomic load.
//!
//! ⚑ A point never changes behaviour other than by killing or tracing, so production
//! code may call it anywhere.

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// The variable that arms a point: `name` or `name:nth`.
pub const ENV: &str = "MEMDB_KILL_POINT";
/// The variable that turns tracing on (any non-empty value but `0`).
pub const TRACE_ENV: &str = "MEMDB_KILL_TRACE";

/// A segment file was created and renamed into place; the directory is not yet synced.
pub const SEGMENT_CREATED: &str = "wal.segment.created";
/// A frame was copied into the active segment; not yet synced, not yet acknowledged.
pub const AFTER_WRITE: &str = "wal.append.written";
/// A group-commit sync of the active segment returned; its writers are not yet woken.
pub const AFTER_SYNC: &str = "wal.append.synced";
/// The directory was synced after a segment was created or removed.
pub const AFTER_DIR_SYNC: &str = "wal.dir.synced";
/// A rotation starts: the active segment is about to be synced and sealed.
pub const ROTATION: &str = "wal.rotate";
/// A rotation ended: the new segment is active.
pub const ROTATED: &str = "wal.rotated";
/// Truncation removed one segment file and the directory is not yet synced.
pub const MID_TRUNCATION: &str = "wal.truncate.mid";
/// A flush's PostgreSQL transactions committed; the WAL is not yet truncated.
pub const PG_COMMITTED: &str = "flush.committed";
/// Recovery replayed the WAL into memory; nothing of it is flushed yet.
pub const DURING_RECOVERY: &str = "recovery.replayed";

/// Every named point, for drills and documentation.
pub const ALL: &[&str] = &[
    SEGMENT_CREATED,
    AFTER_WRITE,
    AFTER_SYNC,
    AFTER_DIR_SYNC,
    ROTATION,
    ROTATED,
    MID_TRUNCATION,
    PG_COMMITTED,
    DURING_RECOVERY,
];

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
static ARMED: OnceLock<Armed> = OnceLock::new();

/// What the environment asked for.
struct Armed {
    /// The point to kill at, and on which passage (1-based).
    target: Option<(String, u64)>,
    passes: AtomicU64,
    trace: bool,
}

/// Passes the point `name`: kills the process if it is the armed one and this is the
/// passage asked for, prints it when tracing, and otherwise does nothing.
#[inline]
pub fn hit(name: &'static str) {
    if STATE.load(Ordering::Relaxed) != OFF {
        slow(name);
    }
}

#[cold]
fn slow(name: &'static str) {
    let armed = ARMED.get_or_init(from_env);
    let on = armed.trace || armed.target.is_some();
    STATE.store(if on { ON } else { OFF }, Ordering::Relaxed);
    if armed.trace {
        // One write(2) of a whole line, flushed before the point is left.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(format!("P {name}\n").as_bytes()).and_then(|()| out.flush());
    }
    if let Some((target, nth)) = &armed.target
        && target == name
        && armed.passes.fetch_add(1, Ordering::Relaxed) + 1 == *nth
    {
        kill_self();
    }
}

/// `SIGKILL` to this process: what `kill -9` does, at this exact instant.
fn kill_self() -> ! {
    // SAFETY: getpid and kill have no preconditions; SIGKILL cannot be caught.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL is delivered before kill(2) returns to a single-threaded caller and very
    // soon to a multi-threaded one; never go on meanwhile.
    loop {
        std::thread::park();
    }
}

fn from_env() -> Armed {
    let trace = std::env::var(TRACE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    let target = std::env::var(ENV).ok().and_then(|v| parse(&v));
    Armed { target, passes: AtomicU64::new(0), trace }
}

/// `name` or `name:nth` (nth ≥ 1); anything else arms nothing.
fn parse(spec: &str) -> Option<(String, u64)> {
    let spec = spec.trim();
    let (name, nth) = match spec.rsplit_once(':') {
        Some((name, nth)) => (name, nth.parse().ok().filter(|n| *n >= 1)?),
        None => (spec, 1),
    };
    (!name.is_empty()).then(|| (name.to_owned(), nth))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn specs_parse() {
        assert_eq!(parse("wal.rotate"), Some(("wal.rotate".into(), 1)));
        assert_eq!(parse(" flush.committed:3 "), Some(("flush.committed".into(), 3)));
        assert_eq!(parse("wal.rotate:0"), None);
        assert_eq!(parse("wal.rotate:x"), None);
        assert_eq!(parse(""), None);
    }
}
