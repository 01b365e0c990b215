//! A simulated disk: keeps what was written apart from what was synced, injects faults,
//! and produces the image a power cut would leave.
//!
//! The model (stated in FORMAT.md as the log's assumptions about real disks):
//! - a sync makes exactly the range it names durable; a directory sync makes every
//!   create, rename and remove before it durable;
//! - at a power cut, each 512-byte sector written since its last sync comes back either
//!   as written or as it was at that sync, independently of its neighbours (so writes can
//!   land out of order), and the directory comes back as at its last sync plus a prefix of
//!   the operations after it (metadata is journaled in order);
//! - a file's size is durable from creation (space is reserved up front).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{SegmentFile, Storage};
use crate::format::SECTOR;

/// Faults the simulated disk injects. Counters are 1-based and count calls since creation.
#[derive(Clone, Debug, Default)]
pub struct SimFaults {
    /// Fail this sync call (file range, whole file or directory) with `EIO`.
    pub fail_sync: Option<u64>,
    /// Fail this `write_at` call with `EIO`, writing nothing.
    pub fail_write: Option<u64>,
    /// Total bytes the disk holds; creating a file past it fails with `ENOSPC`.
    pub capacity: Option<u64>,
    /// Syncs report success but make nothing durable: a disk that lies (negative controls).
    pub ignore_syncs: bool,
}

/// A simulated directory on a simulated disk. Clones share the disk.
#[derive(Clone, Debug, Default)]
pub struct SimStorage {
    disk: Arc<Mutex<Disk>>,
}

#[derive(Debug, Default)]
struct Disk {
    files: HashMap<u64, FileData>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    pending: Vec<DirOp>,
    next_id: u64,
    faults: SimFaults,
    syncs: u64,
    writes: u64,
}

#[derive(Clone, Debug, Default)]
struct FileData {
    written: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Clone, Debug)]
enum DirOp {
    Link(String, u64),
    Unlink(String),
}

impl SimStorage {
    /// An empty disk that injects `faults`.
    #[must_use]
    pub fn new(faults: SimFaults) -> Self {
        let sim = Self::default();
        sim.lock().faults = faults;
        sim
    }

    /// Replaces the faults to inject from now on (counters keep running).
    pub fn set_faults(&self, faults: SimFaults) {
        self.lock().faults = faults;
    }

    /// Sync calls so far.
    #[must_use]
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }

    /// The disk as a killed process leaves it: every write kept (the page cache survives).
    #[must_use]
    pub fn process_crash_image(&self) -> Self {
        let disk = self.lock();
        let mut image = Disk { next_id: disk.next_id, ..Disk::default() };
        for (name, id) in &disk.names {
            if let Some(file) = disk.files.get(id) {
                let data = FileData { written: file.written.clone(), synced: file.written.clone() };
                image.files.insert(*id, data);
                image.names.insert(name.clone(), *id);
            }
        }
        image.durable_names = image.names.clone();
        Self { disk: Arc::new(Mutex::new(image)) }
    }

    /// The disk as a power cut leaves it, drawn at random from `seed` (see the module docs).
    #[must_use]
    pub fn power_cut_image(&self, seed: u64) -> Self {
        let disk = self.lock();
        let mut rng = SplitMix(seed);
        let mut names = disk.durable_names.clone();
        let applied = rng.below(disk.pending.len() as u64 + 1) as usize;
        for op in disk.pending.iter().take(applied) {
            match op {
                DirOp::Link(name, id) => names.insert(name.clone(), *id),
                DirOp::Unlink(name) => names.remove(name),
            };
        }
        let mut image = Disk { next_id: disk.next_id, ..Disk::default() };
        for (name, id) in &names {
            let Some(file) = disk.files.get(id) else { continue };
            let mut data = file.synced.clone();
            for (new, old) in file.written.chunks(SECTOR).zip(data.chunks_mut(SECTOR)) {
                if new != old && rng.below(2) == 0 {
                    old.copy_from_slice(new);
                }
            }
            image.files.insert(*id, FileData { written: data.clone(), synced: data });
            image.names.insert(name.clone(), *id);
        }
        image.durable_names = image.names.clone();
        Self { disk: Arc::new(Mutex::new(image)) }
    }

    /// Overwrites bytes of a named file as if the medium changed them (tests of corruption).
    ///
    /// # Errors
    /// `NotFound` if there is no such file or the range is outside it.
    pub fn corrupt(&self, name: &str, offset: usize, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.lock();
        let id = *disk.names.get(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let file = disk.files.get_mut(&id).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        for data in [&mut file.written, &mut file.synced] {
            data.get_mut(offset..offset + bytes.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?
                .copy_from_slice(bytes);
        }
        Ok(())
    }

    /// Puts a file holding `bytes` on the disk, its name and content already durable, as
    /// if an earlier run had left it there (tests that start from a directory image).
    ///
    /// # Errors
    /// `AlreadyExists` if a file of that name exists.
    pub fn insert_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.lock();
        if disk.names.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let id = disk.next_id;
        disk.next_id += 1;
        disk.files.insert(id, FileData { written: bytes.to_vec(), synced: bytes.to_vec() });
        disk.names.insert(name.to_owned(), id);
        disk.durable_names.insert(name.to_owned(), id);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Disk {
    fn sync_fault(&mut self) -> io::Result<bool> {
        self.syncs += 1;
        if self.faults.fail_sync == Some(self.syncs) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(!self.faults.ignore_syncs)
    }

    fn link(&mut self, name: &str, id: u64) {
        self.names.insert(name.to_owned(), id);
        self.pending.push(DirOp::Link(name.to_owned(), id));
    }

    fn unlink(&mut self, name: &str) -> io::Result<u64> {
        let id = self.names.remove(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        self.pending.push(DirOp::Unlink(name.to_owned()));
        Ok(id)
    }

    fn file(&mut self, id: u64) -> io::Result<&mut FileData> {
        self.files.get_mut(&id).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

impl Storage for SimStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.lock().names.keys().cloned().collect())
    }

    fn create(&self, name: &str, len: u64) -> io::Result<Arc<dyn SegmentFile>> {
        let mut disk = self.lock();
        if disk.names.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        // Space is held by named files (an unlinked file's space is freed).
        let used: u64 = disk.names.values().filter_map(|id| disk.files.get(id)).map(|f| f.written.len() as u64).sum();
        if disk.faults.capacity.is_some_and(|cap| used + len > cap) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let size = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let id = disk.next_id;
        disk.next_id += 1;
        disk.files.insert(id, FileData { written: vec![0; size], synced: vec![0; size] });
        disk.link(name, id);
        Ok(Arc::new(SimFile { disk: self.clone(), id, len }))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let mut disk = self.lock();
        let id = *disk.names.get(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let len = disk.file(id)?.written.len() as u64;
        Ok(Arc::new(SimFile { disk: self.clone(), id, len }))
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut disk = self.lock();
        let id = *disk.names.get(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(disk.file(id)?.written.clone())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut disk = self.lock();
        let id = disk.unlink(from)?;
        // One journaled operation: the old `to` goes away as the new one appears.
        disk.link(to, id);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.lock().unlink(name).map(drop)
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut disk = self.lock();
        if disk.sync_fault()? {
            disk.durable_names = disk.names.clone();
            disk.pending.clear();
        }
        Ok(())
    }
}

/// An open file on the simulated disk.
struct SimFile {
    disk: SimStorage,
    id: u64,
    len: u64,
}

impl SimFile {
    fn sync(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut disk = self.disk.lock();
        if !disk.sync_fault()? {
            return Ok(());
        }
        let file = disk.file(self.id)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(file.written.len());
        let end = usize::try_from(offset.saturating_add(len)).unwrap_or(usize::MAX).min(file.written.len());
        let (Some(src), Some(dst)) = (file.written.get(start..end), file.synced.get_mut(start..end)) else {
            return Ok(());
        };
        dst.copy_from_slice(src);
        Ok(())
    }
}

impl SegmentFile for SimFile {
    fn len(&self) -> u64 {
        self.len
    }

    unsafe fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.writes += 1;
        if disk.faults.fail_write == Some(disk.writes) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let file = disk.file(self.id)?;
        let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        file.written
            .get_mut(start..start.saturating_add(bytes.len()))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "write past the end of a segment"))?
            .copy_from_slice(bytes);
        Ok(())
    }

    fn sync_range(&self, offset: u64, len: u64) -> io::Result<()> {
        self.sync(offset, len)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync(0, self.len)
    }
}

/// A small deterministic generator, so a seed replays the same power cut.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}
