//! A read-only view of a whole pool file, for the offline heap check.
//!
//! # Safety
//! The pool is mapped read-only (`PROT_READ`, `MAP_SHARED`) rather than
//! read into memory, so checking a pool of many GiB costs no more memory
//! than the pages the walk touches. A shared `flock` is held for the life
//! of the mapping: every pmem-obj writer holds the exclusive lock, so no
//! pmem-obj process writes to or truncates the file while the bytes are
//! borrowed. (A program ignoring the lock could still truncate the file,
//! which would raise SIGBUS here, as with any mapped reader.)

use memmap2::{Mmap, MmapOptions};
use std::fs::File;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;

/// Device-dax devices map only in units of their alignment (2 MiB by
/// default; larger alignments are multiples of it and the device size is a
/// multiple of the alignment, so rounding to 2 MiB stays inside the device).
const DEVDAX_MAP_UNIT: u64 = 2 << 20;

/// The first `len` bytes of a pool file, mapped read-only under a shared
/// lock.
pub struct PoolImage {
    map: Mmap,
    len: usize,
    // Held for the lock; dropped after `map` (field order).
    _file: File,
}

impl PoolImage {
    /// Maps the first `len` bytes of `path` read-only, taking a shared
    /// lock. The caller has checked that the file holds `len` bytes.
    pub fn open(path: &Path, len: u64) -> Result<PoolImage, String> {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match file.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "{} is open read-write by another process; close it before checking its heap",
                    path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
        let devdax = file
            .metadata()
            .map_err(|e| format!("cannot read the metadata of {}: {e}", path.display()))?
            .file_type()
            .is_char_device();
        let map_len = if devdax {
            len.next_multiple_of(DEVDAX_MAP_UNIT)
        } else {
            len
        };
        let too_big = || format!("{} bytes do not fit in this address space", len);
        let map_len = usize::try_from(map_len).map_err(|_| too_big())?;
        let len = usize::try_from(len).map_err(|_| too_big())?;
        // SAFETY: a fresh read-only shared mapping of `map_len` bytes, which
        // the file (or device) holds: the caller checked the file length for
        // regular files, and a device-dax size is a multiple of the unit.
        // The shared lock taken above keeps every pmem-obj writer away for
        // the mapping's life (module docs).
        let map = unsafe { MmapOptions::new().len(map_len).map(&file) }
            .map_err(|e| format!("cannot map {}: {e}", path.display()))?;
        Ok(PoolImage {
            map,
            len,
            _file: file,
        })
    }

    /// The pool's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map[..self.len]
    }
}
