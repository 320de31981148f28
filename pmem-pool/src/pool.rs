//! An open pool file: mapping, lock, validated header, persister.
//!
//! `create` and `open` follow the protocols of `FORMAT.md` ("Create" and
//! "Open validation"): everything is validated with plain reads before the
//! file is mapped, and nothing is written to a file that failed validation.

use crate::error::{Error, Result};
use crate::header::{
    self, HeaderInfo, KNOWN_INCOMPAT, KNOWN_RO_COMPAT, MAGIC, RawHeader, SHUTDOWN_CLEAN,
    SHUTDOWN_IN_USE, STATE_RUN_ID, STATE_SHUTDOWN,
};
use crate::layout::{BACKUP_HEADER_OFFSET, BLOCK_SIZE, HEADER_OFFSET, MIN_POOL_SIZE, STATE_OFFSET};
use crate::map::{self, Mapped, Target};
use crate::mode::{self, ModeChoice};
use crate::options::PoolOptions;
use crate::persist::Persister;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How the pool was left by its previous user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownState {
    /// Closed cleanly (or never opened since create).
    Clean,
    /// The previous process died (or did not close) with the pool open.
    Unclean,
}

/// A mapped, locked, validated pool without any object semantics.
///
/// Field order matters: the mapping (and its persister) are dropped before
/// the file, so the lock is released only after the pool is unmapped.
pub struct RawPool {
    mapped: Mapped,
    file: File,
    header: HeaderInfo,
    choice: ModeChoice,
    path: PathBuf,
    read_only: bool,
    run_id: u64,
    previous: ShutdownState,
    closed: bool,
}

impl std::fmt::Debug for RawPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPool")
            .field("path", &self.path)
            .field("mode", &self.choice)
            .field("read_only", &self.read_only)
            .field("run_id", &self.run_id)
            .field("previous", &self.previous)
            .finish()
    }
}

/// An opened pool file or device and what it is.
pub(crate) struct Opened {
    pub file: File,
    pub target: Target,
    /// Bytes available: file length, or the device-dax size.
    pub len: u64,
    /// Device whose sysfs entry leads to the nd region (st_dev for a file,
    /// st_rdev for a device-dax device).
    pub dev: u64,
}

/// Opens `path` for reading (and writing), mapping OS errors to typed ones.
pub(crate) fn open_file(path: &Path, write: bool) -> Result<Opened> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|e| open_error(path, write, e))?;
    let md = file
        .metadata()
        .map_err(|e| Error::io(format!("reading the metadata of {}", path.display()), e))?;
    let ft = md.file_type();
    if ft.is_dir() {
        return Err(Error::NotAPool {
            path: path.into(),
            hint: Some("it is a directory"),
        });
    }
    if ft.is_char_device() && mode::is_device_dax(md.rdev()) {
        let len = mode::device_dax_size(md.rdev()).ok_or_else(|| {
            Error::io(
                format!(
                    "reading the size of device-dax {} from sysfs",
                    path.display()
                ),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })?;
        return Ok(Opened {
            file,
            target: Target::DevDax,
            len,
            dev: md.rdev(),
        });
    }
    Ok(Opened {
        file,
        target: Target::File,
        len: md.len(),
        dev: md.dev(),
    })
}

fn open_error(path: &Path, write: bool, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::EISDIR) {
        return Error::NotAPool {
            path: path.into(),
            hint: Some("it is a directory"),
        };
    }
    match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound { path: path.into() },
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            Error::PermissionDenied {
                path: path.into(),
                write,
            }
        }
        _ => Error::io(format!("opening {}", path.display()), e),
    }
}

/// Takes the pool's `flock`: exclusive for writers, shared for readers.
pub(crate) fn lock(file: &File, path: &Path, exclusive: bool) -> Result<()> {
    let r = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match r {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { path: path.into() }),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::io(format!("locking {}", path.display()), e))
        }
    }
}

/// Reads the 4 KiB block at `off`, or `None` if the file ends before it.
/// Device-dax devices cannot be `read`: they are read through a mapping.
pub(crate) fn read_block(
    o: &Opened,
    path: &Path,
    off: u64,
) -> Result<Option<Box<[u8; BLOCK_SIZE as usize]>>> {
    if o.len < off + BLOCK_SIZE {
        return Ok(None);
    }
    let mut b = Box::new([0u8; BLOCK_SIZE as usize]);
    match o.target {
        Target::File => o.file.read_exact_at(&mut b[..], off),
        Target::DevDax => crate::map::read_devdax(&o.file, o.dev, off, &mut b[..]),
    }
    .map_err(|e| Error::io(format!("reading {} at {off:#x}", path.display()), e))?;
    Ok(Some(b))
}

/// Open validation, in the order `FORMAT.md` documents. Plain reads only.
fn validate(o: &Opened, path: &Path, layout: Option<&str>, read_only: bool) -> Result<RawHeader> {
    use crate::check::CopyStatus;
    let primary = match read_block(o, path, HEADER_OFFSET)? {
        Some(b) => b,
        None => {
            return Err(Error::TooSmall {
                path: path.into(),
                size: o.len,
                min: MIN_POOL_SIZE,
            });
        }
    };
    let h = match header::decode_copy(&primary) {
        Ok(h) => h,
        Err(CopyStatus::BadMagic) => {
            return Err(Error::NotAPool {
                path: path.into(),
                hint: header::foreign_hint(&primary[..]),
            });
        }
        Err(CopyStatus::BadChecksum { stored, computed }) => {
            let backup_ok = read_block(o, path, BACKUP_HEADER_OFFSET)?
                .is_some_and(|b| header::decode_copy(&b).is_ok());
            return Err(Error::ChecksumMismatch {
                path: path.into(),
                which: "primary",
                stored,
                computed,
                backup_ok,
            });
        }
        Err(other) => {
            let reason = match other {
                CopyStatus::BadField(r) => r,
                s => format!("{s:?}"),
            };
            return Err(Error::BadHeader {
                path: path.into(),
                which: "primary",
                reason,
            });
        }
    };
    let unknown_incompat = h.incompat & !KNOWN_INCOMPAT;
    if h.version != header::FORMAT_VERSION || unknown_incompat != 0 {
        return Err(Error::UnsupportedVersion {
            path: path.into(),
            found: h.version,
            supported: header::FORMAT_VERSION,
            unknown_incompat,
        });
    }
    let unknown_ro_compat = h.ro_compat & !KNOWN_RO_COMPAT;
    if unknown_ro_compat != 0 && !read_only {
        return Err(Error::ReadOnlyFeatures {
            path: path.into(),
            unknown_ro_compat,
        });
    }
    if o.len < h.size {
        return Err(Error::Truncated {
            path: path.into(),
            expected: h.size,
            actual: o.len,
        });
    }
    if let Some(expected) = layout {
        let found = h.info().layout;
        if found != expected {
            return Err(Error::WrongLayout {
                path: path.into(),
                found,
                expected: expected.into(),
            });
        }
    }
    Ok(h)
}

/// Maps `len` bytes and builds the persister in the chosen mode.
fn map_pool(
    o: &Opened,
    path: &Path,
    len: u64,
    writable: bool,
    forced: Option<ModeChoice>,
) -> Result<(Mapped, ModeChoice)> {
    let len = usize::try_from(len).map_err(|_| Error::InvalidSize {
        size: len,
        reason: "larger than the address space".into(),
    })?;
    let (mapping, detected) = map::map(&o.file, path, len, writable, o.target)?;
    let choice = match forced {
        Some(c) => c,
        None => mode::refine_eadr(detected, o.dev, o.target == Target::DevDax),
    };
    let mapped = Mapped::new(mapping, choice.mode)?;
    Ok((mapped, choice))
}

/// Removes a temporary file unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Writes a fresh pool into a mapped, zero-or-garbage region of `size`
/// bytes: persist points P1–P4 of the create protocol in `FORMAT.md`.
fn format(
    mapped: &Mapped,
    layout: &str,
    size: u64,
    zero_lanes: bool,
    geometry: (u32, u32),
) -> Result<RawHeader> {
    let m = mapped.mapping();
    let p = mapped.persister();
    let uuid = map::random_uuid().map_err(|e| Error::io("getrandom for the pool UUID", e))?;
    let h = header::new_header(layout, size, uuid, now_unix_ns(), geometry);
    // P1: the state block (and, on a device, the lanes) zeroed; run id 1,
    // in use (the creating process holds it open).
    let zeros = vec![0u8; BLOCK_SIZE as usize];
    m.write(STATE_OFFSET, &zeros);
    if zero_lanes {
        let mut off = h.lanes_offset;
        while off < h.heap_offset {
            m.write(off, &zeros);
            off += BLOCK_SIZE;
        }
        p.flush(
            h.lanes_offset as usize,
            (h.heap_offset - h.lanes_offset) as usize,
        );
    }
    m.store_u64(STATE_RUN_ID, 1);
    m.store_u64(STATE_SHUTDOWN, SHUTDOWN_IN_USE);
    p.persist(STATE_OFFSET as usize, BLOCK_SIZE as usize)?;
    // P2: the primary without its magic.
    let bytes = h.to_bytes();
    let mut no_magic = bytes;
    no_magic[..MAGIC.len()].fill(0);
    m.write(HEADER_OFFSET, &no_magic);
    p.persist(HEADER_OFFSET as usize, BLOCK_SIZE as usize)?;
    // P3: the backup, complete.
    m.write(BACKUP_HEADER_OFFSET, &bytes);
    p.persist(BACKUP_HEADER_OFFSET as usize, BLOCK_SIZE as usize)?;
    // P4: the magic: from here on the primary is valid.
    m.write(HEADER_OFFSET, &MAGIC);
    p.persist(HEADER_OFFSET as usize, MAGIC.len())?;
    Ok(h)
}

/// Refuses a pool size too small for the requested lanes, or a lane
/// geometry out of range.
fn check_geometry(size: u64, opts: &PoolOptions) -> Result<()> {
    use crate::layout::{MAX_LANE_COUNT, lane_size_ok, min_pool_size};
    let (count, lane) = opts.lane_geometry();
    if count == 0 || count > MAX_LANE_COUNT || !lane_size_ok(lane) {
        return Err(Error::InvalidSize {
            size,
            reason: format!(
                "{count} lanes of {lane} bytes: lanes must number 1..={MAX_LANE_COUNT} and be a multiple of 4 KiB up to 1 MiB"
            ),
        });
    }
    let min = min_pool_size(count, lane).max(MIN_POOL_SIZE);
    if size < min {
        return Err(Error::InvalidSize {
            size,
            reason: format!("the smallest pool with {count} lanes of {lane} bytes is {min} bytes"),
        });
    }
    Ok(())
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl RawPool {
    /// Creates a new pool file of `size` bytes with `layout` as its layout
    /// name. Crash-atomic: a crash during create never leaves a file that
    /// opens as a pool.
    ///
    /// `size` must be at least [`MIN_POOL_SIZE`] and a multiple of 4 KiB.
    /// On a device-dax device the pool is formatted in place and takes the
    /// whole device (`size` is ignored). The pool is returned open
    /// read-write; `opts.read_only` is refused with [`Error::ReadOnly`].
    pub fn create(path: &Path, layout: &str, size: u64, opts: &PoolOptions) -> Result<RawPool> {
        header::validate_layout(layout).map_err(|reason| Error::InvalidLayout { reason })?;
        if opts.read_only {
            return Err(Error::ReadOnly);
        }
        let forced = mode::forced_mode(opts)?;
        match std::fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_char_device() && mode::is_device_dax(md.rdev()) => {
                return Self::create_devdax(path, layout, opts, forced);
            }
            Ok(_) => return Err(Error::AlreadyExists { path: path.into() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("checking {}", path.display()), e)),
        }
        check_geometry(size, opts)?;
        if !size.is_multiple_of(BLOCK_SIZE) {
            return Err(Error::InvalidSize {
                size,
                reason: format!(
                    "not a multiple of 4 KiB (try {})",
                    size.next_multiple_of(BLOCK_SIZE)
                ),
            });
        }
        let name = path.file_name().ok_or_else(|| {
            Error::io(
                format!("{}: path has no file name", path.display()),
                io::Error::from(io::ErrorKind::InvalidInput),
            )
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::NotFound { path: path.into() },
                _ => open_error(path, true, e),
            })?;
        let mut guard = TempGuard(Some(tmp.clone()));
        lock(&file, path, true)?;
        map::allocate(&file, size).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                Error::InvalidSize {
                    size,
                    reason: format!("not enough free space in {}", dir.display()),
                }
            } else {
                Error::io(format!("allocating {size} bytes for {}", path.display()), e)
            }
        })?;
        let dev = file
            .metadata()
            .map_err(|e| Error::io(format!("reading the metadata of {}", tmp.display()), e))?
            .dev();
        let o = Opened {
            file,
            target: Target::File,
            len: size,
            dev,
        };
        let (mapped, choice) = map_pool(&o, path, size, true, forced)?;
        let h = format(&mapped, layout, size, false, opts.lane_geometry())?;
        // P5: file data and metadata (size, extents) durable.
        o.file
            .sync_all()
            .map_err(|e| Error::io(format!("fsync of {}", tmp.display()), e))?;
        // P6: the pool appears under its name, atomically, never replacing.
        map::rename_noreplace(&tmp, path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { path: path.into() },
            _ => Error::io(
                format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            ),
        })?;
        guard.0 = None;
        // P7: the directory entry durable.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("fsync of directory {}", dir.display()), e))?;
        Ok(RawPool::just_created(mapped, o.file, &h, choice, path))
    }

    /// The open pool `create` returns: run id 1, in use, read-write.
    fn just_created(
        mapped: Mapped,
        file: File,
        h: &RawHeader,
        choice: ModeChoice,
        path: &Path,
    ) -> RawPool {
        RawPool {
            mapped,
            file,
            header: h.info(),
            choice,
            path: path.into(),
            read_only: false,
            run_id: 1,
            previous: ShutdownState::Clean,
            closed: false,
        }
    }

    fn create_devdax(
        path: &Path,
        layout: &str,
        opts: &PoolOptions,
        forced: Option<ModeChoice>,
    ) -> Result<RawPool> {
        let o = open_file(path, true)?;
        lock(&o.file, path, true)?;
        let size = o.len - o.len % BLOCK_SIZE;
        check_geometry(size, opts)?;
        for off in [HEADER_OFFSET, BACKUP_HEADER_OFFSET] {
            if let Some(b) = read_block(&o, path, off)?
                && header::decode_copy(&b).is_ok()
            {
                return Err(Error::AlreadyExists { path: path.into() });
            }
        }
        let (mapped, choice) = map_pool(&o, path, size, true, forced)?;
        if opts.prefault {
            mapped.mapping().prefault();
        }
        let h = format(&mapped, layout, size, true, opts.lane_geometry())?;
        Ok(RawPool::just_created(mapped, o.file, &h, choice, path))
    }

    /// Opens an existing pool; `layout`, when given, must match.
    ///
    /// A read-write open takes an exclusive lock, bumps and persists the
    /// run id and marks the pool in use; a read-only open takes a shared
    /// lock and writes nothing.
    pub fn open(path: &Path, layout: Option<&str>, opts: &PoolOptions) -> Result<RawPool> {
        let forced = mode::forced_mode(opts)?;
        let read_only = opts.read_only;
        let o = open_file(path, !read_only)?;
        lock(&o.file, path, !read_only)?;
        let h = validate(&o, path, layout, read_only)?;
        let (mapped, choice) = map_pool(&o, path, h.size, !read_only, forced)?;
        if opts.prefault {
            mapped.mapping().prefault();
        }
        let m = mapped.mapping();
        let previous = match m.load_u64(STATE_SHUTDOWN) {
            SHUTDOWN_CLEAN => ShutdownState::Clean,
            _ => ShutdownState::Unclean,
        };
        let mut run_id = m.load_u64(STATE_RUN_ID);
        if !read_only {
            run_id = run_id.wrapping_add(1);
            m.store_u64(STATE_RUN_ID, run_id);
            m.store_u64(STATE_SHUTDOWN, SHUTDOWN_IN_USE);
            mapped
                .persister()
                .persist(STATE_OFFSET as usize, 2 * size_of::<u64>())?;
        }
        Ok(RawPool {
            mapped,
            file: o.file,
            header: h.info(),
            choice,
            path: path.into(),
            read_only,
            run_id,
            previous,
            closed: false,
        })
    }

    /// The validated header.
    pub fn header(&self) -> &HeaderInfo {
        &self.header
    }

    /// The persistence mode in force and why.
    pub fn mode_choice(&self) -> &ModeChoice {
        &self.choice
    }

    /// The persistence seam of this pool.
    pub fn persister(&self) -> &Persister {
        self.mapped.persister()
    }

    /// The path the pool was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pool size in bytes (the mapping's length).
    pub fn size(&self) -> u64 {
        self.mapped.mapping().len() as u64
    }

    /// Whether the pool was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The run id of this open (bumped at every read-write open).
    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    /// How the previous user left the pool (read before this open marked it
    /// in use).
    pub fn previous_shutdown(&self) -> ShutdownState {
        self.previous
    }

    /// Base address of the mapping. Reading or writing through it is the
    /// caller's `unsafe` business; writes must go through the persister.
    pub fn base(&self) -> *mut u8 {
        self.mapped.mapping().base()
    }

    /// The open file (for `fsync` or metadata by upper layers).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Clears the shutdown flag and persists it (read-write pools only).
    fn mark_clean(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.mapped
            .mapping()
            .store_u64(STATE_SHUTDOWN, SHUTDOWN_CLEAN);
        self.mapped
            .persister()
            .persist(STATE_SHUTDOWN as usize, size_of::<u64>())
    }

    /// Closes the pool cleanly: records a clean shutdown, unlocks, unmaps.
    pub fn close(mut self) -> Result<()> {
        self.close_in_place()
    }

    /// [`close`](Self::close) for an owner that cannot give the pool up
    /// by value (its own `Drop`): marks the pool clean; dropping it later
    /// does nothing more. On error, dropping it tries once more.
    pub fn close_in_place(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.mark_clean();
        self.closed = r.is_ok();
        r
    }
}

impl Drop for RawPool {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.mark_clean();
        }
        // Then the fields drop in order: persister, mapping (munmap), file
        // (which releases the flock).
    }
}
