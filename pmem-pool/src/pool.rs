//! An open pool file: mapping, lock, validated header, persister.
//!
//! TODO(H3): real create/open/close; the signatures are the contract the
//! upper crates and the CLI build against.

use crate::error::Result;
use crate::header::HeaderInfo;
use crate::mode::ModeChoice;
use crate::options::PoolOptions;
use crate::persist::Persister;
use std::path::Path;

/// How the pool was left by its previous user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownState {
    /// Closed cleanly (or never opened since create).
    Clean,
    /// The previous process died (or did not close) with the pool open.
    Unclean,
}

/// A mapped, locked, validated pool without any object semantics.
pub struct RawPool {
    _private: (),
}

impl RawPool {
    /// Creates a new pool file of `size` bytes with `layout` as its layout
    /// name. Crash-atomic: a crash during create never leaves a file that
    /// opens as a pool.
    pub fn create(path: &Path, layout: &str, size: u64, opts: &PoolOptions) -> Result<RawPool> {
        let _ = (path, layout, size, opts);
        todo!("H3")
    }

    /// Opens an existing pool; `layout`, when given, must match.
    pub fn open(path: &Path, layout: Option<&str>, opts: &PoolOptions) -> Result<RawPool> {
        let _ = (path, layout, opts);
        todo!("H3")
    }

    /// The validated header.
    pub fn header(&self) -> &HeaderInfo {
        todo!("H3")
    }

    /// The persistence mode in force and why.
    pub fn mode_choice(&self) -> &ModeChoice {
        todo!("H3")
    }

    /// The persistence seam of this pool.
    pub fn persister(&self) -> &Persister {
        todo!("H3")
    }

    /// The path the pool was opened from.
    pub fn path(&self) -> &Path {
        todo!("H3")
    }

    /// Pool size in bytes (the mapping's length).
    pub fn size(&self) -> u64 {
        todo!("H3")
    }

    /// Whether the pool was opened read-only.
    pub fn is_read_only(&self) -> bool {
        todo!("H3")
    }

    /// The run id of this open (bumped at every read-write open).
    pub fn run_id(&self) -> u64 {
        todo!("H3")
    }

    /// How the previous user left the pool (read before this open marked it
    /// in use).
    pub fn previous_shutdown(&self) -> ShutdownState {
        todo!("H3")
    }

    /// Base address of the mapping. Reading or writing through it is the
    /// caller's `unsafe` business; writes must go through the persister.
    pub fn base(&self) -> *mut u8 {
        todo!("H3")
    }

    /// Closes the pool cleanly: records a clean shutdown, unlocks, unmaps.
    pub fn close(self) -> Result<()> {
        todo!("H3")
    }
}
