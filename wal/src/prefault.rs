//! Pre-faulting: a helper thread makes the active segment's pages ready ahead of the
//! appender, so an append copies into memory that is already mapped instead of taking a
//! page fault (and the kernel's zero-fill) every 4 KiB on the append path.
//!
//! The appender calls [`Prefaulter::ahead`] when its offset crosses a [`CHUNK`]
//! boundary (and after rotation); the thread then populates up to [`AHEAD`] bytes past
//! that offset. It holds a segment only while populating it, so a truncated segment's
//! space is never kept alive by this thread.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::storage::SegmentFile;

/// The appender signals once per this many bytes written.
pub(crate) const CHUNK: u64 = 1 << 20;
/// How far past the write offset the thread keeps pages ready.
const AHEAD: u64 = 8 << 20;

/// The helper thread and its mailbox; dropping it stops and joins the thread.
pub(crate) struct Prefaulter {
    mailbox: Arc<Mailbox>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Mailbox {
    request: Mutex<Request>,
    wake: Condvar,
}

#[derive(Default)]
struct Request {
    /// The segment to populate and up to where; taken by the thread.
    target: Option<(Arc<dyn SegmentFile>, u64)>,
    stop: bool,
}

impl Prefaulter {
    /// Starts the thread. Without a thread (it could not be spawned) appends still
    /// work, they just fault their pages in themselves.
    pub(crate) fn spawn() -> Self {
        let mailbox = Arc::new(Mailbox::default());
        let theirs = Arc::clone(&mailbox);
        let thread = std::thread::Builder::new()
            .name("memdb-wal-prefault".into())
            .spawn(move || run(&theirs))
            .inspect_err(|e| tracing::warn!(error = %e, "WAL prefault thread not started"))
            .ok();
        Self { mailbox, thread }
    }

    /// Asks for `file` to be ready for writing from `offset` to `AHEAD` bytes past it.
    pub(crate) fn ahead(&self, file: &Arc<dyn SegmentFile>, offset: u64) {
        let mut request = self.mailbox.request.lock().unwrap_or_else(PoisonError::into_inner);
        request.target = Some((Arc::clone(file), offset.saturating_add(AHEAD).min(file.len())));
        self.mailbox.wake.notify_one();
    }
}

impl Drop for Prefaulter {
    fn drop(&mut self) {
        self.mailbox.request.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        self.mailbox.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: waits for a target, populates what is not yet populated, in chunks.
fn run(mailbox: &Mailbox) {
    // The segment populated last (by address, never dereferenced) and how far.
    let mut done: (usize, u64) = (0, 0);
    loop {
        let (file, upto) = {
            let mut request = mailbox.request.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if request.stop {
                    return;
                }
                if let Some(target) = request.target.take() {
                    break target;
                }
                request = mailbox.wake.wait(request).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let id = Arc::as_ptr(&file).cast::<()>() as usize;
        let mut from = if done.0 == id { done.1 } else { 0 };
        while from < upto {
            let len = CHUNK.min(upto - from);
            file.prefault(from, len);
            from += len;
        }
        done = (id, from);
    }
}
