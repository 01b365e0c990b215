//! How the log is opened: durability, segment size, limits, what recovery may do.

use std::time::Duration;

use crate::error::Error;
use crate::format::{FRAME_ALIGN, FRAME_BODY, HEADER_LEN, MAX_BODY_LEN, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE};
use crate::record::Lsn;

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After its bytes are on stable storage: survives power loss. Concurrent appenders
    /// share one sync (group commit).
    Sync,
    /// As soon as its bytes are in the kernel: survives the process being killed at once,
    /// and power loss once the background sync, every `interval`, has run.
    Periodic(Duration),
}

impl Default for Durability {
    fn default() -> Self {
        Self::Periodic(Duration::from_millis(100))
    }
}

/// What opening does with damage that no crash explains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Truncate a torn tail of the newest segment; refuse to open over corruption.
    #[default]
    Strict,
    /// Also cut the log at the first corruption, deleting every record after it.
    /// Explicit data loss: for repair tools, never a default.
    TruncateAtCorruption,
}

/// Options for [`crate::Wal::open`].
#[derive(Clone, Debug)]
pub struct Options {
    /// When appends are acknowledged.
    pub durability: Durability,
    /// Size of each preallocated segment file, in bytes.
    pub segment_size: u64,
    /// Largest encoded record body accepted, in bytes.
    pub max_record_size: usize,
    /// What recovery may do with corruption.
    pub recovery: RecoveryMode,
    /// The lowest LSN the next append may get. Lets the caller keep LSNs increasing when
    /// it knows of higher ones elsewhere (e.g. in its database): the first LSN of a log
    /// created in an empty directory, and the floor of the restart LSN an existing log
    /// resumes at (a directory restored from an older copy moves forward).
    pub min_next_lsn: Lsn,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            segment_size: 64 << 20,
            max_record_size: 16 << 20,
            recovery: RecoveryMode::Strict,
            min_next_lsn: 1,
        }
    }
}

impl Options {
    /// The largest body that fits both the limit and a segment.
    pub(crate) fn body_limit(&self) -> usize {
        let room = usize::try_from(self.segment_size).unwrap_or(usize::MAX) - HEADER_LEN - FRAME_BODY - FRAME_ALIGN;
        self.max_record_size.min(room).min(MAX_BODY_LEN)
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return Err(Error::InvalidOptions(format!(
                "segment_size {} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}",
                self.segment_size
            )));
        }
        if !(1..=crate::format::MAX_LSN).contains(&self.min_next_lsn) {
            return Err(Error::InvalidOptions(format!("min_next_lsn {} is outside 1..=MAX_LSN", self.min_next_lsn)));
        }
        if let Durability::Periodic(interval) = self.durability
            && interval.is_zero()
        {
            return Err(Error::InvalidOptions("a Periodic sync interval must be above zero".into()));
        }
        Ok(())
    }
}
