//! The WAL directory's identity: a random number kept in the file `IDENTITY` and
//! written into every segment's header. ⚑ A segment whose header carries another
//! directory's identity was copied in from elsewhere: its records are not this log's,
//! and recovery refuses the log rather than replay them (a restart segment copied in
//! would otherwise pass every chain check). See FORMAT.md, "Directory identity".

use crate::error::Error;
use crate::meta::replace_file;
use crate::storage::Storage;

/// The identity file's name in the WAL directory.
pub const IDENTITY_FILE: &str = "IDENTITY";

/// The identity the directory's `IDENTITY` file holds, if it has a sound one. A damaged
/// file (a disk that lied about a sync, cut by a power failure) counts as lost: the
/// identity is taken back from the segments, as for a directory that never had one.
pub(crate) fn read(storage: &dyn Storage) -> Result<Option<u32>, Error> {
    let bytes = match storage.read(IDENTITY_FILE) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", IDENTITY_FILE, e)),
    };
    let text = std::str::from_utf8(&bytes).ok().map(str::trim);
    match text.and_then(|t| u32::from_str_radix(t, 16).ok()) {
        Some(id) if id != 0 && text.is_some_and(|t| t.len() == 8) => Ok(Some(id)),
        _ => {
            tracing::warn!("the WAL's IDENTITY file is damaged: taking the identity back from the segments");
            Ok(None)
        }
    }
}

/// Writes the directory's identity (recovery does, the first time; tools and tests that
/// need a known identity may, before the log is opened).
///
/// # Errors
/// An I/O error writing the file.
pub fn write(storage: &dyn Storage, id: u32) -> Result<(), Error> {
    replace_file(storage, IDENTITY_FILE, format!("{id:08x}\n").as_bytes())
}

/// A new identity: random, never zero (zero marks segments from before identities).
pub(crate) fn new_id() -> u32 {
    use std::hash::{BuildHasher as _, RandomState};
    let random = RandomState::new().hash_one((std::time::SystemTime::now(), std::process::id()));
    u32::try_from(random & 0xffff_ffff).unwrap_or(1).max(1)
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::storage::SimStorage;

    #[test]
    fn an_identity_round_trips_and_a_damaged_one_counts_as_lost() {
        let disk = SimStorage::default();
        assert_eq!(read(&disk).expect("none yet"), None);
        let id = new_id();
        assert_ne!(id, 0);
        write(&disk, id).expect("write");
        assert_eq!(read(&disk).expect("read"), Some(id));
        for bad in ["", "00000000\n", "xyz\n", "123\n"] {
            replace_file(&disk, IDENTITY_FILE, bad.as_bytes()).expect("write");
            assert_eq!(read(&disk).expect("read"), None, "{bad:?}");
        }
    }
}
