//! `pmem-alloc`: the persistent heap of a pmem-obj pool.
//!
//! It owns the heap region of a pool (see `FORMAT.md`, "Heap"): the heap
//! header, the chunk headers, runs of same-size blocks with their bitmaps,
//! huge allocations as spans of whole chunks, and the 16-byte allocation
//! header (size and type number) before every object. It keeps volatile
//! state (free chunks, runs with free blocks, per-thread arenas) rebuilt
//! from the persistent metadata at every open.
//!
//! It never changes persistent metadata by itself: [`Heap::reserve`] is
//! volatile only, and publishing or freeing produces [`RedoOp`]s that the
//! transaction layer writes to a lane's redo log and applies after the
//! commit record is durable. It knows nothing of transactions or user
//! types.
//!
//! # Invariants
//! - A block is allocated iff its run's bitmap bit (or its huge span's chunk
//!   header) says so in persistent memory.
//! - A reserved block is handed to at most one reservation, and is neither
//!   free nor allocated in persistent memory until its publish ops apply.
//! - A freed block becomes reservable again only after
//!   [`Heap::after_commit`], i.e. after the free's redo log was applied and
//!   invalidated, so re-applying a committed redo log in recovery can never
//!   clear the bit of a block that was handed out again.
//!
//! # Unsafe boundary
//! `unsafe` is denied at the crate root and allowed only in `media` (access
//! to the live mapping through the pool's persister: atomic metadata words,
//! header copies), and in the `unsafe fn`s [`Heap::open`] and
//! [`Heap::write_header`] whose contracts it relies on.
#![deny(unsafe_code)]

pub mod arena;
#[allow(unsafe_code)]
mod check;
mod chunkmap;
pub mod class;
mod error;
#[allow(unsafe_code)]
mod heap;
pub mod layout;
#[allow(unsafe_code)]
mod media;
#[allow(unsafe_code)]
mod rebuild;
pub mod run;
pub mod sync;

pub use check::{HeapReport, check_bytes};
pub use error::{Error, Result};
pub use heap::{AllocInfo, ClassStats, FreeTicket, Heap, HeapRegion, HeapStats, Reservation};
pub use media::{apply_ops, apply_ops_nodrain, apply_ops_unflushed};

/// One persistent metadata change, applied from a redo log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedoOp {
    /// Store `val` at pool offset `off` (8-aligned).
    Set64 {
        /// Pool offset.
        off: u64,
        /// Value.
        val: u64,
    },
    /// OR `mask` into the u64 at `off`.
    Or64 {
        /// Pool offset.
        off: u64,
        /// Bits to set.
        mask: u64,
    },
    /// Clear `mask`'s bits in the u64 at `off`.
    AndNot64 {
        /// Pool offset.
        off: u64,
        /// Bits to clear.
        mask: u64,
    },
}

impl RedoOp {
    /// The pool offset of the word the op changes.
    pub fn off(&self) -> u64 {
        match *self {
            RedoOp::Set64 { off, .. } | RedoOp::Or64 { off, .. } | RedoOp::AndNot64 { off, .. } => {
                off
            }
        }
    }
}
