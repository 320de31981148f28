//! `pmem-tx`: transactions over a pmem-obj pool, and the typed API.
//!
//! It owns the undo-log transaction protocol (snapshot, commit point,
//! rollback, nesting), recovery at open (through `pmem-pool`'s lanes), the
//! root object, typed pool-relative pointers ([`PPtr`]) and the
//! [`Persistent`] bound, and the range lock table that keeps safe code
//! sound when threads share a pool.
//!
//! # Invariants
//! - A byte of the heap changes inside a transaction only after its old
//!   content is durable in the transaction's undo log, or it was declared
//!   fresh, or (a deferred `Tx::write`, the heap's metadata) only after
//!   the commit record holding its new value is durable; and only while
//!   the transaction holds its stripe exclusively.
//! - A transaction's changes are durable together with its commit point
//!   (a commit record that checksums them, or follows them by a fence);
//!   the transaction returns only after it.
//! - Safe code sees pool memory only through guards (`PRef`, `TxRef`,
//!   `TxMut`) whose bytes are locked, or through a [`View`], which keeps
//!   every writer out of the pool while it lives; so a `&T` never coexists
//!   with a `&mut T` to the same bytes and threads never race on them.
//!
//! # Unsafe boundary
//! `unsafe` is denied at the crate root and allowed in `pool` (resolving a
//! checked pointer into the mapping), `view` (the same, under the view's
//! exclusion of writers), `tx` (guards, snapshots, rollback),
//! `ptr` (the `Pod` impls of `PPtr`) and `plock` (the `Pod` impls of
//! `PMutex`/`PRwLock`). `UNSAFE.md` explains the discipline.
#![deny(unsafe_code)]

mod error;
mod invalidate;
mod locks;
#[allow(unsafe_code)]
mod plock;
#[allow(unsafe_code)]
mod pool;
#[allow(unsafe_code)]
mod ptr;
#[allow(unsafe_code)]
mod tx;
#[allow(unsafe_code)]
mod view;

pub use bytemuck;
pub use error::{Error, Result};
#[cfg(loom)]
#[doc(hidden)]
pub use invalidate::{Invalidation, ParkedInfo};
#[cfg(loom)]
#[doc(hidden)]
pub use plock::table::{LockMode, LockTable};
pub use plock::{PLOCK_HEADER, PMutex, PMutexGuard, PReadGuard, PRwLock, PWriteGuard};
pub use pmem_alloc::Error as AllocError;
pub use pmem_alloc::{AllocInfo, HeapReport};
pub use pmem_pool::Error as pool_error;
pub use pmem_pool::{Mode, ModeChoice, PoolOptions};
pub use pool::{DEFAULT_LOCK_TIMEOUT, PRef, Pool, ROOT_TYPE_NUM};
pub use ptr::{PPtr, Persistent};
pub use tx::{Flags, Tx, TxMut, TxRef};
pub use view::View;
