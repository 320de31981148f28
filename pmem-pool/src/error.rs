//! The error type of `pmem-pool`: one variant per thing that can go wrong,
//! each with a message a person can act on.

use std::io;
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong below the object layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The pool file (or device) does not exist.
    NotFound {
        /// The path that was opened.
        path: PathBuf,
    },
    /// The file exists but this process may not open it as asked.
    PermissionDenied {
        /// The path that was opened.
        path: PathBuf,
        /// Whether write access was asked for.
        write: bool,
    },
    /// `create` found a file already at the path.
    AlreadyExists {
        /// The path that was created.
        path: PathBuf,
    },
    /// Another process (or another handle in this one) holds the pool open.
    Locked {
        /// The pool path.
        path: PathBuf,
    },
    /// The file is smaller than the smallest pool, so cannot be one.
    TooSmall {
        /// The pool path.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The smallest pool size.
        min: u64,
    },
    /// The file does not start with the pool magic: not a pmem-obj pool.
    NotAPool {
        /// The pool path.
        path: PathBuf,
        /// A hint about what the file looks like, if known.
        hint: Option<&'static str>,
    },
    /// The pool was created with another layout name.
    WrongLayout {
        /// The pool path.
        path: PathBuf,
        /// The layout name stored in the pool.
        found: String,
        /// The layout name the caller asked for.
        expected: String,
    },
    /// The layout name is too long or contains a NUL byte.
    InvalidLayout {
        /// Why the name is refused.
        reason: String,
    },
    /// The pool's format version is not the one this library reads (older
    /// or newer), or it uses incompatible features this library does not
    /// know.
    UnsupportedVersion {
        /// The pool path.
        path: PathBuf,
        /// Major format version in the header.
        found: u32,
        /// Highest major version this library reads.
        supported: u32,
        /// Incompatible feature bits this library does not know (0 if none).
        unknown_incompat: u64,
    },
    /// The pool has read-only-compatible features this library does not
    /// know, so it may be opened read-only only.
    ReadOnlyFeatures {
        /// The pool path.
        path: PathBuf,
        /// The unknown bits.
        unknown_ro_compat: u64,
    },
    /// The primary header's checksum does not match its contents.
    ChecksumMismatch {
        /// The pool path.
        path: PathBuf,
        /// Which copy: "primary" or "backup".
        which: &'static str,
        /// Checksum stored in the header.
        stored: u32,
        /// Checksum computed over the header.
        computed: u32,
        /// Whether the backup copy is intact (then `pmem repair` can fix it).
        backup_ok: bool,
    },
    /// A header copy has the right magic and checksum but an invalid field
    /// (a reserved field set, a bad layout name, impossible geometry).
    BadHeader {
        /// The pool path.
        path: PathBuf,
        /// Which copy: "primary" or "backup".
        which: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The file is shorter than the size its header records.
    Truncated {
        /// The pool path.
        path: PathBuf,
        /// Size recorded in the header.
        expected: u64,
        /// Actual size of the file.
        actual: u64,
    },
    /// A requested pool size is unusable.
    InvalidSize {
        /// The size asked for.
        size: u64,
        /// Why it is refused.
        reason: String,
    },
    /// A persistence mode was requested that cannot work here (e.g. `Pmem`
    /// forced on a mapping where the CPU cannot flush, or `Sim` without the
    /// `sim` feature).
    ModeUnavailable {
        /// The mode asked for.
        mode: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
    /// The environment variable `PMEM_MODE` or `PMEM_IS_PMEM_FORCE` holds a
    /// value this library does not understand.
    BadEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// An offset/length pair falls outside the pool.
    OutOfBounds {
        /// Offset asked for.
        offset: u64,
        /// Length asked for.
        len: u64,
        /// Pool size.
        pool_size: u64,
    },
    /// The pool was opened read-only and a write was attempted.
    ReadOnly,
    /// A lane's log has no room for another entry.
    LogFull {
        /// Bytes the entry needs.
        needed: u64,
        /// Bytes left in the log.
        available: u64,
    },
    /// A lane holds a checksum-valid log entry that aims outside the heap
    /// and state block: the pool is damaged or was written by a foreign
    /// program. Recovery refuses to apply it.
    LaneDamaged {
        /// The lane.
        lane: u32,
    },
    /// `msync` failed: the data may not be durable.
    Msync(io::Error),
    /// Any other I/O failure, with what was being done.
    Io {
        /// What was being done ("mapping /pools/a.pool").
        context: String,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotFound { path } => write!(f, "{}: no such pool file", path.display()),
            Error::PermissionDenied { path, write } => write!(
                f,
                "{}: permission denied ({} access); check the file's owner and mode, or open read-only",
                path.display(),
                if *write { "read-write" } else { "read" }
            ),
            Error::AlreadyExists { path } => write!(
                f,
                "{}: a file already exists there; remove it or choose another path",
                path.display()
            ),
            Error::Locked { path } => write!(
                f,
                "{}: pool is already open in another process (or another handle of this one); close it first",
                path.display()
            ),
            Error::TooSmall { path, size, min } => write!(
                f,
                "{}: file is {size} bytes, smaller than the smallest pool ({min} bytes); it is not a pool",
                path.display()
            ),
            Error::NotAPool { path, hint } => {
                write!(f, "{}: not a pmem-obj pool (bad magic)", path.display())?;
                if let Some(h) = hint {
                    write!(f, "; {h}")?;
                }
                Ok(())
            }
            Error::WrongLayout {
                path,
                found,
                expected,
            } => write!(
                f,
                "{}: pool layout is '{found}', expected '{expected}'",
                path.display()
            ),
            Error::InvalidLayout { reason } => write!(f, "invalid layout name: {reason}"),
            Error::UnsupportedVersion {
                path,
                found,
                supported,
                unknown_incompat,
            } => {
                if found < supported {
                    return write!(
                        f,
                        "{}: pool format version {found} was written by an older pmem-obj \
                         (this library reads only version {supported}); open it with the \
                         release that created it",
                        path.display()
                    );
                }
                write!(
                    f,
                    "{}: pool format version {found} (this library reads only version {supported})",
                    path.display()
                )?;
                if *unknown_incompat != 0 {
                    write!(f, ", unknown incompatible features {unknown_incompat:#x}")?;
                }
                write!(f, "; open it with a newer pmem-obj")
            }
            Error::ReadOnlyFeatures {
                path,
                unknown_ro_compat,
            } => write!(
                f,
                "{}: pool uses features {unknown_ro_compat:#x} this library can only read; open it read-only",
                path.display()
            ),
            Error::ChecksumMismatch {
                path,
                which,
                stored,
                computed,
                backup_ok,
            } => {
                write!(
                    f,
                    "{}: {which} header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})",
                    path.display()
                )?;
                if *backup_ok {
                    write!(f, "; the backup header is intact: run `pmem repair`")
                } else {
                    write!(f, "; the backup header is damaged too")
                }
            }
            Error::BadHeader {
                path,
                which,
                reason,
            } => write!(
                f,
                "{}: {which} header is invalid: {reason}; run `pmem check` and `pmem repair`",
                path.display()
            ),
            Error::Truncated {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{}: file is {actual} bytes but the pool header says {expected}; the file was truncated",
                path.display()
            ),
            Error::InvalidSize { size, reason } => write!(f, "invalid pool size {size}: {reason}"),
            Error::ModeUnavailable { mode, reason } => {
                write!(f, "persistence mode {mode} is not available: {reason}")
            }
            Error::BadEnv { var, value } => write!(
                f,
                "environment variable {var}={value:?} is not understood (PMEM_MODE: pmem|eadr|msync|sim; PMEM_IS_PMEM_FORCE: 0|1)"
            ),
            Error::OutOfBounds {
                offset,
                len,
                pool_size,
            } => write!(
                f,
                "range {offset:#x}+{len:#x} lies outside the pool ({pool_size:#x} bytes)"
            ),
            Error::ReadOnly => write!(f, "pool is open read-only"),
            Error::LogFull { needed, available } => write!(
                f,
                "transaction log full: the next entry needs {needed} bytes, {available} are left; split the transaction or create the pool with larger lanes"
            ),
            Error::LaneDamaged { lane } => write!(
                f,
                "lane {lane} holds a log entry that points outside the heap: the pool is damaged; run `pmem check` and do not trust its contents"
            ),
            Error::Msync(e) => write!(f, "msync failed, data may not be durable: {e}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Msync(e) | Error::Io { source: e, .. } => Some(e),
            _ => None,
        }
    }
}
