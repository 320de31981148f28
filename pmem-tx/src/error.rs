//! The error type of `pmem-tx`.

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the object and transaction layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The pool layer failed (open, mapping, msync, log full...).
    Pool(pmem_pool::Error),
    /// The heap failed: pool full, double free, corrupt metadata.
    Alloc(pmem_alloc::Error),
    /// A null [`PPtr`](crate::PPtr) was dereferenced.
    Null,
    /// A pointer made for another pool was used with this one.
    WrongPool {
        /// Pool id the pointer carries.
        found: u64,
        /// This pool's id.
        expected: u64,
    },
    /// A pointer does not designate a whole, aligned object inside the heap.
    BadPointer {
        /// Pool offset of the pointer.
        offset: u64,
        /// Size of the pointed-to type.
        size: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The root object exists with another size than the type asked for.
    RootSize {
        /// Size stored in the pool.
        stored: u64,
        /// Size of the type asked for.
        requested: u64,
    },
    /// The bytes are locked by another transaction (or by a `PRef` alive
    /// on this thread) and did not become free in time. The transaction
    /// has been rolled back; it may simply be retried.
    Conflict {
        /// Pool offset of the contended range.
        offset: u64,
    },
    /// The transaction was aborted (by [`Tx::abort`](crate::Tx::abort) or
    /// by a nested transaction that failed) and its changes rolled back.
    Aborted,
    /// A nested transaction was started while a reference obtained from
    /// the outer one was still alive; drop it first.
    BorrowedAcrossNested,
    /// A write and a read view ([`Pool::view`](crate::Pool::view)) could
    /// not both proceed. With `this_thread`, the thread holds a view of the
    /// pool and tried to write to it (or opened a view inside its own
    /// writing transaction), which would wait for itself: drop the view
    /// first. Otherwise one waited for the other past the lock timeout;
    /// a transaction that fails so has been rolled back and may be retried.
    ViewConflict {
        /// The conflict is with this thread's own view or transaction.
        this_thread: bool,
    },
    /// A read-only open found lanes holding interrupted transactions;
    /// open the pool read-write once so that recovery can run.
    NeedsRecovery {
        /// The lanes with pending logs.
        lanes: Vec<u32>,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Pool(e) => e.fmt(f),
            Error::Alloc(e) => e.fmt(f),
            Error::Null => write!(f, "null persistent pointer dereferenced"),
            Error::WrongPool { found, expected } => write!(
                f,
                "pointer belongs to pool {found:#018x}, not to this pool ({expected:#018x})"
            ),
            Error::BadPointer {
                offset,
                size,
                reason,
            } => write!(
                f,
                "pointer {offset:#x} to a {size}-byte object is invalid: {reason}"
            ),
            Error::RootSize { stored, requested } => write!(
                f,
                "the root object is {stored} bytes but {requested} were asked for; open the pool with the type it was created with"
            ),
            Error::Conflict { offset } => write!(
                f,
                "bytes at {offset:#x} are locked by another transaction (or a PRef alive on this thread); the transaction was rolled back and may be retried"
            ),
            Error::Aborted => write!(f, "transaction aborted; its changes were rolled back"),
            Error::BorrowedAcrossNested => write!(
                f,
                "a nested transaction was started while a reference from the outer transaction was alive"
            ),
            Error::ViewConflict { this_thread: true } => write!(
                f,
                "this thread holds a read view of the pool and wrote to it (or opened the view inside its own writing transaction); drop the view before writing"
            ),
            Error::ViewConflict { this_thread: false } => write!(
                f,
                "a read view of the pool and a transaction waited for each other past the lock timeout; the transaction was rolled back and may be retried"
            ),
            Error::NeedsRecovery { lanes } => write!(
                f,
                "{} lane(s) hold interrupted transactions (first: {}); open the pool read-write once to recover it",
                lanes.len(),
                lanes.first().copied().unwrap_or(0)
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Pool(e) => Some(e),
            Error::Alloc(e) => Some(e),
            _ => None,
        }
    }
}

impl From<pmem_alloc::Error> for Error {
    fn from(e: pmem_alloc::Error) -> Self {
        match e {
            pmem_alloc::Error::Pool(p) => Error::Pool(p),
            e => Error::Alloc(e),
        }
    }
}

impl From<pmem_pool::Error> for Error {
    fn from(e: pmem_pool::Error) -> Self {
        Error::Pool(e)
    }
}
