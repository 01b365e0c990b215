//! The telephony workload, run against any [`System`]: tasks each keep some live calls
//! and step them round-robin — create, read, update status and turns, read again, and
//! finally delete half of them (the other half are left to expire) — timing every call.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::record::{Call, STATUSES, key};
use crate::cpu::Cpu;
use crate::hist::Hist;
use crate::systems::System;

/// Reads after the create and after each update.
const READS_PER_WRITE: usize = 3;
/// Updates in a call's life.
const UPDATES: usize = 4;
/// Unpaced tasks yield to the runtime after this many calls, so tasks whose system never
/// waits (the maps) still interleave instead of running one after another.
const YIELD_EVERY: usize = 16;

/// What the tasks do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mix {
    /// Every call creates a new record (insert throughput).
    Insert,
    /// Calls' whole lives: create, 15 reads, 4 updates, delete for half of them.
    Telephony,
}

/// The kinds of operation timed, in report order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Create,
    Get,
    Update,
    Delete,
}

impl Op {
    pub const ALL: [Self; 4] = [Self::Create, Self::Get, Self::Update, Self::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "insert",
            Self::Get => "get",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    /// Operation `step` of call `serial`'s life under `mix`; `None` once the call is over.
    fn at(mix: Mix, serial: u64, step: usize) -> Option<Self> {
        let per_update = 1 + READS_PER_WRITE;
        let lived = 1 + READS_PER_WRITE + UPDATES * per_update;
        match (mix, step) {
            (_, 0) => Some(Self::Create),
            (Mix::Insert, _) => None,
            (Mix::Telephony, s) if s <= READS_PER_WRITE => Some(Self::Get),
            (Mix::Telephony, s) if s < lived => {
                Some(if (s - 1 - READS_PER_WRITE).is_multiple_of(per_update) { Self::Update } else { Self::Get })
            }
            (Mix::Telephony, s) if s == lived && serial.is_multiple_of(2) => Some(Self::Delete),
            _ => None,
        }
    }
}

/// When the tasks stop.
#[derive(Clone)]
pub enum Until {
    Elapsed(Duration),
    Flag(Arc<AtomicBool>),
}

/// How a workload runs.
#[derive(Clone)]
pub struct Plan {
    pub mix: Mix,
    /// Concurrent tasks ("writers"); task `t` uses the system's lane `t`.
    pub tasks: usize,
    /// Live calls each task keeps.
    pub calls_per_task: usize,
    pub until: Until,
    /// Calls each task offers every millisecond; `None`: as fast as it can.
    pub pace: Option<usize>,
    /// Distinguishes the keys of runs that share a table.
    pub run_id: u64,
}

/// What a run measured.
#[derive(Default)]
pub struct Outcome {
    pub elapsed: Duration,
    /// Latencies by [`Op`], in `Op::ALL` order.
    pub hists: [Hist; 4],
    /// Gets of a live call that found nothing (must stay 0).
    pub misses: u64,
    /// This process's CPU over the run (the workload driver included).
    pub cpu: Cpu,
}

impl Outcome {
    pub fn ops(&self) -> u64 {
        self.hists.iter().map(Hist::count).sum()
    }

    /// Records written (creates and updates).
    pub fn writes(&self) -> u64 {
        self.hists[0].count() + self.hists[2].count()
    }

    pub fn rate(&self) -> f64 {
        self.ops() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// A live call in a task's slot.
struct Slot {
    serial: u64,
    step: usize,
    key: String,
    call: Call,
}

/// Runs `plan` against `system` on the current runtime; returns when every task stopped.
pub async fn run<S: System>(system: Arc<S>, plan: &Plan) -> Outcome {
    let cpu = Cpu::now();
    let start = Instant::now();
    let handles: Vec<_> =
        (0..plan.tasks).map(|lane| tokio::spawn(task(Arc::clone(&system), lane, plan.clone(), start))).collect();
    let mut outcome = Outcome::default();
    for handle in handles {
        let (hists, misses) = handle.await.expect("a workload task");
        for (total, h) in outcome.hists.iter_mut().zip(&hists) {
            total.merge(h);
        }
        outcome.misses += misses;
    }
    outcome.elapsed = start.elapsed();
    outcome.cpu = Cpu::now().since(cpu);
    outcome
}

async fn task<S: System>(system: Arc<S>, lane: usize, plan: Plan, start: Instant) -> ([Hist; 4], u64) {
    let mut hists: [Hist; 4] = Default::default();
    let mut misses = 0;
    // Keys are unique per (run, lane, serial): `call:RRLLSSSSSS` stays 10 digits.
    let base = (plan.run_id % 100) * 100_000_000 + (lane as u64 % 100) * 1_000_000;
    let mut next_serial = 0u64;
    let new_call = |serial: &mut u64| {
        let s = *serial;
        *serial += 1;
        Slot { serial: s, step: 0, key: key(base + s % 1_000_000), call: Call::new(base + s) }
    };
    let mut slots: Vec<Slot> = (0..plan.calls_per_task.max(1)).map(|_| new_call(&mut next_serial)).collect();
    // A finished call's slot takes the next call in place: no allocation, so the driver
    // costs next to nothing beside the system under test.
    let renew = |slot: &mut Slot, serial: &mut u64| {
        slot.serial = *serial;
        slot.step = 0;
        slot.key.clear();
        let _ = write!(slot.key, "call:{:010}", base + *serial % 1_000_000);
        slot.call.vary(base + *serial);
        slot.call.status = STATUSES[0];
        *serial += 1;
    };
    let mut tick = plan.pace.map(|_| {
        let mut t = tokio::time::interval(Duration::from_millis(1));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let burst = plan.pace.unwrap_or(YIELD_EVERY);
    let mut i = 0usize;
    loop {
        let done = match &plan.until {
            Until::Elapsed(d) => start.elapsed() >= *d,
            Until::Flag(stop) => stop.load(Ordering::Relaxed),
        };
        if done {
            break;
        }
        match &mut tick {
            Some(t) => {
                t.tick().await;
            }
            None => tokio::task::yield_now().await,
        }
        for _ in 0..burst {
            i += 1;
            let slot = i % slots.len();
            let s = &mut slots[slot];
            let Some(op) = Op::at(plan.mix, s.serial, s.step) else {
                renew(s, &mut next_serial);
                continue;
            };
            if op == Op::Update {
                s.call.advance(s.step);
            }
            let began = Instant::now();
            match op {
                Op::Create | Op::Update => system.put(lane, &s.key, &s.call, op == Op::Create).await,
                Op::Get => {
                    if !system.get(lane, &s.key).await {
                        misses += 1;
                    }
                }
                Op::Delete => system.delete(lane, &s.key).await,
            }
            let nanos = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
            hists[op as usize].record(nanos);
            s.step += 1;
        }
    }
    (hists, misses)
}
