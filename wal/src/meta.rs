//! The meta file: a small checksummed blob beside the segments, replaced atomically.
//! The log keeps it for its user (memdb keeps its table catalogue there), so state that
//! must outlive every truncation lives in the same directory, lock and storage as the
//! records it describes. See FORMAT.md, "Meta file".

use crate::error::Error;
use crate::format::TEMP_SUFFIX;
use crate::storage::Storage;

/// The meta file's name in the WAL directory.
pub const META_FILE: &str = "meta";
/// The first 8 bytes of a meta file.
const MAGIC: &[u8; 8] = b"MEMDBMT1";
/// Magic, payload length (u32 LE), CRC-32 (crc32fast) of the payload (u32 LE).
const HEADER: usize = 16;
/// The largest payload a meta file holds.
pub const MAX_META: usize = 16 << 20;

/// Encodes `payload` as a meta file's bytes.
fn encode(payload: &[u8]) -> Result<Vec<u8>, Error> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_META)
        .ok_or(Error::RecordTooLarge { size: payload.len(), max: MAX_META })?;
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    Ok(bytes)
}

/// The payload of a meta file's bytes, or why they are not one. Never panics.
pub fn decode(bytes: &[u8]) -> Result<&[u8], &'static str> {
    let (header, rest) = bytes.split_at_checked(HEADER).ok_or("shorter than its header")?;
    let (magic, numbers) = header.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err("not a memdb meta file (bad magic)");
    }
    let (len, crc) = numbers.split_at(4);
    let len = u32::from_le_bytes(len.try_into().map_err(|_| "bad length")?) as usize;
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| "bad checksum field")?);
    let payload = rest.get(..len).ok_or("shorter than its length says")?;
    if rest.len() != len {
        return Err("longer than its length says");
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

/// Replaces the meta file with `payload`, crash-safely: a temporary file is written and
/// synced, renamed over the old one, and the directory synced. A crash leaves the old
/// file or the new one, never a mix (a leftover temporary file is removed on opening).
pub(crate) fn write(storage: &dyn Storage, payload: &[u8]) -> Result<(), Error> {
    replace_file(storage, META_FILE, &encode(payload)?)
}

/// Replaces file `name` with `bytes` atomically: written and synced under a temporary
/// name, renamed into place, the directory synced. A power cut leaves the old file or
/// the new one, never part of either.
pub(crate) fn replace_file(storage: &dyn Storage, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let temp = format!("{name}{TEMP_SUFFIX}");
    // A temporary file left by a write that failed half-way in this run.
    let _ = storage.remove(&temp);
    let file = storage.create(&temp, bytes.len() as u64).map_err(|e| Error::io("creating", &temp, e))?;
    // SAFETY: the file was just created here, and replacements of one file run one at
    // a time (meta writes under the log's truncation lock, see `Wal::write_meta`; the
    // identity in recovery, before the log exists for anyone else).
    unsafe { file.write_at(0, bytes) }.map_err(|e| Error::io("writing", &temp, e))?;
    file.sync_all().map_err(|e| Error::io("syncing", &temp, e))?;
    drop(file);
    storage.rename(&temp, name).map_err(|e| Error::io("renaming", &temp, e))?;
    storage.sync_dir().map_err(|e| Error::io("syncing", "the WAL directory", e))
}

pub(crate) fn read(storage: &dyn Storage) -> Result<Option<Vec<u8>>, Error> {
    let bytes = match storage.read(META_FILE) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", META_FILE, e)),
    };
    decode(&bytes).map(|p| Some(p.to_vec())).map_err(|problem| Error::BadMeta { problem })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "sim")]
    use crate::storage::{SimFaults, SimStorage};

    #[cfg(feature = "sim")]
    #[test]
    fn a_meta_file_round_trips_and_is_replaced_whole() {
        let disk = SimStorage::new(SimFaults::default());
        assert_eq!(read(&disk).unwrap(), None);
        write(&disk, b"first").unwrap();
        write(&disk, b"second, longer").unwrap();
        assert_eq!(read(&disk).unwrap().as_deref(), Some(&b"second, longer"[..]));
        assert!(!disk.list().unwrap().iter().any(|n| n.ends_with(TEMP_SUFFIX)), "no temporary file left");
    }

    #[cfg(feature = "sim")]
    #[test]
    fn a_power_cut_after_a_write_keeps_the_new_meta_file() {
        let disk = SimStorage::new(SimFaults::default());
        write(&disk, b"old").unwrap();
        write(&disk, b"new").unwrap();
        for seed in 0..32 {
            let after = disk.power_cut_image(seed);
            assert_eq!(read(&after).unwrap().as_deref(), Some(&b"new"[..]), "synced before it returned (seed {seed})");
        }
    }

    #[test]
    fn damaged_meta_files_are_refused_never_misread() {
        let good = encode(b"{\"tables\":[]}").unwrap();
        assert_eq!(decode(&good), Ok(&b"{\"tables\":[]}"[..]));
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "byte {i} flipped");
        }
        let mut long = good;
        long.push(0);
        assert!(decode(&long).is_err());
    }
}
