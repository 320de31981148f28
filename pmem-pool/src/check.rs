//! Offline consistency check of a pool file (`pmem check`), without opening
//! it as a pool: works on files whose header is damaged.
//!
//! TODO(H3): implementation. Later issues add lanes and heap to the report.

use crate::error::Result;
use crate::header::HeaderInfo;
use std::path::Path;

/// The state of one header copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyStatus {
    /// Magic, checksum and fields are valid.
    Ok,
    /// The copy does not carry the pool magic.
    BadMagic,
    /// Magic is right but the checksum does not match.
    BadChecksum {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// Checksum matches but a field is invalid (named in the text).
    BadField(String),
}

/// What `check_file` found.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// Primary header state.
    pub primary: CopyStatus,
    /// Backup header state.
    pub backup: CopyStatus,
    /// The header in force (primary if valid, else backup), if any copy is.
    pub header: Option<HeaderInfo>,
    /// Whether the two copies are byte-identical.
    pub copies_match: bool,
    /// Actual file size.
    pub file_size: u64,
    /// Problems found, one sentence each; empty means consistent.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when nothing is wrong.
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the pool file at `path` read-only. `Err` means the check could
/// not run (file missing, unreadable, locked by a writer).
pub fn check_file(path: &Path) -> Result<CheckReport> {
    let _ = path;
    todo!("H3")
}
