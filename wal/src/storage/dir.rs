//! The real storage: a locked directory of preallocated files written through a shared mmap.
//!
//! A write is a `memcpy` into the page cache, so it survives the process being killed the
//! moment it returns; `msync`/`fdatasync` put it on stable storage. Files are preallocated
//! with `posix_fallocate`, so a write into the map never needs new blocks (a full disk
//! surfaces as an error when a segment is created, never as `SIGBUS`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use memmap2::{MmapOptions, MmapRaw};

use super::access::Access;
use super::{SegmentFile, Storage};
use crate::format::{TEMP_SUFFIX, parse_segment_name};
use crate::identity::IDENTITY_FILE;
use crate::meta::META_FILE;

/// Name of the lock file that keeps a second process out of the directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// A directory on a real file system.
#[derive(Debug)]
pub struct DirStorage {
    path: PathBuf,
    dir: File,
    /// The modes its files are created with.
    access: Access,
    /// Held (with its `flock`) while the log is open.
    lock: Mutex<Option<File>>,
}

impl DirStorage {
    /// Opens (creating if needed) `path` and takes its exclusive lock, with the
    /// [`Access::Private`] modes.
    ///
    /// # Errors
    /// As [`DirStorage::open_with`].
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_with(path, Access::default())
    }

    /// Opens (creating it with `access`'s mode if needed) `path`, checks who may write
    /// it and its log files, and takes its exclusive lock.
    ///
    /// # Errors
    /// An I/O error; `PermissionDenied` carrying an
    /// [`UnsafePermissions`](super::UnsafePermissions) (see
    /// [`unsafe_permissions`](super::unsafe_permissions)) when the directory or a log
    /// file is owned by another user or writable by others; `WouldBlock` when another
    /// process holds the directory.
    pub fn open_with(path: impl AsRef<Path>, access: Access) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            access.create_dir(&path)?;
        }
        let mut warnings = Vec::new();
        warnings.extend(access.check(&path, &fs::metadata(&path)?)?);
        let lock_path = path.join(LOCK_FILE);
        // Checked before it is opened (an open follows a planted symbolic link).
        if let Ok(meta) = fs::symlink_metadata(&lock_path) {
            warnings.extend(access.check(&lock_path, &meta)?);
        }
        let lock = access.create_options().create(true).truncate(false).write(true).open(&lock_path)?;
        access.fix_mode(&lock)?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is in use by another process (its LOCK file is held)", path.display()),
            ),
            fs::TryLockError::Error(e) => e,
        })?;
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let of_the_log = parse_segment_name(&name).is_some()
                || name.ends_with(TEMP_SUFFIX)
                || name == META_FILE
                || name == IDENTITY_FILE
                || name == LOCK_FILE;
            if of_the_log {
                warnings.extend(access.check(&entry.path(), &fs::symlink_metadata(entry.path())?)?);
            }
        }
        if let Some(first) = warnings.first() {
            tracing::warn!(others = warnings.len() - 1, "{first}");
        }
        let dir = File::open(&path)?;
        Ok(Self { path, dir, access, lock: Mutex::new(Some(lock)) })
    }

    /// The directory's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Storage for DirStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create(&self, name: &str, len: u64) -> io::Result<Arc<dyn SegmentFile>> {
        let path = self.path.join(name);
        let file = self.access.create_options().read(true).write(true).create_new(true).open(&path)?;
        let reserved =
            self.access.fix_mode(&file).and_then(|()| reserve(&file, len)).and_then(|()| MappedFile::new(file));
        if reserved.is_err() {
            let _ = fs::remove_file(&path);
        }
        Ok(Arc::new(reserved?))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new().read(true).write(true).open(self.path.join(name))?;
        Ok(Arc::new(MappedFile::new(file)?))
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path.join(name))
    }

    fn read_prefix(&self, name: &str, len: u64) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::open(self.path.join(name))?.take(len).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path.join(from), self.path.join(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.dir.sync_all()
    }

    fn release(&self) {
        drop(self.lock.lock().unwrap_or_else(PoisonError::into_inner).take());
    }
}

/// Reserves `len` bytes of disk for `file` (zero-filled), so no later write needs space.
fn reserve(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a plain syscall on a file descriptor we own; it touches no memory of ours.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
}

/// A preallocated file and a shared, writable map of all of it.
struct MappedFile {
    file: File,
    map: MmapRaw,
}

impl MappedFile {
    fn new(file: File) -> io::Result<Self> {
        let map = MmapOptions::new().map_raw(&file)?;
        Ok(Self { file, map })
    }
}

impl SegmentFile for MappedFile {
    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    unsafe fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if start.checked_add(bytes.len()).is_none_or(|end| end > self.map.len()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "write past the end of a segment"));
        }
        // SAFETY: the range is inside the mapping (checked above), the mapping lives as
        // long as `self`, and the caller guarantees no overlapping write runs meanwhile
        // (this function's contract); reads go through `read`, never this mapping.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.as_mut_ptr().add(start), bytes.len()) };
        Ok(())
    }

    fn sync_range(&self, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        self.map.flush_range(offset, len)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn prefault(&self, offset: u64, len: u64) {
        const PAGE: usize = 4096;
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else { return };
        let start = offset / PAGE * PAGE;
        let end = offset.saturating_add(len).min(self.map.len());
        if start >= end {
            return;
        }
        // SAFETY: `start..end` lies inside the mapping, which lives as long as `self`;
        // MADV_POPULATE_WRITE faults the pages in (as a write would) without changing
        // their contents, so it is harmless to bytes being written concurrently. An
        // error (e.g. a kernel older than 5.14) only means appends fault as before.
        let _ =
            unsafe { libc::madvise(self.map.as_mut_ptr().add(start).cast(), end - start, libc::MADV_POPULATE_WRITE) };
    }
}
