//! The error type of `pmem-alloc`.

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the heap.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No free space for the request.
    OutOfSpace {
        /// Bytes asked for.
        requested: u64,
        /// Largest contiguous free span, in bytes.
        largest_free: u64,
    },
    /// A request larger than any heap could hold.
    TooLarge {
        /// Bytes asked for.
        requested: u64,
        /// Largest possible allocation.
        max: u64,
    },
    /// An offset given to free/usable_size is not the start of an allocated
    /// object.
    NotAllocated {
        /// Pool offset.
        off: u64,
    },
    /// The heap metadata is inconsistent (checked at open or by `check`).
    Corrupt {
        /// What is wrong.
        reason: String,
    },
    /// The pool layer failed.
    Pool(pmem_pool::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::OutOfSpace {
                requested,
                largest_free,
            } => write!(
                f,
                "pool is full: {requested} bytes requested, the largest free span is {largest_free} bytes; free objects or create a larger pool"
            ),
            Error::TooLarge { requested, max } => write!(
                f,
                "allocation of {requested} bytes is larger than the largest possible ({max} bytes)"
            ),
            Error::NotAllocated { off } => {
                write!(f, "{off:#x} is not the start of an allocated object")
            }
            Error::Corrupt { reason } => write!(
                f,
                "heap metadata is inconsistent: {reason}; run `pmem check`"
            ),
            Error::Pool(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Pool(e) => Some(e),
            _ => None,
        }
    }
}

impl From<pmem_pool::Error> for Error {
    fn from(e: pmem_pool::Error) -> Self {
        Error::Pool(e)
    }
}
