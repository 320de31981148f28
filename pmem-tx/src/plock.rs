//! Persistent locks: [`PMutex<T>`] and [`PRwLock<T>`] live in the pool
//! beside the data they protect, as libpmemobj's `PMEMmutex` and
//! `PMEMrwlock`; [`Tx::lock`] (and [`Tx::read_lock`], [`Tx::write_lock`])
//! holds one until the transaction ends, and [`Pool::lock`] (and
//! [`Pool::read_lock`], [`Pool::write_lock`]) gives a guard outside
//! transactions.
//!
//! # What they are for
//! Every access to pool bytes from safe code already takes range locks
//! (`locks.rs`), so a `PMutex` is not needed for memory safety. It is the
//! caller's isolation tool: a critical section spanning several objects,
//! or a read-decide-write that would otherwise fail with
//! [`Error::Conflict`] when two transactions read the same bytes and then
//! both try to write them. The protected data is still read and written
//! with [`Tx::get`]/[`Tx::get_mut`] through the pointer `lock` returns.
//!
//! # Layout
//! `#[repr(C, packed(64))]`: a 64-byte reserved header (zero; PMDK's
//! `PMEMmutex` is 64 bytes too, and it keeps room for future use) followed
//! by `T` at offset 64. `packed(64)` caps the alignment at 64 so that no
//! padding can ever appear (which makes the `Pod` impls sound for every
//! `T: Pod`); a `T` aligned to more than 64 is accepted but its data is
//! then only 64-aligned, and [`Tx::get`] reports a misaligned pointer to
//! it as [`Error::BadPointer`]. An all-zero `PMutex` is an unlocked one
//! holding a zeroed `T`.
//!
//! # The lock state is volatile
//! Nothing is ever written into the header: the state of every persistent
//! lock lives in a table of the open [`Pool`] ([`table::LockTable`], keyed
//! by the pool offset of the lock object), created empty at every open.
//! So no lock held by a process that crashed or exited survives into the
//! next open: this is the "reset on open" libpmemobj does by comparing a
//! run id stored in each lock with the pool's, achieved without a run id
//! and without writing lock words into persistent memory. Writing them
//! would race with safe code that writes the same bytes under range locks
//! (a `PMutex` is plain `Pod` data inside a transaction-written object),
//! and would cost a flush per lock operation.
//!
//! # Semantics
//! - Blocking, up to the pool's lock timeout ([`Pool::set_lock_timeout`]),
//!   then [`Error::Conflict`]; this also breaks deadlocks between
//!   transactions that lock in opposite orders.
//! - A lock taken by a transaction is held until the outermost transaction
//!   ends, by commit, error, abort or panic; nested transactions share it.
//!   Locking again what the transaction holds is a no-op; `write_lock` on a
//!   `PRwLock` it holds shared upgrades it (waiting for other readers).
//! - A `PRwLock` prefers writers: once a writer waits, new readers wait.
//! - The table does not know threads: a guard from [`Pool::lock`] alive on
//!   a thread makes that thread's own `tx.lock` of the same mutex wait and
//!   fail with `Conflict`, as any other holder would.

pub(crate) mod primitive;
pub mod table;

use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::ptr::{PPtr, Persistent};
use crate::tx::Tx;
use table::LockMode;

/// Size of the reserved header before the protected data.
pub const PLOCK_HEADER: usize = 64;

macro_rules! plock_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[repr(C, packed(64))]
        pub struct $name<T> {
            /// Reserved, zero: the lock state is volatile (module doc).
            reserved: [u8; PLOCK_HEADER],
            data: T,
        }

        impl<T: Persistent> $name<T> {
            /// Byte offset of the protected data inside the object.
            pub const DATA_OFFSET: u64 = PLOCK_HEADER as u64;

            /// An (unlocked) lock object holding `value`; write it into the
            /// pool with [`Tx::write`].
            pub fn new(value: T) -> Self {
                $name {
                    reserved: [0; PLOCK_HEADER],
                    data: value,
                }
            }

            /// The protected value (by copy: the struct may be packed).
            pub fn into_inner(self) -> T {
                self.data
            }
        }

        impl<T: Copy> Clone for $name<T> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<T: Copy> Copy for $name<T> {}

        impl<T> std::fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), " { .. }"))
            }
        }

        // SAFETY: `#[repr(C, packed(64))]` of a byte array and a `T: Pod`;
        // all-zero bytes are a valid `T` (Pod implies Zeroable) and a zero
        // header, i.e. an unlocked lock (its state is not in the bytes).
        unsafe impl<T: bytemuck::Pod> bytemuck::Zeroable for $name<T> {}
        // SAFETY: no padding for any `T`: the header is 64 bytes of align
        // 1; `packed(64)` caps `T`'s alignment at `min(align(T), 64)`, which
        // divides both 64 (so `T` starts right after the header) and
        // `size_of::<T>()` (so nothing trails it). Every field is Pod, so
        // every bit pattern is valid; `T: Pod` makes it Copy and 'static.
        unsafe impl<T: bytemuck::Pod> bytemuck::Pod for $name<T> {}
    };
}

plock_type!(
    /// A mutex stored in the pool, protecting the `T` after it. Lock it
    /// with [`Tx::lock`] (held to the end of the transaction) or
    /// [`Pool::lock`] (a guard). Its state is volatile: it is unlocked at
    /// every open, whatever the previous process did (module doc).
    PMutex
);

plock_type!(
    /// A reader/writer lock stored in the pool, protecting the `T` after
    /// it: [`Tx::read_lock`]/[`Tx::write_lock`], or the guards of
    /// [`Pool::read_lock`]/[`Pool::write_lock`]. Unlocked at every open.
    PRwLock
);

static_assertions::assert_eq_size!(PMutex<u64>, [u8; 72]);
static_assertions::assert_eq_size!(PRwLock<[u64; 8]>, [u8; 128]);
static_assertions::assert_eq_size!(PMutex<u8>, [u8; 65]);
const _: () = assert!(align_of::<PMutex<u64>>() == 8);
const _: () = assert!(std::mem::offset_of!(PMutex<u32>, data) == PLOCK_HEADER);

/// The persistent locks one transaction holds (in `tx.rs`'s shared state).
#[derive(Default, Debug)]
pub(crate) struct Held(Vec<(u64, LockMode)>);

impl Held {
    /// Whether it holds none.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Releases every lock held, in the pool's table.
    pub(crate) fn release_all(&mut self, pool: &Pool) {
        for (key, mode) in self.0.drain(..).rev() {
            pool.plocks.unlock(key, mode);
        }
    }
}

/// Takes `key` in `mode` for the transaction whose held set is `held`.
fn tx_acquire(pool: &Pool, held: &mut Held, key: u64, mode: LockMode) -> Result<()> {
    let conflict = Error::Conflict { offset: key };
    match held.0.iter_mut().find(|(k, _)| *k == key) {
        Some((_, LockMode::Exclusive)) => Ok(()),
        Some((_, LockMode::Shared)) if mode == LockMode::Shared => Ok(()),
        Some((_, m)) => {
            if !pool.plocks.upgrade(key) {
                return Err(conflict);
            }
            *m = LockMode::Exclusive;
            Ok(())
        }
        None => {
            if !pool.plocks.lock(key, mode) {
                return Err(conflict);
            }
            held.0.push((key, mode));
            Ok(())
        }
    }
}

impl Tx<'_> {
    fn plock<L, T>(&self, l: PPtr<L>, mode: LockMode) -> Result<PPtr<T>> {
        let key = self.pool().check_typed(l)?;
        let mut held = self.plocks()?;
        tx_acquire(self.pool(), &mut held, key, mode)?;
        Ok(PPtr::from_raw(l.pool_id(), key + PLOCK_HEADER as u64))
    }

    /// Locks the mutex at `m` until this transaction ends (commit or
    /// abort; the outermost one, when nested) and returns a pointer to the
    /// data it protects. Waits up to the pool's lock timeout, then fails
    /// with [`Error::Conflict`]. Locking a mutex this transaction already
    /// holds is a no-op.
    ///
    /// ```
    /// # fn main() -> Result<(), pmem_tx::Error> {
    /// use pmem_tx::{PMutex, Pool};
    /// let dir = tempfile::tempdir().unwrap();
    /// let pool = Pool::create(dir.path().join("m.pool"), "m", 8 << 20)?;
    /// let m = pool.root::<PMutex<u64>>()?;
    /// pool.transaction(|tx| {
    ///     let n = tx.lock(m)?;
    ///     let v = tx.read(n)?;
    ///     tx.write(n, v + 1)
    /// })?;
    /// let g = pool.lock(m)?;
    /// assert_eq!(pool.read(g.ptr())?, 1);
    /// # Ok(()) }
    /// ```
    pub fn lock<T: Persistent>(&self, m: PPtr<PMutex<T>>) -> Result<PPtr<T>> {
        self.plock(m, LockMode::Exclusive)
    }

    /// Locks the reader/writer lock at `l` shared until this transaction
    /// ends; as [`lock`](Self::lock).
    pub fn read_lock<T: Persistent>(&self, l: PPtr<PRwLock<T>>) -> Result<PPtr<T>> {
        self.plock(l, LockMode::Shared)
    }

    /// Locks the reader/writer lock at `l` exclusively until this
    /// transaction ends; as [`lock`](Self::lock). If the transaction holds
    /// it shared, upgrades it, waiting for the other readers to leave (two
    /// transactions upgrading the same lock wait for each other until one
    /// fails with [`Error::Conflict`]).
    pub fn write_lock<T: Persistent>(&self, l: PPtr<PRwLock<T>>) -> Result<PPtr<T>> {
        self.plock(l, LockMode::Exclusive)
    }
}

macro_rules! guard_type {
    ($(#[$doc:meta])* $name:ident, $mode:expr) => {
        $(#[$doc])*
        #[must_use = "the lock is released when the guard is dropped"]
        pub struct $name<'p, T> {
            pool: &'p Pool,
            key: u64,
            data: PPtr<T>,
        }

        impl<T> $name<'_, T> {
            /// Pointer to the protected data (read it with
            /// [`Pool::read`], write it in a transaction).
            pub fn ptr(&self) -> PPtr<T> {
                self.data
            }
        }

        impl<T> Drop for $name<'_, T> {
            fn drop(&mut self) {
                self.pool.plocks.unlock(self.key, $mode);
            }
        }

        impl<T> std::fmt::Debug for $name<'_, T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("lock", &format_args!("{:#x}", self.key))
                    .finish()
            }
        }
    };
}

guard_type!(
    /// A [`PMutex`] locked by [`Pool::lock`]; unlocks on drop.
    PMutexGuard,
    LockMode::Exclusive
);
guard_type!(
    /// A [`PRwLock`] locked shared by [`Pool::read_lock`]; unlocks on drop.
    PReadGuard,
    LockMode::Shared
);
guard_type!(
    /// A [`PRwLock`] locked exclusively by [`Pool::write_lock`]; unlocks on
    /// drop.
    PWriteGuard,
    LockMode::Exclusive
);

impl Pool {
    /// Checks `l` and takes it in `mode`, waiting up to the timeout or not
    /// at all: the data pointer, or `None` if the lock was not taken.
    fn plock<L, T>(&self, l: PPtr<L>, mode: LockMode, wait: bool) -> Result<Option<PPtr<T>>> {
        let key = self.check_typed(l)?;
        let ok = if wait {
            self.plocks.lock(key, mode)
        } else {
            self.plocks.try_lock(key, mode)
        };
        Ok(ok.then(|| PPtr::from_raw(l.pool_id(), key + PLOCK_HEADER as u64)))
    }

    /// As [`plock`](Self::plock), waiting: `Conflict` when it times out.
    fn plock_wait<L, T>(&self, l: PPtr<L>, mode: LockMode) -> Result<(u64, PPtr<T>)> {
        match self.plock(l, mode, true)? {
            Some(data) => Ok((l.offset(), data)),
            None => Err(Error::Conflict { offset: l.offset() }),
        }
    }

    /// Locks the mutex at `m` outside a transaction, waiting up to the
    /// lock timeout ([`Error::Conflict`] then); unlocked when the guard
    /// drops. Transactions run while it is held do not own it: hold it
    /// across them, or lock inside them with [`Tx::lock`].
    pub fn lock<T: Persistent>(&self, m: PPtr<PMutex<T>>) -> Result<PMutexGuard<'_, T>> {
        let (key, data) = self.plock_wait(m, LockMode::Exclusive)?;
        Ok(PMutexGuard {
            pool: self,
            key,
            data,
        })
    }

    /// Locks the mutex at `m` if that needs no wait; `Ok(None)` if another
    /// holds it (libpmemobj's `pmemobj_mutex_trylock`).
    pub fn try_lock<T: Persistent>(
        &self,
        m: PPtr<PMutex<T>>,
    ) -> Result<Option<PMutexGuard<'_, T>>> {
        Ok(self
            .plock(m, LockMode::Exclusive, false)?
            .map(|data| PMutexGuard {
                pool: self,
                key: m.offset(),
                data,
            }))
    }

    /// Locks the reader/writer lock at `l` shared, as [`lock`](Self::lock).
    pub fn read_lock<T: Persistent>(&self, l: PPtr<PRwLock<T>>) -> Result<PReadGuard<'_, T>> {
        let (key, data) = self.plock_wait(l, LockMode::Shared)?;
        Ok(PReadGuard {
            pool: self,
            key,
            data,
        })
    }

    /// Locks the reader/writer lock at `l` exclusively, as
    /// [`lock`](Self::lock).
    pub fn write_lock<T: Persistent>(&self, l: PPtr<PRwLock<T>>) -> Result<PWriteGuard<'_, T>> {
        let (key, data) = self.plock_wait(l, LockMode::Exclusive)?;
        Ok(PWriteGuard {
            pool: self,
            key,
            data,
        })
    }
}
