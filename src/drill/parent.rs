//! The drill's parent: start a child, check what it recovered against the model, let it
//! write, kill it, and again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio_postgres::Client;

use super::child::{DSN, DURABILITY, INLINE_FLUSH, PG_DOWN, ROLE, SEED, WAL_DIR};
use super::model::{Event, Key, Model, TABLES};
use super::rng::Rng;
use super::{DrillError, Options, Report};
use crate::wal::kill_point;
use crate::{Durability, validate};

/// How long a child may take to open and read every key.
const OPEN_PATIENCE: Duration = Duration::from_secs(60);
/// How long an armed child may take to reach its kill point before the parent kills it.
const POINT_PATIENCE: Duration = Duration::from_secs(10);
/// The `Periodic` interval of the children that do not sync every write.
const PERIODIC: Duration = Duration::from_millis(50);
/// A run stops after this many problems: the first ones say what is wrong.
const MAX_PROBLEMS: usize = 10;

/// Runs the drill: `options.iterations` children, each made by `child` (a command that
/// runs this program, whose `main` calls [`super::child_main`] first), killed and checked.
///
/// # Errors
/// [`DrillError`] when the drill cannot run at all; what it finds is in the [`Report`].
pub fn run(options: &Options, mut child: impl FnMut() -> Command) -> Result<Report, DrillError> {
    let started = Instant::now();
    let seed = options.seed.unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Rng(now.as_nanos() as u64 ^ u64::from(std::process::id())).next()
    });
    let mut rng = Rng(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| DrillError::Io { what: "starting a runtime", source })?;
    let dsn = match &options.pg_dsn {
        Some(dsn) => dsn.clone(),
        None => runtime.block_on(crate::postgres::test_dsn()).map_err(|e| DrillError::Postgres(e.to_string()))?,
    };
    let mut pg = runtime.block_on(connect(&dsn))?;
    // The private server, when the drill has one: some children live with it stopped.
    let server = match &options.pg_dsn {
        Some(_) => None,
        None => Some(crate::postgres::PrivateCluster::shared().map_err(|e| DrillError::Postgres(e.to_string()))?),
    };
    let temp = tempfile::tempdir().map_err(|source| DrillError::Io { what: "creating a temp dir", source })?;
    let wal_dir = options.wal_dir.clone().unwrap_or_else(|| temp.path().join("wal"));

    let mut report = Report { seed, ..Report::default() };
    let mut model = Model::default();
    // PostgreSQL's checksum after a kill at `flush.committed`, for the next replay, and
    // the kills it stands for (a child killed there during its own recovery leaves
    // PostgreSQL as it was, so its kill joins the earlier one's).
    let mut committed_checksum: Option<(String, u64)> = None;
    let mut drill = 0;
    while drill <= options.iterations && report.problems.len() < MAX_PROBLEMS {
        let last = drill == options.iterations;
        let durability = options.durability.unwrap_or(if drill % 2 == 0 {
            Durability::Sync
        } else {
            Durability::Periodic(PERIODIC)
        });
        // Every fourth child of a run of random kills lives with PostgreSQL stopped (not
        // the last: it checks).
        let pg_down = server.is_some() && options.kill_point.is_none() && !last && drill % 4 == 3;
        // A child killed during recovery never checks anything: arm every other one.
        let armed = options
            .kill_point
            .as_deref()
            .filter(|p| !last && !pg_down && (*p != kill_point::DURING_RECOVERY || drill % 2 == 0))
            .map(|p| format!("{p}:{}", 1 + rng.below(max_nth(p))));
        let mut command = child();
        command
            .env(ROLE, "child")
            .env(DSN, &dsn)
            .env(WAL_DIR, &wal_dir)
            .env(DURABILITY, durability_var(durability))
            .env(SEED, rng.next().to_string())
            .env(kill_point::TRACE_ENV, "1")
            .env_remove(kill_point::ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(spec) = &armed {
            command.env(kill_point::ENV, spec);
        }
        if options.inline_flush {
            command.env(INLINE_FLUSH, "1");
        }
        if let (true, Some(server)) = (pg_down, server) {
            command.env(PG_DOWN, "1");
            server.stop_server().map_err(|e| DrillError::Postgres(e.to_string()))?;
        }
        let mut run = Running::spawn(command, drill)?;

        // Recovery, then the check: of what memory holds alone while PostgreSQL is down.
        let opened = run.until_reads_done(&mut model, &mut report);
        if let (Some((reads, unknown)), true) = (&opened, pg_down) {
            let checked = model.check_in_memory(reads, unknown);
            report.acknowledged_checked += checked.acknowledged;
            report.lost += checked.lost.len() as u64;
            report.problems.extend(checked.lost.into_iter().map(|p| format!("drill {drill} (PostgreSQL down): {p}")));
        }
        if let Some((reads, _)) = opened.as_ref().filter(|_| !pg_down) {
            let pg_state = runtime.block_on(pg_state(&pg))?;
            let checked = model.check(reads, &pg_state);
            report.acknowledged_checked += checked.acknowledged;
            report.lost += checked.lost.len() as u64;
            let tag = |p: String| format!("drill {drill}: {p}");
            report.problems.extend(checked.lost.into_iter().chain(checked.problems).map(tag));
            if let Some((before, kills)) = committed_checksum.take() {
                let after = runtime.block_on(checksum(&pg))?;
                if after == before {
                    report.replays_unchanged += kills;
                } else {
                    report.problems.push(format!(
                        "drill {drill}: replaying after a kill at {} changed PostgreSQL",
                        kill_point::PG_COMMITTED
                    ));
                }
            }
        }
        if last {
            run.finish();
            break;
        }
        if opened.is_some() {
            let delay = if armed.is_some() { POINT_PATIENCE } else { random_delay(options, &mut rng) };
            run.go(delay, &mut model, &mut report);
        }
        let end = run.kill(&mut model, &mut report);
        match end {
            End::Killed { by_parent } => {
                report.drills += 1;
                report.drills_sync += u64::from(durability == Durability::Sync);
                report.kills_during_flush += u64::from(run.in_flush);
                report.kills_during_rotation += u64::from(run.in_rotation);
                if by_parent {
                    // Records acknowledged since the last flush: the replay may change rows.
                    committed_checksum = None;
                }
                if armed.is_some() && !by_parent {
                    report.kills_at_point += 1;
                    if options.kill_point.as_deref() == Some(kill_point::PG_COMMITTED) {
                        match &mut committed_checksum {
                            Some((_, kills)) => *kills += 1,
                            None => committed_checksum = Some((runtime.block_on(checksum(&pg))?, 1)),
                        }
                    }
                }
            }
            End::Exited(status) => report.problems.push(format!("drill {drill}: the child ended by itself: {status}")),
        }
        if let (true, Some(server)) = (pg_down, server) {
            server.start_server().map_err(|e| DrillError::Postgres(e.to_string()))?;
            pg = runtime.block_on(connect(&dsn))?;
            report.drills_pg_down += 1;
            committed_checksum = None;
        }
        drill += 1;
    }
    report.elapsed = started.elapsed();
    drop(temp);
    Ok(report)
}

/// The passages of a point a child makes in a few seconds, at least: `nth` is drawn below.
fn max_nth(point: &str) -> u64 {
    match point {
        kill_point::AFTER_WRITE => 300,
        kill_point::AFTER_SYNC => 10,
        kill_point::AFTER_DIR_SYNC | kill_point::PG_COMMITTED => 4,
        kill_point::ROTATION | kill_point::ROTATED | kill_point::SEGMENT_CREATED => 3,
        kill_point::MID_TRUNCATION => 2,
        _ => 1,
    }
}

fn durability_var(durability: Durability) -> String {
    match durability {
        Durability::Sync => "sync".into(),
        Durability::Periodic(interval) => interval.as_millis().max(1).to_string(),
    }
}

fn random_delay(options: &Options, rng: &mut Rng) -> Duration {
    let (min, max) = options.kill_after;
    let span = u64::try_from(max.saturating_sub(min).as_micros()).unwrap_or(u64::MAX);
    min + Duration::from_micros(rng.below(span.saturating_add(1)))
}

/// How a child ended.
enum End {
    Killed { by_parent: bool },
    Exited(std::process::ExitStatus),
}

/// A child and the lines it printed.
struct Running {
    child: Child,
    lines: Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    drill: u64,
    in_flush: bool,
    in_rotation: bool,
    reads: BTreeMap<Key, Value>,
    /// Keys the child could not read (PostgreSQL down, not in memory).
    unknown: BTreeSet<Key>,
    reads_done: bool,
    /// Its stdout closed: it is dying by itself (a kill point), not by the parent.
    exited: bool,
}

impl Running {
    fn spawn(mut command: Command, drill: u64) -> Result<Self, DrillError> {
        let mut child = command.spawn().map_err(|source| DrillError::Io { what: "spawning a child", source })?;
        let stdout = child.stdout.take().ok_or_else(|| DrillError::Io {
            what: "taking the child's stdout",
            source: std::io::Error::other("not piped"),
        })?;
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            forward_complete_lines(BufReader::new(stdout), &tx);
        });
        Ok(Self {
            child,
            lines,
            reader: Some(reader),
            drill,
            in_flush: false,
            in_rotation: false,
            reads: BTreeMap::new(),
            unknown: BTreeSet::new(),
            reads_done: false,
            exited: false,
        })
    }

    /// Takes one line into the drill's state and the model.
    fn take(&mut self, line: &str, model: &mut Model, report: &mut Report) {
        let outcome = super::model::parse(line).and_then(|event| match event {
            Event::Opened => Ok(()),
            Event::Read(key, value) => {
                if let Some(v) = value {
                    self.reads.insert(key, v);
                }
                Ok(())
            }
            Event::Unknown(key) => {
                self.unknown.insert(key);
                Ok(())
            }
            Event::ReadsDone => {
                self.reads_done = true;
                Ok(())
            }
            Event::Intent { n, key, op, arg } => model.intent(n, key, op, arg),
            Event::Ack { n, result } => model.ack(n, result),
            Event::FlushStart => {
                self.in_flush = true;
                Ok(())
            }
            Event::FlushEnd => {
                self.in_flush = false;
                Ok(())
            }
            Event::Point(name) => {
                match name.as_str() {
                    kill_point::ROTATION => self.in_rotation = true,
                    kill_point::ROTATED => self.in_rotation = false,
                    _ => {}
                }
                Ok(())
            }
            Event::Failed(message) => Err(format!("the child failed: {message}")),
        });
        if let Err(problem) = outcome {
            report.problems.push(format!("drill {}: {problem}", self.drill));
        }
    }

    /// Reads until the child has read every key back (`Some((reads, unknown))`), or died.
    fn until_reads_done(
        &mut self,
        model: &mut Model,
        report: &mut Report,
    ) -> Option<(BTreeMap<Key, Value>, BTreeSet<Key>)> {
        let deadline = Instant::now() + OPEN_PATIENCE;
        while !self.reads_done {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.take(&line, model, report),
                Err(RecvTimeoutError::Timeout) => {
                    report
                        .problems
                        .push(format!("drill {}: the child did not open within {OPEN_PATIENCE:?}", self.drill));
                    return None;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.exited = true;
                    return None;
                }
            }
        }
        // Trace lines of recovery (a rotation, say) say nothing about the next kill.
        self.in_rotation = false;
        Some((std::mem::take(&mut self.reads), std::mem::take(&mut self.unknown)))
    }

    /// Lets the child write for `delay` (or until it dies by itself).
    fn go(&mut self, delay: Duration, model: &mut Model, report: &mut Report) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            // A child that died meanwhile is found out by `kill`.
            let _ = stdin.write_all(b"go\n").and_then(|()| stdin.flush());
        }
        let deadline = Instant::now() + delay;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.take(&line, model, report),
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => {
                    self.exited = true;
                    return;
                }
            }
        }
    }

    /// `SIGKILL` unless dead already; then every line it printed before dying.
    fn kill(&mut self, model: &mut Model, report: &mut Report) -> End {
        // Not `try_wait`: a dying child has closed its pipe before it can be reaped.
        let alive = !self.exited;
        if alive {
            let _ = self.child.kill();
        }
        let status = self.child.wait();
        while let Ok(line) = self.lines.recv() {
            self.take(&line, model, report);
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        match status {
            Ok(status) if status.signal() == Some(libc::SIGKILL) => End::Killed { by_parent: alive },
            Ok(status) => End::Exited(status),
            Err(e) => {
                report.problems.push(format!("drill {}: waiting for the child: {e}", self.drill));
                End::Killed { by_parent: alive }
            }
        }
    }

    /// Tells the last child to stop, and waits for it.
    fn finish(mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

async fn connect(dsn: &str) -> Result<Client, DrillError> {
    crate::connect_postgres(dsn).await.map_err(|e| DrillError::Postgres(e.to_string()))
}

/// The rows of the drill's tables in PostgreSQL (none for a table not created yet).
async fn pg_state(pg: &Client) -> Result<BTreeMap<Key, Value>, DrillError> {
    let mut state = BTreeMap::new();
    for table in TABLES {
        let sql = format!("SELECT key, data::text FROM {}{table}", validate::TABLE_PREFIX);
        for row in rows(pg, &sql).await? {
            let data: &str = row.get(1);
            let value = serde_json::from_str(data).map_err(|e| DrillError::Postgres(format!("{table}: {e}")))?;
            state.insert((table.to_owned(), row.get(0)), value);
        }
    }
    Ok(state)
}

/// A checksum of every column of the drill's tables, `updated_at` included: a replay
/// that rewrote any row changes it.
async fn checksum(pg: &Client) -> Result<String, DrillError> {
    let mut sum = String::new();
    for table in TABLES {
        let sql = format!(
            "SELECT coalesce(md5(string_agg(key || '=' || data::text || '@' || lsn || '/' || created_at || '/' \
             || updated_at, ',' ORDER BY key)), '') FROM {}{table}",
            validate::TABLE_PREFIX
        );
        for row in rows(pg, &sql).await? {
            sum.push_str(row.get(0));
            sum.push(' ');
        }
    }
    Ok(sum)
}

/// The rows of `sql`; none when its table does not exist.
async fn rows(pg: &Client, sql: &str) -> Result<Vec<tokio_postgres::Row>, DrillError> {
    match pg.query(sql, &[]).await {
        Ok(rows) => Ok(rows),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(Vec::new()),
        Err(e) => Err(DrillError::Postgres(e.to_string())),
    }
}

/// Sends each complete line of a child's output. A line longer than stdout's buffer (or
/// a pipe's atomic write) takes more than one write(2), so a kill can cut it: a last
/// line without its newline is such a remnant and is dropped — an acknowledgement cut
/// short was never received, so its operation stays in flight, as it should.
fn forward_complete_lines(mut out: impl std::io::BufRead, tx: &mpsc::Sender<String>) {
    let mut line = Vec::new();
    while out.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        if line.pop() != Some(b'\n') || tx.send(String::from_utf8_lossy(&line).into_owned()).is_err() {
            return;
        }
        line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_cut_by_the_kill_is_dropped() {
        let (tx, rx) = mpsc::channel();
        forward_complete_lines(&b"A 1 -\nW 2 drill_a k01 put {\"n\":2,\"pad\":\"xx"[..], &tx);
        drop(tx);
        assert_eq!(rx.iter().collect::<Vec<_>>(), ["A 1 -"]);
    }
}
