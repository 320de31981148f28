//! Mapping a pool file or a device-dax device, and the few other system
//! calls the pool needs that std does not offer (`posix_fallocate`,
//! `renameat2`, `getrandom`).
//!
//! # Safety
//! A [`Mapping`] owns one `mmap` region: `base..base+len` stays mapped from
//! construction until `Drop` unmaps it, and nothing else unmaps it. Every
//! access through it is bounds-checked against `len`. Words of the state
//! block are accessed as `AtomicU64` (8-aligned, in bounds), so concurrent
//! access by upper layers through atomics is not a data race. Plain byte
//! writes ([`Mapping::write`]) are used only for the header and state blocks
//! while the pool is exclusively held by create or repair, before any other
//! code can hold a pointer into the mapping.

use crate::error::{Error, Result};
use crate::mode::{Mode, ModeChoice};
use crate::persist::Persister;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Page size assumed for prefaulting (the smallest x86 page).
const PAGE: usize = 4096;

/// What is being mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A regular file (fs-DAX or not).
    File,
    /// A device-dax character device.
    DevDax,
}

/// One shared mapping of a pool, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: *mut u8,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping is plain shared memory; the struct only holds its
// address and length, and every access it offers is either atomic or made
// under the exclusive-ownership rule in the module docs.
unsafe impl Send for Mapping {}
// SAFETY: as for Send.
unsafe impl Sync for Mapping {}

fn mmap_raw(fd: i32, len: usize, prot: i32, flags: i32) -> io::Result<*mut u8> {
    // SAFETY: a fresh mapping at an address the kernel picks: no existing
    // memory is affected; the result is checked against MAP_FAILED.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p.cast())
    }
}

/// Maps `len` bytes of `file` shared, and says which mode the mapping
/// itself implies (before the eADR refinement and before any forcing).
pub(crate) fn map(
    file: &File,
    path: &Path,
    len: usize,
    writable: bool,
    target: Target,
) -> Result<(Mapping, ModeChoice)> {
    let fd = file.as_raw_fd();
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    let ctx = || format!("mapping {}", path.display());
    let (base, choice) = match target {
        Target::DevDax => {
            let base =
                mmap_raw(fd, len, prot, libc::MAP_SHARED).map_err(|e| Error::io(ctx(), e))?;
            (
                base,
                ModeChoice {
                    mode: Mode::Pmem,
                    reason: "device-dax".into(),
                },
            )
        }
        Target::File => match mmap_raw(fd, len, prot, libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC) {
            Ok(base) => (
                base,
                ModeChoice {
                    mode: Mode::Pmem,
                    reason: "MAP_SYNC mapping succeeded: file is on fs-DAX".into(),
                },
            ),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
                ) =>
            {
                let base =
                    mmap_raw(fd, len, prot, libc::MAP_SHARED).map_err(|e| Error::io(ctx(), e))?;
                (
                    base,
                    ModeChoice {
                        mode: Mode::Msync,
                        reason: format!(
                            "MAP_SYNC mapping refused ({e}): file is not on fs-DAX, using the msync fallback"
                        ),
                    },
                )
            }
            Err(e) => return Err(Error::io(ctx(), e)),
        },
    };
    Ok((
        Mapping {
            base,
            len,
            writable,
        },
        choice,
    ))
}

impl Mapping {
    /// Base address.
    pub(crate) fn base(&self) -> *mut u8 {
        self.base
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn word(&self, off: u64) -> &AtomicU64 {
        let off = usize::try_from(off).unwrap_or(usize::MAX);
        assert!(
            off.is_multiple_of(8) && off.checked_add(8).is_some_and(|e| e <= self.len),
            "state word {off:#x} misaligned or outside the mapping"
        );
        // SAFETY: in bounds and 8-aligned (checked above; the base is page
        // aligned); the mapping lives as long as `self`, and the word is
        // only ever accessed atomically (module docs).
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }

    /// Reads the 8-byte word at `off` (8-aligned).
    pub(crate) fn load_u64(&self, off: u64) -> u64 {
        u64::from_le(self.word(off).load(Ordering::Acquire))
    }

    /// Stores the 8-byte word at `off` (8-aligned) with one failure-atomic
    /// store. Not durable until the persister persists it.
    pub(crate) fn store_u64(&self, off: u64, v: u64) {
        assert!(self.writable, "store into a read-only mapping");
        self.word(off).store(v.to_le(), Ordering::Release);
    }

    /// Copies `src` to `off`. Only for the header and state blocks while the
    /// pool is exclusively held (module docs). Not durable until persisted.
    pub(crate) fn write(&self, off: u64, src: &[u8]) {
        assert!(self.writable, "write into a read-only mapping");
        let off = usize::try_from(off).unwrap_or(usize::MAX);
        assert!(
            off.checked_add(src.len()).is_some_and(|e| e <= self.len),
            "write outside the mapping"
        );
        // SAFETY: in bounds (checked above); no reference into the
        // destination exists (module docs); `src` is a Rust slice, so it
        // cannot overlap the mapping's bytes we are exclusively writing.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(off), src.len()) };
    }

    /// Faults every page in now (`MADV_POPULATE_WRITE`/`_READ`, Linux ≥ 5.14;
    /// else touching one byte per page).
    pub(crate) fn prefault(&self) {
        let advice = if self.writable {
            libc::MADV_POPULATE_WRITE
        } else {
            libc::MADV_POPULATE_READ
        };
        // SAFETY: the range is exactly our live mapping; populate advice
        // does not change its contents.
        let rc = unsafe { libc::madvise(self.base.cast(), self.len, advice) };
        if rc == 0 {
            return;
        }
        for off in (0..self.len).step_by(PAGE) {
            // SAFETY: off < len, inside the live mapping; a volatile read
            // has no effect on the contents.
            unsafe { std::ptr::read_volatile(self.base.add(off)) };
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned; the persister
        // holding the address is dropped before the mapping (pool field
        // order), so nothing uses the range afterwards.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// A mapping together with the persister of it. The persister is declared
/// first, so it is dropped before the mapping is unmapped: that is what
/// makes [`Mapped::new`] safe.
#[derive(Debug)]
pub(crate) struct Mapped {
    persister: Persister,
    mapping: Mapping,
}

impl Mapped {
    /// Builds the persister of `mapping` in `mode`.
    pub(crate) fn new(mapping: Mapping, mode: Mode) -> Result<Mapped> {
        // SAFETY: `mapping` is live until this struct drops it, and the
        // persister (declared first) is dropped before it.
        let persister = unsafe { Persister::new(mapping.base, mapping.len, mode) }?;
        Ok(Mapped { persister, mapping })
    }

    /// The persister.
    pub(crate) fn persister(&self) -> &Persister {
        &self.persister
    }

    /// The mapping.
    pub(crate) fn mapping(&self) -> &Mapping {
        &self.mapping
    }
}

/// Reserves `len` bytes for `file` now (so a full disk fails here, not as
/// SIGBUS later); falls back to `set_len` where the file system cannot
/// preallocate.
pub(crate) fn allocate(file: &File, len: u64) -> io::Result<()> {
    let off_len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain system call on an owned, open descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off_len) };
    match rc {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` rather than
/// replacing an existing `to` (`renameat2(RENAME_NOREPLACE)`, or link +
/// unlink where the file system lacks it).
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: both are valid NUL-terminated paths owned for the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        _ => Err(e),
    }
}

/// 16 random bytes from getrandom(2), shaped as a version-4 UUID.
pub(crate) fn random_uuid() -> io::Result<[u8; 16]> {
    let mut b = [0u8; 16];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: writes at most the remaining bytes of `b`.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(b)
}

/// Reads `buf.len()` bytes at `off` of a device-dax device. Such devices
/// support only `mmap`, not `read`, so this maps the device's first
/// alignment unit read-only (2 MiB, or the device's `align` when larger),
/// copies, and unmaps.
pub(crate) fn read_devdax(file: &File, dev: u64, off: u64, buf: &mut [u8]) -> io::Result<()> {
    let align = crate::mode::devdax_align(dev)
        .unwrap_or(2 << 20)
        .max(2 << 20);
    let end = off
        .checked_add(buf.len() as u64)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let map_len = end.next_multiple_of(align) as usize;
    // SAFETY: a fresh read-only shared mapping of the device at offset 0
    // (aligned), owned by this function and unmapped below; nothing else
    // knows its address.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `off + buf.len() <= map_len`, inside the mapping just made;
    // `buf` is a distinct Rust buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (base as *const u8).add(off as usize),
            buf.as_mut_ptr(),
            buf.len(),
        );
        libc::munmap(base, map_len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_mapping_falls_back_to_msync_and_words_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        allocate(&f, 3 * 4096).unwrap();
        let (m, c) = map(&f, &p, 3 * 4096, true, Target::File).unwrap();
        // The temp dir is not on fs-DAX on any CI machine.
        assert_eq!(c.mode, Mode::Msync, "{}", c.reason);
        assert!(c.reason.contains("MAP_SYNC"));
        m.store_u64(0x2008, 0x0102_0304_0506_0708);
        assert_eq!(m.load_u64(0x2008), 0x0102_0304_0506_0708);
        m.write(16, b"abc");
        m.prefault();
        drop(m);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[16..19], b"abc");
        assert_eq!(bytes[0x2008], 0x08, "little-endian word on media");
    }

    #[test]
    fn uuids_are_random_v4() {
        let a = random_uuid().unwrap();
        let b = random_uuid().unwrap();
        assert_ne!(a, b);
        assert_eq!(a[6] >> 4, 4);
        assert_eq!(a[8] >> 6, 0b10);
    }

    #[test]
    fn rename_refuses_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"1").unwrap();
        std::fs::write(&b, b"2").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_file(&b).unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"1");
    }
}
