//! Read views: lock-free reads of a pool while no transaction writes.
//!
//! Every other read checks that its pointer designates one object's data
//! (a heap-map lookup) and takes the range locks of `locks.rs` (two locked
//! instructions and a miss into the lock table). Walking a linked
//! structure is a chain of cache misses, and that much code between them
//! keeps the processor from overlapping the misses of consecutive walks.
//! A [`View`] instead excludes writers from the whole pool for as long as
//! it lives, so that a read through it is a bounds check and a load, as
//! `pmemobj_direct` is.
//!
//! # Protocol
//! Every write to pool memory happens under a lane: a transaction takes
//! one before it locks anything exclusively, reserves a block (whose
//! header it writes), or commits. The lane set doubles as the gate
//! (`pmem_pool::lane_set`): opening a view raises its view count and waits
//! until no lane is held; a transaction that takes a lane while a view is
//! open gives it back and waits until every view is closed. A transaction
//! that has to wait holds no exclusive stripe yet (it takes them only with
//! a lane), so waiting never deadlocks with the view's holder, unless that
//! holder waits for the transaction itself: then the writer gives up at the
//! pool's lock timeout with [`Error::ViewConflict`] and rolls back.
//!
//! Views are shared with each other and with every other reader; they
//! starve writers for as long as some view is open, by design.

use crate::error::{Error, Result};
use crate::locks::backoff;
use crate::pool::Pool;
use crate::ptr::{PPtr, Persistent};
use std::cell::RefCell;
use std::marker::PhantomData;
use std::time::Duration;

thread_local! {
    /// Pools (by instance) this thread holds views of, once per view: a
    /// write on such a pool would wait for the thread itself.
    static HELD: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Whether this thread holds a view of pool `instance`.
pub(crate) fn held_here(instance: u64) -> bool {
    HELD.with(|h| h.borrow().contains(&instance))
}

/// Waits until `done` holds or `timeout` passes ([`backoff`]); returns
/// whether it held.
pub(crate) fn wait_until(timeout: Duration, done: impl Fn() -> bool) -> bool {
    backoff(256, timeout, |_| done())
}

/// A read-only view of a whole pool, from [`Pool::view`]: while it lives,
/// no transaction writes to the pool (they wait), so reads through it take
/// no lock and references into the pool stay valid for the view's life.
///
/// Use it for read-mostly phases: lookups, scans, checks, exports. Writers
/// (transactions and the atomic `alloc_into`/`free_from`) wait until every
/// view is dropped, and fail with [`Error::ViewConflict`] after the pool's
/// lock timeout ([`Pool::set_lock_timeout`]); a thread that holds a view
/// and writes to the same pool fails at once with the same error.
///
/// A view is tied to the thread that opened it (it is neither `Send` nor
/// `Sync`); other threads open their own, and views share the pool with
/// each other and with every other reader.
///
/// ```
/// # fn main() -> Result<(), pmem_tx::Error> {
/// use pmem_tx::Pool;
/// let dir = tempfile::tempdir().unwrap();
/// let pool = Pool::create(dir.path().join("view.pool"), "doc", 8 << 20)?;
/// let root = pool.root::<[u64; 4]>()?;
/// pool.transaction(|tx| tx.write(root, [1, 2, 3, 4]))?;
/// let view = pool.view()?;
/// let r: &[u64; 4] = view.get(root)?;
/// assert_eq!(r.iter().sum::<u64>(), 10);
/// # Ok(())
/// # }
/// ```
pub struct View<'p> {
    pool: &'p Pool,
    /// Copies of the pool's id, heap start, size and base, so that a read
    /// is a few compares on values already in registers.
    id: u64,
    heap: u64,
    end: u64,
    base: *const u8,
    /// Not `Send`: the thread-local record of held views must be cleared
    /// by the thread that made it. (`base` already makes it so.)
    _thread: PhantomData<*const ()>,
}

impl Pool {
    /// Opens a [`View`]: waits until the transactions that hold lanes have
    /// ended (new ones wait for the view), then returns a view through
    /// which reads take no lock.
    ///
    /// # Errors
    /// [`Error::ViewConflict`] if this thread is inside a transaction on
    /// this pool that has already written (it would wait for itself), or if
    /// running transactions did not end within the lock timeout.
    pub fn view(&self) -> Result<View<'_>> {
        if crate::tx::writing_here(self.instance) {
            return Err(Error::ViewConflict { this_thread: true });
        }
        self.lanes.open_view();
        // Parked lanes stay held until a drain bumps them: this one, if
        // no writer comes (new writers wait for the view).
        let idle = || {
            let _ = self
                .inval
                .unpark_all(self.raw.persister(), &self.layout, &self.lanes);
            self.lanes.idle()
        };
        if !wait_until(self.locks.timeout(), idle) {
            self.lanes.close_view();
            return Err(Error::ViewConflict { this_thread: false });
        }
        HELD.with(|h| h.borrow_mut().push(self.instance));
        Ok(View {
            pool: self,
            id: self.id,
            heap: self.raw.header().heap_offset,
            end: self.raw.size(),
            base: self.raw.base(),
            _thread: PhantomData,
        })
    }
}

impl<'p> View<'p> {
    /// The pool this view is of.
    pub fn pool(&self) -> &'p Pool {
        self.pool
    }

    /// A reference to the object at `p`, valid while the view lives.
    ///
    /// The pointer is checked to be this pool's, non-null, inside the heap
    /// and aligned for `T`, which is all memory safety needs while nothing
    /// writes. Unlike [`Pool::get`], it is not checked to lie inside one
    /// object's data: that check costs a heap-map lookup per read, which
    /// is most of a lookup's time in a linked structure. A wrong pointer
    /// into the heap therefore reads arbitrary bytes (a valid `T`, since
    /// `T` is plain data) instead of failing; use [`Pool::get`] or
    /// [`Pool::alloc_info`] where pointers come from untrusted bytes.
    ///
    /// # Errors
    /// [`Error::Null`], [`Error::WrongPool`], or [`Error::BadPointer`]
    /// when the object would lie outside the heap or be misaligned.
    #[inline(always)]
    pub fn get<T: Persistent>(&self, p: PPtr<T>) -> Result<&T> {
        let (off, len) = (p.offset(), size_of::<T>() as u64);
        // `len <= end - heap` for every `T` that fits in the heap at all;
        // a larger one fails `off <= end - len` through the wrap-free
        // `saturating_sub`.
        if self.in_heap(p.pool_id(), off, len) && off.is_multiple_of(align_of::<T>() as u64) {
            // SAFETY: `off..off + len` lies inside the heap, so inside the
            // live mapping (`end` is its size), and is aligned for `T`;
            // `T` is plain data, so any bytes are a valid `T`. While this
            // view lives no lane is held by anyone (`Pool::view` waited for
            // that, and writers give a lane back while a view is open), and
            // every write to pool memory happens under a lane, so nothing
            // writes these bytes until the view, and with it the returned
            // borrow, is gone.
            return Ok(unsafe { &*(self.base.add(off as usize) as *const T) });
        }
        Err(self.refuse(p.cast(), len, align_of::<T>() as u64))
    }

    /// Whether a pointer of pool `id` to `off..off + len` is this pool's
    /// and lies inside its heap.
    #[inline(always)]
    fn in_heap(&self, id: u64, off: u64, len: u64) -> bool {
        id == self.id && off >= self.heap && off <= self.end.saturating_sub(len)
    }

    /// The error for a pointer `get` refused.
    #[cold]
    #[inline(never)]
    fn refuse(&self, p: PPtr<()>, len: u64, align: u64) -> Error {
        let off = match self.pool.own(p) {
            Ok(off) => off,
            Err(e) => return e,
        };
        let reason = if !off.is_multiple_of(align) {
            "misaligned for its type"
        } else {
            "outside the heap"
        };
        Error::BadPointer {
            offset: off,
            size: len,
            reason,
        }
    }

    /// Copies the object at `p` out of the pool.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    #[inline]
    pub fn read<T: Persistent>(&self, p: PPtr<T>) -> Result<T> {
        self.get(p).copied()
    }

    /// The `len` bytes at `p`, valid while the view lives (checked as in
    /// [`get`](Self::get)).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn bytes(&self, p: PPtr<u8>, len: u64) -> Result<&[u8]> {
        let off = p.offset();
        if !self.in_heap(p.pool_id(), off, len) {
            return Err(self.refuse(p.cast(), len, 1));
        }
        // SAFETY: as in `get`: inside the heap, no writer while the view
        // lives; `u8` has no alignment or validity needs.
        Ok(unsafe { std::slice::from_raw_parts(self.base.add(off as usize), len as usize) })
    }
}

impl Drop for View<'_> {
    fn drop(&mut self) {
        let instance = self.pool.instance;
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.iter().rposition(|&x| x == instance) {
                h.swap_remove(i);
            }
        });
        self.pool.lanes.close_view();
    }
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("pool", &self.pool.id).finish()
    }
}
