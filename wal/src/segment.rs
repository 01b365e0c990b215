//! Segment files: creating one crash-safely, and what the log knows of each.

use std::sync::Arc;

use crate::error::Error;
use crate::format::{TEMP_SUFFIX, encode_header, segment_name};
use crate::record::Lsn;
use crate::storage::{SegmentFile, Storage};

/// A segment the log no longer writes to: complete and synced.
#[derive(Clone, Debug)]
pub(crate) struct Sealed {
    pub name: String,
    pub first_lsn: Lsn,
    /// LSN of its last record; `first_lsn - 1` when it holds none.
    pub last_lsn: Lsn,
    /// Bytes of valid data, header included.
    pub used: u64,
}

/// Creates the segment whose first LSN is `first_lsn`, crash-safely: the file is built
/// under a temporary name (reserved, header written, synced), then renamed into place and
/// the directory synced. A crash at any point leaves either no segment or a whole one;
/// leftover temporary files are removed on open. An existing segment of the same name
/// (one without records, too small for the next record) is replaced atomically.
pub(crate) fn create(
    storage: &dyn Storage,
    first_lsn: Lsn,
    size: u64,
    dir_id: u32,
) -> Result<Arc<dyn SegmentFile>, Error> {
    let name = segment_name(first_lsn);
    let temp = format!("{name}{TEMP_SUFFIX}");
    let file = storage.create(&temp, size).map_err(|e| Error::io("creating", &temp, e))?;
    // SAFETY: the file was just created by this thread, and nothing else has it yet.
    let prepared = unsafe { file.write_at(0, &encode_header(first_lsn, dir_id)) }
        .and_then(|()| file.sync_all())
        .and_then(|()| storage.rename(&temp, &name));
    if let Err(e) = prepared {
        let _ = storage.remove(&temp);
        return Err(Error::io("preparing", &temp, e));
    }
    crate::kill_point::hit(crate::kill_point::SEGMENT_CREATED);
    storage.sync_dir().map_err(|e| Error::io("syncing the directory after creating", &name, e))?;
    crate::kill_point::hit(crate::kill_point::AFTER_DIR_SYNC);
    tracing::debug!(segment = %name, size, "created WAL segment");
    Ok(file)
}
