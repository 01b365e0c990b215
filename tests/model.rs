//! The engine against a model, on a real PostgreSQL: random sequences of insert, patch,
//! delete, get, get_uncached, query, flush and evict_idle — any of whose futures may be
//! dropped after a random number of polls — with close, crash (`MemDb::crash`) and
//! power cuts (the simulated disk drops what was not synced), each followed by a reopen,
//! and PostgreSQL restarted under a running engine (one sequence in 50, on a private
//! cluster of the test's own) or stopped for a third of a sequence (one in 25: the
//! engine reopens with it down, serves from memory, fails what needs it with
//! `Unavailable`, and drains once it is back), in `Sync` and `Periodic` mode, with and
//! without `max_cached_records`.
//!
//! The model keeps, per key, every value the engine may hold now (a dropped write may or
//! may not have happened) and every value a power cut may leave (in `Periodic` mode,
//! everything acknowledged since the last flush). After every completed flush and every
//! reopen each key must read one of them from memory, PostgreSQL must hold exactly what
//! memory holds, and nothing deleted comes back.
//!
//! `MEMDB_MODEL_SEQUENCES` sets the number of sequences (default 500), `MEMDB_SEED`
//! replays a run; both are printed.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use memdb::wal::storage::{SimFaults, SimStorage};
use memdb::{Config, Durability, MemDb};
use serde_json::{Value, json};

const TABLE: &str = "model";
const KEYS: usize = 6;
const OPS: usize = 30;

/// SplitMix64: a seed replays the same sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What the engine may hold for one key: a value, or `None` (deleted or never written).
type Candidates = Vec<Option<Value>>;

fn add(set: &mut Candidates, value: Option<Value>) {
    if !set.contains(&value) {
        set.push(value);
    }
}

/// One key's possible states.
#[derive(Clone)]
struct Key {
    /// What memory may hold now.
    now: Candidates,
    /// What a power cut may leave.
    durable: Candidates,
}

/// The model of one sequence, and what happened so far (printed on failure).
struct Model {
    keys: BTreeMap<String, Key>,
    sync: bool,
    /// PostgreSQL was restarted or stopped in this sequence: calls that reach it may fail.
    bounced: bool,
    /// PostgreSQL is stopped now: no flush or check can complete.
    down: bool,
    log: Vec<String>,
    seed: u64,
}

impl Model {
    fn new(seed: u64, sync: bool) -> Self {
        let keys =
            (0..KEYS).map(|k| (format!("s{seed:016x}-k{k}"), Key { now: vec![None], durable: vec![None] })).collect();
        Self { keys, sync, bounced: false, down: false, log: Vec::new(), seed }
    }

    fn context(&self) -> String {
        format!(
            "seed {} ({} mode), ops:\n  {}",
            self.seed,
            if self.sync { "Sync" } else { "Periodic" },
            self.log.join("\n  ")
        )
    }

    /// A write acknowledged (`acked`) or dropped part way (`!acked`: it may not have
    /// happened).
    fn write(&mut self, key: &str, value: Option<Value>, acked: bool) {
        let sync = self.sync;
        let k = self.keys.get_mut(key).expect("known key");
        if acked {
            k.now = vec![value.clone()];
        } else {
            add(&mut k.now, value.clone());
        }
        if acked && sync {
            k.durable = vec![value];
        } else {
            add(&mut k.durable, value);
        }
    }

    /// Everything memory may hold is durable now (a completed flush, a close).
    fn all_durable(&mut self) {
        for k in self.keys.values_mut() {
            k.durable.clone_from(&k.now);
        }
    }

    /// Memory was seen to hold `value` for `key`: it must be a candidate; now it is known.
    fn observe(&mut self, key: &str, value: Option<Value>, what: &str) {
        let now = &self.keys[key].now;
        assert!(now.contains(&value), "{what}: {key} reads {value:?}, expected one of {now:?}\n{}", self.context());
        if let Some(k) = self.keys.get_mut(key) {
            k.now = vec![value];
        }
    }

    /// After a restart: memory holds what the WAL kept — every write applied (a write
    /// is appended and applied under one lock), or after a power cut what was durable.
    fn restarted(&mut self, power_cut: bool) {
        for k in self.keys.values_mut() {
            if power_cut {
                k.now.clone_from(&k.durable);
            }
        }
    }
}

/// Every key reads one of its candidates from memory, and PostgreSQL holds the same.
async fn check_everything(db: &MemDb, pg: &tokio_postgres::Client, model: &mut Model, what: &str) {
    let prefix = format!("s{:016x}-%", model.seed);
    let rows = pg
        .query(&format!("SELECT key, data::text FROM memdb_{TABLE} WHERE key LIKE $1"), &[&prefix])
        .await
        .expect("select");
    let stored: BTreeMap<String, Value> =
        rows.iter().map(|r| (r.get(0), serde_json::from_str(r.get::<_, &str>(1)).expect("json"))).collect();
    let keys: Vec<String> = model.keys.keys().cloned().collect();
    for key in keys {
        let got = db.get(TABLE, &key).await.expect("get").map(|j| j.to_value());
        model.observe(&key, got.clone(), what);
        assert_eq!(
            stored.get(&key),
            got.as_ref(),
            "{what}: PostgreSQL disagrees with memory on {key}\n{}",
            model.context()
        );
    }
}

/// A call's outcome: `None` if it was dropped, or failed because PostgreSQL was
/// restarted or stopped under it (it then did not happen, or did without being
/// acknowledged).
fn settled<T>(done: Option<memdb::Result<T>>, model: &Model, what: &str) -> Option<T> {
    match done? {
        Ok(value) => Some(value),
        Err(memdb::Error::Postgres(_) | memdb::Error::Unavailable { .. }) if model.bounced => None,
        Err(e) => panic!("{what}: {e}\n{}", model.context()),
    }
}

/// Flushes until PostgreSQL takes it (it may be coming back from a restart).
async fn flush_until_done(db: &MemDb, model: &Model) {
    for _ in 0..100 {
        if settled(Some(db.flush(None).await), model, "flush").is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("PostgreSQL did not come back\n{}", model.context());
}

/// Runs `fut` to the end, or (sometimes) drops it after a random number of polls.
async fn maybe_dropped<F: std::future::Future>(rng: &mut Rng, fut: F) -> Option<F::Output> {
    if rng.chance(25) {
        let polls = rng.below(4) as usize;
        common::poll_then_drop(fut, polls).await
    } else {
        Some(fut.await)
    }
}

/// Counts for the closing line.
#[derive(Default)]
struct Tally {
    ops: usize,
    dropped: usize,
    closes: usize,
    crashes: usize,
    power_cuts: usize,
    pg_restarts: usize,
    pg_outages: usize,
    down_reopens: usize,
    checks: usize,
}

async fn open(config: &Config, disk: &SimStorage, model: &Model) -> MemDb {
    MemDb::open_on(config.clone(), Arc::new(disk.clone()))
        .await
        .unwrap_or_else(|e| panic!("reopen failed: {e}\n{}", model.context()))
}

/// PostgreSQL as the sequences see it: a client for the checks and, on a private
/// cluster of the test's own, the means to restart the server.
struct Pg {
    dsn: String,
    client: tokio_postgres::Client,
    cluster: Option<Arc<memdb::postgres::PrivateCluster>>,
}

impl Pg {
    /// Restarts the server the way a crash would (no-op on `PG_DSN`); returns whether
    /// it did.
    async fn restart(&mut self) -> bool {
        let Some(cluster) = self.cluster.clone() else { return false };
        tokio::task::spawn_blocking(move || cluster.restart()).await.expect("task").expect("restart PostgreSQL");
        self.client = common::pg(&self.dsn).await;
        true
    }

    /// Stops (`up == false`) or starts the server (no-op on `PG_DSN`); returns whether
    /// it did.
    async fn set_up(&mut self, up: bool) -> bool {
        let Some(cluster) = self.cluster.clone() else { return false };
        tokio::task::spawn_blocking(move || if up { cluster.start_server() } else { cluster.stop_server() })
            .await
            .expect("task")
            .expect("stop or start PostgreSQL");
        if up {
            self.client = common::pg(&self.dsn).await;
        }
        true
    }
}

/// What happens to PostgreSQL in a sequence.
#[derive(Clone, Copy)]
enum PgEvent {
    None,
    /// Restarted before this operation.
    RestartAt(usize),
    /// Stopped before the first operation of the range, started before the last.
    DownDuring(usize, usize),
}

async fn run_sequence(seed: u64, base: &Config, pg: &mut Pg, event: PgEvent, tally: &mut Tally) {
    let mut rng = Rng(seed);
    let sync = rng.chance(50);
    let mut config = base.clone();
    config.durability = if sync { Durability::Sync } else { Durability::Periodic(Duration::from_secs(3600)) };
    config.max_cached_records = rng.chance(50).then_some(3);
    let mut model = Model::new(seed, sync);
    let mut disk = SimStorage::new(SimFaults::default());
    let mut db = open(&config, &disk, &model).await;
    let mut counter = 0u64;
    for op in 0..OPS {
        match event {
            PgEvent::RestartAt(at) if at == op && pg.restart().await => {
                model.log.push("postgres restart".into());
                model.bounced = true;
                tally.pg_restarts += 1;
            }
            PgEvent::DownDuring(from, _) if from == op && pg.set_up(false).await => {
                model.log.push("postgres stopped".into());
                (model.bounced, model.down) = (true, true);
                tally.pg_outages += 1;
            }
            PgEvent::DownDuring(_, to) if to == op && model.down => {
                pg.set_up(true).await;
                model.log.push("postgres started".into());
                model.down = false;
            }
            _ => {}
        }
        tally.ops += 1;
        let key = model.keys.keys().nth(rng.below(KEYS as u64) as usize).cloned().expect("a key");
        counter += 1;
        match rng.below(100) {
            0..=29 => {
                let value = json!({"n": counter, "pad": "x".repeat(rng.below(300) as usize)});
                model.log.push(format!("upsert {key} n={counter}"));
                let done = maybe_dropped(&mut rng, db.upsert(TABLE, &key, &value)).await;
                let acked = settled(done, &model, "upsert").is_some();
                tally.dropped += usize::from(!acked);
                model.write(&key, Some(value), acked);
            }
            30..=39 => {
                let patch = json!({"p": counter});
                model.log.push(format!("patch {key} p={counter}"));
                let bases = model.keys[&key].now.clone();
                let done = maybe_dropped(&mut rng, db.patch(TABLE, &key, &patch)).await;
                let done = settled(done, &model, "patch");
                tally.dropped += usize::from(done.is_none());
                match done {
                    Some(value) => {
                        let value = value.to_value();
                        let possible: Vec<Value> = bases.iter().map(|b| patched(b.as_ref(), &patch)).collect();
                        assert!(
                            possible.contains(&value),
                            "patch gave {value}, not one of {possible:?}\n{}",
                            model.context()
                        );
                        model.write(&key, Some(value), true);
                    }
                    None => {
                        for b in bases {
                            model.write(&key, Some(patched(b.as_ref(), &patch)), false);
                        }
                    }
                }
            }
            40..=49 => {
                model.log.push(format!("delete {key}"));
                let done = maybe_dropped(&mut rng, db.delete(TABLE, &key)).await;
                let acked = settled(done, &model, "delete").is_some();
                tally.dropped += usize::from(!acked);
                model.write(&key, None, acked);
            }
            50..=59 => {
                model.log.push(format!("get {key}"));
                let done = maybe_dropped(&mut rng, db.get(TABLE, &key)).await;
                if let Some(got) = settled(done, &model, "get") {
                    model.observe(&key, got.map(|j| j.to_value()), "get");
                }
            }
            60..=64 => {
                model.log.push(format!("get_uncached {key}"));
                let done = maybe_dropped(&mut rng, db.get_uncached(TABLE, &key)).await;
                if let Some(got) = settled(done, &model, "get_uncached") {
                    model.observe(&key, got.map(|j| j.to_value()), "get_uncached");
                }
            }
            65..=71 => {
                model.log.push("query".into());
                let prefix = format!("s{seed:016x}-%");
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&prefix];
                let query = db.query_params(TABLE, "key LIKE $1", &params, 100);
                let done = maybe_dropped(&mut rng, query).await;
                if let Some(rows) = settled(done, &model, "query") {
                    let found: BTreeMap<String, Value> = rows.into_iter().map(|r| (r.key, r.data.to_value())).collect();
                    let keys: Vec<String> = model.keys.keys().cloned().collect();
                    for k in keys {
                        model.observe(&k, found.get(&k).cloned(), "query (read-your-writes)");
                    }
                    model.all_durable();
                }
            }
            72..=81 => {
                model.log.push("flush".into());
                let done = maybe_dropped(&mut rng, db.flush(None)).await;
                // With PostgreSQL down a flush with nothing to write succeeds; the check
                // waits until it is back.
                if settled(done, &model, "flush").is_some() && !model.down {
                    model.all_durable();
                    check_everything(&db, &pg.client, &mut model, "after a flush").await;
                    tally.checks += 1;
                }
            }
            82..=85 => {
                model.log.push("evict_idle".into());
                let _ = db.evict_idle();
            }
            restart => {
                let kind = match restart {
                    86..=90 => "close",
                    91..=95 => "crash",
                    _ => "power cut",
                };
                model.log.push(kind.into());
                match kind {
                    "close" => {
                        // A close whose flush PostgreSQL refused still syncs the WAL.
                        let _ = settled(Some(db.close().await), &model, "close");
                        model.all_durable();
                        tally.closes += 1;
                    }
                    "crash" => {
                        db.crash().await;
                        tally.crashes += 1;
                    }
                    _ => {
                        let image = disk.power_cut_image(rng.next());
                        db.crash().await;
                        disk = image;
                        tally.power_cuts += 1;
                    }
                }
                model.restarted(kind == "power cut");
                db = open(&config, &disk, &model).await;
                // With PostgreSQL down the reopened engine serves from memory; the
                // check waits until it is back.
                tally.down_reopens += usize::from(model.down);
                if !model.down {
                    flush_until_done(&db, &model).await;
                    model.all_durable();
                    check_everything(&db, &pg.client, &mut model, &format!("after a {kind} and a reopen")).await;
                    tally.checks += 1;
                }
            }
        }
    }
    flush_until_done(&db, &model).await;
    db.close().await.unwrap_or_else(|e| panic!("close: {e}\n{}", model.context()));
}

/// The RFC 7396 merge of a flat patch onto `base` (`{}` when absent).
fn patched(base: Option<&Value>, patch: &Value) -> Value {
    let mut doc = base.cloned().unwrap_or_else(|| json!({}));
    if let (Some(doc), Some(patch)) = (doc.as_object_mut(), patch.as_object()) {
        for (k, v) in patch {
            doc.insert(k.clone(), v.clone());
        }
    }
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_keeps_every_acknowledged_write_under_random_cancels_closes_crashes_and_power_cuts() {
    let sequences: u64 = std::env::var("MEMDB_MODEL_SEQUENCES").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let seed: u64 = std::env::var("MEMDB_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    println!("model: {sequences} sequences, MEMDB_SEED={seed}");
    // A private cluster of its own, so the server can be restarted under the engine;
    // with PG_DSN set, that server, and no restarts.
    let (dsn, cluster) = match std::env::var("PG_DSN").ok().filter(|d| !d.trim().is_empty()) {
        Some(dsn) => (dsn, None),
        None => {
            let cluster = tokio::task::spawn_blocking(memdb::postgres::PrivateCluster::start)
                .await
                .expect("task")
                .expect("a private PostgreSQL");
            let dsn = cluster.create_database("memdb_model").await.expect("database");
            // The harness runs with synchronous_commit off, which a crash punishes by
            // losing the last commits: memdb relies on a commit being a commit.
            common::pg(&cluster.dsn())
                .await
                .batch_execute("ALTER DATABASE memdb_model SET synchronous_commit = on")
                .await
                .expect("alter");
            (dsn, Some(Arc::new(cluster)))
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dsn.clone(), dir.path().join("wal"));
    config.flush_interval = Duration::from_secs(3600);
    config.wal_segment_bytes = 64 << 10;
    config.idle_ttl = Duration::from_millis(1);
    config.pg_timeout = Duration::from_secs(10);
    let mut pg = Pg { client: common::pg(&dsn).await, dsn, cluster };
    // The table exists from the start, so a check before the first write finds it.
    let db = MemDb::open(config.clone()).await.expect("open");
    db.create_table(TABLE, &json!({})).await.expect("create the table");
    db.close().await.expect("close");
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    for i in 0..sequences {
        let sequence_seed = Rng(seed ^ i).next();
        // PostgreSQL restarts mid-sequence in one sequence of every 50, and is down for
        // its middle third in one of every 25.
        let event = match i % 50 {
            25 => PgEvent::RestartAt(OPS / 2),
            12 | 37 => PgEvent::DownDuring(OPS / 3, 2 * OPS / 3),
            _ => PgEvent::None,
        };
        run_sequence(sequence_seed, &config, &mut pg, event, &mut tally).await;
    }
    common::report(&format!(
        "model: {sequences} sequences (MEMDB_SEED={seed}) in {:.1} s: {} operations, {} futures dropped, {} closes, \
         {} crashes, {} power cuts, {} PostgreSQL restarts, {} PostgreSQL outages ({} reopens while it was down), \
         {} full checks of memory and PostgreSQL, lost 0",
        started.elapsed().as_secs_f64(),
        tally.ops,
        tally.dropped,
        tally.closes,
        tally.crashes,
        tally.power_cuts,
        tally.pg_restarts,
        tally.pg_outages,
        tally.down_reopens,
        tally.checks,
    ));
}
