//! A counting global allocator: live heap bytes while counting is on, for memory per record.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// The system allocator, counting what is allocated and freed while [`COUNTING`] is on.
pub struct CountingAlloc;

pub static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes requested minus bytes freed while counting.
pub static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
/// The same in `malloc_usable_size` terms (what malloc really set aside, headers excluded).
pub static LIVE_USABLE: AtomicI64 = AtomicI64::new(0);
/// Allocations (and reallocations) while counting.
pub static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// # Safety
/// `ptr` must be a live block from the system allocator.
pub unsafe fn usable(ptr: *mut u8) -> i64 {
    // SAFETY: the caller passes a live block from malloc/posix_memalign.
    let n = unsafe { libc::malloc_usable_size(ptr.cast()) };
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn signed(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Counts a block the system allocator just returned for `layout` (null: nothing).
fn counted(ptr: *mut u8, layout: Layout) -> *mut u8 {
    if !ptr.is_null() && COUNTING.load(Ordering::Relaxed) {
        LIVE_BYTES.fetch_add(signed(layout.size()), Ordering::Relaxed);
        // SAFETY: `ptr` was just allocated by the system allocator and is live.
        LIVE_USABLE.fetch_add(unsafe { usable(ptr) }, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
    ptr
}

// SAFETY: every call is forwarded to `System` with the caller's arguments; the counting
// only reads the blocks' sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        counted(unsafe { System.alloc(layout) }, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        counted(unsafe { System.alloc_zeroed(layout) }, layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(signed(layout.size()), Ordering::Relaxed);
            // SAFETY: `ptr` is live until the call below.
            LIVE_USABLE.fetch_sub(unsafe { usable(ptr) }, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let counting = COUNTING.load(Ordering::Relaxed);
        // SAFETY: `ptr` is live until the realloc below.
        let before = if counting { unsafe { usable(ptr) } } else { 0 };
        // SAFETY: forwarded with the caller's guarantees.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if counting && !new.is_null() {
            LIVE_BYTES.fetch_add(signed(new_size) - signed(layout.size()), Ordering::Relaxed);
            // SAFETY: `new` was just allocated.
            LIVE_USABLE.fetch_add(unsafe { usable(new) } - before, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
pub static GLOBAL: CountingAlloc = CountingAlloc;

/// The counters at one moment (meaningful as differences while counting).
#[derive(Clone, Copy)]
pub struct Heap {
    pub bytes: i64,
    pub usable: i64,
    pub allocs: u64,
    pub rss_anon: i64,
}

impl Heap {
    pub fn now() -> Self {
        Self {
            bytes: LIVE_BYTES.load(Ordering::SeqCst),
            usable: LIVE_USABLE.load(Ordering::SeqCst),
            allocs: ALLOCS.load(Ordering::SeqCst),
            rss_anon: rss_anon(),
        }
    }

    /// Per-record growth since `start`: (requested, usable, RssAnon) bytes, allocations.
    pub fn per_record(&self, start: &Self, records: u64) -> (f64, f64, f64, f64) {
        let n = records.max(1) as f64;
        (
            (self.bytes - start.bytes) as f64 / n,
            (self.usable - start.usable) as f64 / n,
            (self.rss_anon - start.rss_anon) as f64 / n,
            (self.allocs - start.allocs) as f64 / n,
        )
    }
}

/// Anonymous resident memory of the process, in bytes (0 where unknown).
pub fn rss_anon() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}
