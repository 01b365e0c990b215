//! The seam between the log and the disk: a directory of segment files.
//!
//! [`DirStorage`] is the real thing (preallocated files written through a shared mmap);
//! the `sim` feature adds [`SimStorage`], a simulated disk for fault injection and power
//! cuts. Everything the log does to files goes through these two traits.

mod access;
mod dir;
#[cfg(feature = "sim")]
mod sim;

pub use access::{Access, UnsafePermissions, unsafe_permissions};
pub use dir::DirStorage;
pub(crate) use dir::LOCK_FILE;
#[cfg(feature = "sim")]
pub use sim::{SimFaults, SimStorage};

use std::io;
use std::sync::Arc;

/// A directory holding the log's segment files.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The names of the files in the directory, in no particular order.
    ///
    /// # Errors
    /// Any I/O error listing the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates a new file of `len` zero bytes with its space reserved, so that writes
    /// within it never fail for want of space. Fails if the name exists.
    ///
    /// # Errors
    /// Any I/O error, `ENOSPC` among them.
    fn create(&self, name: &str, len: u64) -> io::Result<Arc<dyn SegmentFile>>;
    /// Opens an existing file for writing.
    ///
    /// # Errors
    /// Any I/O error.
    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>>;
    /// The whole content of a file.
    ///
    /// # Errors
    /// Any I/O error.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// The first `len` bytes of a file (fewer if it is shorter).
    ///
    /// # Errors
    /// Any I/O error.
    fn read_prefix(&self, name: &str, len: u64) -> io::Result<Vec<u8>> {
        let mut bytes = self.read(name)?;
        bytes.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(bytes)
    }
    /// Renames a file, atomically replacing `to` if it exists (as POSIX `rename`);
    /// durable only after [`Storage::sync_dir`].
    ///
    /// # Errors
    /// Any I/O error.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file; durable only after [`Storage::sync_dir`].
    ///
    /// # Errors
    /// Any I/O error.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Gives up the directory (its lock) for good: the log is closed.
    fn release(&self) {}
    /// Makes every create, rename and remove so far durable.
    ///
    /// # Errors
    /// Any I/O error.
    fn sync_dir(&self) -> io::Result<()>;
}

/// One preallocated segment file. Writes go to disjoint ranges; syncs may run
/// concurrently with writes to other ranges.
pub trait SegmentFile: Send + Sync {
    /// The file's size in bytes (fixed at creation).
    fn len(&self) -> u64;
    /// Whether the file has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes `bytes` at `offset`; once this returns they survive the process being
    /// killed (they are in the kernel), but not a power cut until synced.
    ///
    /// # Safety
    /// No other write to an overlapping range of the same file — through this handle or
    /// any other on it — may run at the same time: a file may be written through a
    /// shared memory mapping, where two such writes are a data race. The log keeps this
    /// by construction (one writer, under its mutex; a new file is written by the one
    /// thread that created it; the meta file under the truncation lock).
    ///
    /// # Errors
    /// Any I/O error, or a range outside the file.
    unsafe fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Puts bytes `offset..offset + len` on stable storage.
    ///
    /// # Errors
    /// Any I/O error; after one, the state of the range on disk is unknown.
    fn sync_range(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Puts the whole file, data and size, on stable storage.
    ///
    /// # Errors
    /// Any I/O error; after one, the state of the file on disk is unknown.
    fn sync_all(&self) -> io::Result<()>;
    /// Asks for bytes `offset..offset + len` to be made ready for writing (mapped, and
    /// their pages allocated) without changing them, so later writes there do not stall
    /// on page faults. A hint: it may do nothing, and it never fails.
    fn prefault(&self, _offset: u64, _len: u64) {}
}
