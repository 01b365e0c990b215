//! This process's CPU time over all its threads, and the time its threads spent runnable
//! but waiting for a CPU — on a shared machine, how much of a wall-clock number is the
//! neighbours' load rather than the system measured.

use std::time::Duration;

#[derive(Clone, Copy, Default)]
pub struct Cpu {
    pub on: Duration,
    pub waiting: Duration,
}

impl Cpu {
    pub fn now() -> Self {
        // SAFETY: `rusage` is plain integers, for which all zeroes is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes into the struct we own.
        let on = if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1_000);
            tv(usage.ru_utime) + tv(usage.ru_stime)
        } else {
            Duration::ZERO
        };
        // The second field of each thread's schedstat: nanoseconds spent on a run queue.
        let waiting = std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
                    .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        Self { on, waiting: Duration::from_nanos(waiting) }
    }

    pub fn since(self, earlier: Self) -> Self {
        Self { on: self.on.saturating_sub(earlier.on), waiting: self.waiting.saturating_sub(earlier.waiting) }
    }

    /// Share of runnable time spent waiting for a CPU, in percent.
    pub fn waiting_pct(self) -> f64 {
        100.0 * self.waiting.as_secs_f64() / (self.on + self.waiting).as_secs_f64().max(f64::MIN_POSITIVE)
    }
}
