//! A statistics counter that a hot path bumps without a locked instruction.
//!
//! Each thread claims a cell of its own (one per cache line, the same index in every
//! counter) and adds to it with a plain load and store: exact, because only its owner
//! writes a cell, and free of the cache-line bouncing a shared atomic would cost.
//! Threads beyond [`CELLS`] share one more cell through `fetch_add`.
//!
//! Invariant: a cell has at most one owner at a time. A thread's claim is handed back
//! when the thread exits, under the same mutex the next owner claims it with, so the
//! next owner's first load sees the last owner's last store.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Cells owned by one thread each.
const CELLS: usize = 32;
/// The index of the shared cell, for threads that found no free one.
const SHARED: usize = CELLS;
const UNCLAIMED: usize = usize::MAX;

#[repr(align(64))]
#[derive(Default)]
struct Cell64(AtomicU64);

/// A counter: read by summing its cells.
pub(crate) struct Counter([Cell64; CELLS + 1]);

impl Default for Counter {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Cell64::default()))
    }
}

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        let i = claim();
        let Some(cell) = self.0.get(i) else { return };
        if i == SHARED {
            cell.0.fetch_add(n, Ordering::Relaxed);
        } else {
            // Only this thread writes this cell (see the module's invariant).
            cell.0.store(cell.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().fold(0, |sum, c| sum.wrapping_add(c.0.load(Ordering::Relaxed)))
    }
}

/// Cells given back by threads that exited; the next never-claimed cell.
static FREE: Mutex<(Vec<usize>, usize)> = Mutex::new((Vec::new(), 0));

/// Gives the thread's cell back when the thread exits.
struct Claim(usize);

impl Drop for Claim {
    fn drop(&mut self) {
        // Counting from a later destructor of this thread goes to the shared cell.
        let _ = INDEX.try_with(|i| i.set(SHARED));
        FREE.lock().unwrap_or_else(PoisonError::into_inner).0.push(self.0);
    }
}

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(UNCLAIMED) };
    static CLAIM: Cell<Option<Claim>> = const { Cell::new(None) };
}

/// This thread's cell index (claiming one on first use).
#[inline]
fn claim() -> usize {
    let i = INDEX.get();
    if i != UNCLAIMED {
        return i;
    }
    let i = {
        let mut free = FREE.lock().unwrap_or_else(PoisonError::into_inner);
        match free.0.pop() {
            Some(i) => i,
            None if free.1 < CELLS => {
                free.1 += 1;
                free.1 - 1
            }
            None => SHARED,
        }
    };
    if i != SHARED && CLAIM.try_with(|c| c.set(Some(Claim(i)))).is_err() {
        // The thread is exiting and cannot hand the cell back: don't take it.
        FREE.lock().unwrap_or_else(PoisonError::into_inner).0.push(i);
        INDEX.set(SHARED);
        return SHARED;
    }
    INDEX.set(i);
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_including_exited_ones_all_add_up() {
        let counter = Counter::default();
        // More threads than cells, in waves, so cells are handed back and reused and
        // some threads share the fallback cell.
        for wave in 0..4 {
            std::thread::scope(|s| {
                for t in 0..(CELLS + 8) {
                    let counter = &counter;
                    s.spawn(move || {
                        for _ in 0..1000 + t + wave {
                            counter.incr();
                        }
                    });
                }
            });
        }
        let expected: usize = (0..4).map(|w| (0..CELLS + 8).map(|t| 1000 + t + w).sum::<usize>()).sum();
        assert_eq!(counter.get(), expected as u64);
    }
}
