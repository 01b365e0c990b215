//! memdb's calls that complete without waiting still take part in tokio's cooperative
//! scheduling: tasks that loop on them (a bulk import, a queue replay) yield as a loop
//! over a tokio channel does, so they never starve the other tasks of their worker.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

/// Tasks writing and reading in tight loops, more than there are workers.
const LOOPING_TASKS: usize = 16;
/// How long the timer asks for, and how late it may fire while the loops run.
const TIMER: Duration = Duration::from_millis(100);
const LATE_BOUND: Duration = Duration::from_secs(1);
/// The loops stop by themselves after this long, so a starved timer fails the test
/// instead of hanging it.
const LOOPS_GIVE_UP: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_looping_on_memdb_calls_never_starve_a_timer() {
    let t = common::open(|_| {}).await;
    t.db.insert("calls", "seed", &json!({"i": 0})).await.expect("first write");
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let loops: Vec<_> = (0..LOOPING_TASKS)
        .map(|task| {
            let (db, stop, calls) = (t.db.clone(), Arc::clone(&stop), Arc::clone(&calls));
            tokio::spawn(async move {
                let key = format!("loop:{task}");
                let mut i = 0u64;
                // Never awaits anything but memdb: no sleep, no channel, no yield_now.
                while !stop.load(Ordering::Relaxed) && started.elapsed() < LOOPS_GIVE_UP {
                    db.upsert("calls", &key, &json!({"i": i})).await.expect("upsert");
                    assert!(db.get("calls", &key).await.expect("get").is_some(), "just written");
                    i += 1;
                }
                calls.fetch_add(2 * i, Ordering::Relaxed);
            })
        })
        .collect();
    // Timed from the spawn: a starved task is late to start, not only to wake.
    let asked = Instant::now();
    let timer = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            tokio::time::sleep(TIMER).await;
            stop.store(true, Ordering::Relaxed);
            asked.elapsed()
        }
    });
    let slept = timer.await.expect("timer task");
    for l in loops {
        l.await.expect("looping task");
    }
    let calls = calls.load(Ordering::Relaxed);
    common::report(&format!(
        "a {TIMER:?} timer fired after {slept:.1?} beside {LOOPING_TASKS} looping tasks ({calls} calls)"
    ));
    assert!(calls > 0, "the loops ran");
    assert!(slept < TIMER + LATE_BOUND, "the timer fired {slept:?} after it was set, beside tasks looping on memdb");
}
