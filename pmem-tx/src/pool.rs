//! `Pool`: an open pool with recovery done, lanes, the range lock table,
//! and the typed entry points (root object, reads, transactions).

use crate::error::{Error, Result};
use crate::invalidate::Invalidation;
use crate::locks::{RangeLocks, stripes};
use crate::ptr::{PPtr, Persistent};
use pmem_alloc::{AllocInfo, Heap, HeapRegion};
use pmem_pool::lane::{LaneLayout, LaneState, Recovered};
use pmem_pool::lane_set::LaneSet;
use pmem_pool::{Mode as PersistMode, ModeChoice, PoolOptions, RawPool};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Pool offset of the root object's offset in the state block.
pub(crate) const ROOT_OFFSET_FIELD: u64 = pmem_pool::STATE_OFFSET + 0x10;
/// Pool offset of the root object's size in the state block.
pub(crate) const ROOT_SIZE_FIELD: u64 = pmem_pool::STATE_OFFSET + 0x18;
/// Type number of the root object in its allocation header.
pub const ROOT_TYPE_NUM: u64 = u64::MAX;
/// Default time a transaction waits for bytes another one holds.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_millis(500);

static INSTANCES: AtomicU64 = AtomicU64::new(1);

/// An open pool of persistent objects. `Sync`: share it between threads by
/// reference (or in an `Arc`); each thread runs its own transactions.
///
/// ```
/// use pmem_tx::Pool;
/// # fn main() -> Result<(), pmem_tx::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("counter.pool");
/// {
///     let pool = Pool::create(&path, "counter-v1", 8 << 20)?;
///     let n = pool.root::<u64>()?;
///     pool.transaction(|tx| tx.write(n, 41))?;
///     pool.close()?;
/// }
/// // Reopening recovers any interrupted transaction before returning.
/// let pool = Pool::open(&path, "counter-v1")?;
/// let n = pool.root::<u64>()?;
/// pool.transaction(|tx| {
///     let mut v = tx.get_mut(n)?;
///     *v += 1;
///     Ok::<_, pmem_tx::Error>(())
/// })?;
/// assert_eq!(pool.read(n)?, 42);
/// // Opening with the wrong layout name is a typed error.
/// drop(pool);
/// assert!(Pool::open(&path, "something-else").is_err());
/// # Ok(()) }
/// ```
pub struct Pool {
    pub(crate) raw: RawPool,
    /// The heap (absent on a read-only pool: nothing can be allocated).
    pub(crate) heap: Option<Heap>,
    pub(crate) lanes: LaneSet,
    pub(crate) layout: LaneLayout,
    pub(crate) locks: RangeLocks,
    /// State of the `PMutex`/`PRwLock`s: volatile, empty at every open.
    pub(crate) plocks: crate::plock::table::LockTable,
    pub(crate) id: u64,
    pub(crate) instance: u64,
    recovered: Vec<Recovered>,
    root_lock: Mutex<()>,
    /// Generation bumps stored but not yet fenced (`invalidate.rs`).
    pub(crate) inval: Invalidation,
    /// Commit order: the next commit record's `seq` (recovery re-applies
    /// committed redo logs in this order; every log is stale after it, so
    /// the count restarts at each open).
    pub(crate) seq: AtomicU64,
}

impl Pool {
    /// Creates a pool file of `size` bytes with the given layout name.
    pub fn create(path: impl AsRef<Path>, layout: &str, size: u64) -> Result<Pool> {
        Self::create_with(path, layout, size, &PoolOptions::new())
    }

    /// [`create`](Self::create) with options (mode, prefault, lanes).
    pub fn create_with(
        path: impl AsRef<Path>,
        layout: &str,
        size: u64,
        opts: &PoolOptions,
    ) -> Result<Pool> {
        let raw = RawPool::create(path.as_ref(), layout, size, opts)?;
        Self::from_raw(raw)
    }

    /// Opens a pool, checking its layout name, and recovers interrupted
    /// transactions before returning.
    pub fn open(path: impl AsRef<Path>, layout: &str) -> Result<Pool> {
        Self::open_with(path, Some(layout), &PoolOptions::new())
    }

    /// [`open`](Self::open) with options; `layout` `None` accepts any.
    pub fn open_with(
        path: impl AsRef<Path>,
        layout: Option<&str>,
        opts: &PoolOptions,
    ) -> Result<Pool> {
        let raw = RawPool::open(path.as_ref(), layout, opts)?;
        Self::from_raw(raw)
    }

    /// Wraps an open `RawPool`: recovers every lane (read-write pools), or
    /// refuses a read-only pool whose lanes need recovery.
    pub fn from_raw(raw: RawPool) -> Result<Pool> {
        let layout = LaneLayout::from_header(raw.header());
        let recovered = if raw.is_read_only() {
            // SAFETY: the mapping is live for `raw`'s life and nothing writes
            // to it (read-only); the slice is dropped at the end of the block.
            let bytes = unsafe { std::slice::from_raw_parts(raw.base(), raw.size() as usize) };
            // A committed transaction whose log is only not retired yet
            // (nothing to re-apply: its data is in place and checked) is
            // what every crash leaves behind under lazy invalidation; it
            // needs no recovery to be read.
            let pending: Vec<u32> = (0..layout.count)
                .filter(|&i| {
                    !matches!(
                        pmem_pool::lane::inspect(bytes, &layout, i),
                        LaneState::Idle | LaneState::RedoPending { entries: 0 }
                    )
                })
                .collect();
            if !pending.is_empty() {
                return Err(Error::NeedsRecovery { lanes: pending });
            }
            Vec::new()
        } else {
            // SAFETY: the pool was just opened; nothing else references its
            // mapping yet.
            unsafe { pmem_pool::lane::recover(raw.persister(), &layout)? }
        };
        let heap = if raw.is_read_only() {
            None
        } else {
            let h = raw.header();
            let region = HeapRegion {
                offset: h.heap_offset,
                size: h.heap_size,
            };
            // SAFETY: recovery is done and nothing else references the
            // mapping yet; the heap keeps no reference into it afterwards.
            Some(unsafe { Heap::open(raw.persister(), region)? })
        };
        let uuid = raw.header().uuid;
        let id = u64::from_le_bytes(uuid[..8].try_into().unwrap_or([0; 8])) | 1;
        Ok(Pool {
            lanes: LaneSet::new(layout.count),
            layout,
            locks: RangeLocks::new(DEFAULT_LOCK_TIMEOUT),
            plocks: crate::plock::table::LockTable::new(DEFAULT_LOCK_TIMEOUT),
            id,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            recovered,
            heap,
            root_lock: Mutex::new(()),
            inval: Invalidation::new(layout.count, |lane| {
                // SAFETY: the layout is this pool's; recovery is done and
                // nothing writes the lanes yet.
                unsafe { pmem_pool::lane::generation_at(raw.persister(), &layout, lane) }
            }),
            seq: AtomicU64::new(1),
            raw,
        })
    }

    /// The pool layer underneath (header, persister, mode).
    ///
    /// Writing object bytes through it bypasses the transactions: call
    /// [`settle`](Self::settle) after the last transaction that changed or
    /// allocated them, or a crash may roll that transaction back.
    pub fn raw(&self) -> &RawPool {
        &self.raw
    }

    /// The persistence mode in force.
    pub fn mode(&self) -> PersistMode {
        self.raw.persister().mode()
    }

    /// The mode and why it was chosen.
    pub fn mode_choice(&self) -> &ModeChoice {
        self.raw.mode_choice()
    }

    /// What recovery did at open: one entry per lane that held an
    /// interrupted transaction.
    pub fn recovered(&self) -> &[Recovered] {
        &self.recovered
    }

    /// This pool's id, carried by every [`PPtr`] into it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// How long a transaction waits for bytes held by another before it
    /// fails with [`Error::Conflict`] (default 500 ms); the same for a
    /// `PMutex`/`PRwLock` held by another.
    pub fn set_lock_timeout(&self, t: Duration) {
        self.locks.set_timeout(t);
        self.plocks.set_timeout(t);
    }

    /// Lanes held by running transactions right now (a lane parked by a
    /// finished transaction until the next fence is not counted).
    pub fn lanes_in_use(&self) -> u32 {
        self.lanes
            .in_use()
            .saturating_sub(self.inval.parked_count())
    }

    /// Closes the pool cleanly: every transaction's log invalidation is
    /// made durable, then the pool is marked clean. Dropping the pool does
    /// the same, ignoring errors.
    pub fn close(mut self) -> Result<()> {
        self.settle()?;
        Ok(self.raw.close_in_place()?)
    }

    /// Makes the retirement of every finished transaction's log durable
    /// (one fence), and gives the blocks they freed back to the heap.
    ///
    /// A transaction's commit record stays live until its lane's next
    /// fence, and checksums the bytes it changed and allocated: a crash
    /// that finds those bytes changed behind the transaction's back rolls
    /// it back. Transactions never do that to each other. Bytes written
    /// outside them, through [`raw`](Self::raw) (libpmemobj's
    /// `pmemobj_memcpy_persist` into an object just allocated), must wait
    /// for this call first.
    pub fn settle(&self) -> Result<()> {
        if self.raw.is_read_only() {
            return Ok(());
        }
        Ok(self.inval.settle_all(
            self.raw.persister(),
            &self.layout,
            self.heap.as_ref(),
            &self.lanes,
        )?)
    }

    /// The lines of committed transactions whose redo apply is not yet
    /// flushed (their lanes are parked until the next drain): what a
    /// crash test may find dirty after a transaction.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn parked_lines(&self) -> Vec<u64> {
        self.inval.parked_lines()
    }

    /// The offset of `p` if it is a non-null pointer of this pool.
    pub(crate) fn own<T>(&self, p: PPtr<T>) -> Result<u64> {
        if p.is_null() {
            return Err(Error::Null);
        }
        if p.pool_id() != self.id {
            return Err(Error::WrongPool {
                found: p.pool_id(),
                expected: self.id,
            });
        }
        Ok(p.offset())
    }

    /// Checks that `p` designates `len` bytes inside the heap, aligned for
    /// `align`, in this pool. Returns the offset.
    pub(crate) fn check(&self, p: PPtr<()>, len: u64, align: u64) -> Result<u64> {
        let off = self.own(p)?;
        let bad = |reason| Error::BadPointer {
            offset: off,
            size: len,
            reason,
        };
        let heap = self.raw.header().heap_offset;
        let end = off.checked_add(len).ok_or_else(|| bad("overflows"))?;
        if off < heap || end > self.raw.size() {
            return Err(bad("outside the heap"));
        }
        self.prefetch(off, len);
        if let Some(h) = &self.heap
            && !h.data_range_ok(off, len)
        {
            return Err(bad(
                "not inside one object's data (heap metadata or across blocks)",
            ));
        }
        if !off.is_multiple_of(align) {
            return Err(bad("misaligned for its type"));
        }
        Ok(off)
    }

    /// Starts loading the first and last line of `off..off+len` into the
    /// cache. Every access checks its pointer, then takes a stripe lock (a
    /// locked instruction, which no later load may pass) and only then
    /// reads the bytes: without this, the lock word's miss and the data's
    /// miss are paid one after the other.
    #[inline]
    fn prefetch(&self, off: u64, len: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let base = self.raw.base();
            let last = off + len.max(1) - 1;
            // SAFETY: the caller checked `off..off+len` lies inside the
            // mapping; a prefetch reads nothing architecturally and cannot
            // fault.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(base.add(off as usize) as *const i8);
                if last >> 6 != off >> 6 {
                    _mm_prefetch::<_MM_HINT_T0>(base.add(last as usize) as *const i8);
                }
            }
        }
        // The first stripe's lock word, for the locked instruction that
        // comes next.
        self.prefetch_lock(off);
    }

    /// Starts loading, for writing, the lock word of the stripe holding
    /// pool offset `off` (any value: the stripe index wraps), so that its
    /// miss overlaps the work before the locked instruction that takes it.
    #[inline]
    pub(crate) fn prefetch_lock(&self, off: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_ET0, _mm_prefetch};
            // SAFETY: `word_ptr` points into the lock table, whatever
            // `off` is; a prefetch reads nothing architecturally and
            // cannot fault.
            unsafe { _mm_prefetch::<_MM_HINT_ET0>(self.locks.word_ptr(off) as *const i8) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = off;
    }

    /// Starts loading the line at pool offset `off` (inside the mapping)
    /// for writing.
    #[inline]
    pub(crate) fn prefetch_write(&self, off: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_ET0, _mm_prefetch};
            debug_assert!(off < self.raw.size());
            // SAFETY: `off` lies inside the mapping; a prefetch reads
            // nothing architecturally and cannot fault.
            unsafe { _mm_prefetch::<_MM_HINT_ET0>(self.raw.base().add(off as usize) as *const i8) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = off;
    }

    pub(crate) fn check_typed<T>(&self, p: PPtr<T>) -> Result<u64> {
        self.check(p.cast(), size_of::<T>() as u64, align_of::<T>() as u64)
    }

    /// Reads a u64 of the state block.
    fn state_u64(&self, off: u64) -> u64 {
        // SAFETY: `off` is one of the 8-aligned state-block fields, inside
        // the mapping; the fields are only written by transactions holding
        // `root_lock` with 8-byte stores, so a racing read sees either value.
        unsafe { (self.raw.base().add(off as usize) as *const u64).read_volatile() }
    }

    /// The root object, created zeroed on first use (allocated from the
    /// heap, with type number [`ROOT_TYPE_NUM`]). Its size is fixed at
    /// creation: asking for a type of another size is an error. Like any
    /// object, it is 16-byte aligned, and on a 64-byte cache line when
    /// larger than 896 KiB ([`Tx::alloc`](crate::Tx::alloc)).
    pub fn root<T: Persistent>(&self) -> Result<PPtr<T>> {
        let size = size_of::<T>().max(1) as u64;
        let make = |off| PPtr::<T>::from_raw(self.id, off);
        let existing = self.state_u64(ROOT_OFFSET_FIELD);
        if existing != 0 {
            return self.checked_root(make(existing), size);
        }
        let _g = self.root_lock.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.state_u64(ROOT_OFFSET_FIELD);
        if existing != 0 {
            return self.checked_root(make(existing), size);
        }
        let off = self.transaction(|tx| -> Result<u64> {
            let off = tx.reserve(size, ROOT_TYPE_NUM, crate::tx::Fill::Zero)?;
            tx.set_state_u64(ROOT_SIZE_FIELD, size)?;
            tx.set_state_u64(ROOT_OFFSET_FIELD, off)?;
            Ok(off)
        })?;
        Ok(make(off))
    }

    /// Allocates a `T`, initialises it with `init`, and stores a pointer to
    /// it into `*dest`, crash-atomically and outside any transaction
    /// (libpmemobj's `pmemobj_alloc` with a constructor): after a crash the
    /// object is either fully constructed and reachable from `dest`, or was
    /// never allocated. `dest` keeps its old value on failure.
    pub fn alloc_into<T: Persistent>(
        &self,
        dest: PPtr<PPtr<T>>,
        type_num: u64,
        init: impl FnOnce(&mut T),
    ) -> Result<PPtr<T>> {
        let dest_off = self.check_typed(dest)?;
        self.transaction(|tx| -> Result<PPtr<T>> {
            // The locked instructions before the stores into the new block
            // (see `alloc_uninit_into`); the fresh block's own stripes are
            // never taken over from a live log, so they keep the number.
            tx.lock_exclusive(dest_off, 16)?;
            tx.take_seq();
            let p = tx.zalloc::<T>(type_num)?;
            init(&mut *tx.fresh_mut(p)?);
            tx.redo_store_locked(dest_off, &[self.id, p.offset()])?;
            Ok(p)
        })
    }

    /// Allocates a `T` without writing its bytes and stores a pointer to
    /// it into `*dest`, crash-atomically and outside any transaction
    /// (libpmemobj's `pmemobj_alloc` without a constructor). The object
    /// holds whatever bytes its block held (a valid `T`, since `T` is
    /// plain data, but arbitrary: typically a freed object's content); write
    /// it in a transaction before relying on it. Costs the same two fences
    /// as [`alloc_into`](Self::alloc_into) but flushes only the allocation
    /// header, which matters for large objects.
    pub fn alloc_uninit_into<T: Persistent>(
        &self,
        dest: PPtr<PPtr<T>>,
        type_num: u64,
    ) -> Result<PPtr<T>> {
        let dest_off = self.check_typed(dest)?;
        self.transaction(|tx| -> Result<PPtr<T>> {
            let size = size_of::<T>().max(1) as u64;
            if align_of::<T>() > 16 {
                return Err(Error::BadPointer {
                    offset: 0,
                    size,
                    reason: "types aligned to more than 16 bytes cannot be allocated",
                });
            }
            // Every locked instruction first (the destination's stripe,
            // the commit order), then the header store, whose miss then
            // overlaps the commit instead of stalling a lock.
            tx.lock_exclusive(dest_off, 16)?;
            tx.take_seq();
            let off = tx.reserve(size, type_num, crate::tx::Fill::Keep)?;
            tx.redo_store_locked(dest_off, &[self.id, off])?;
            Ok(PPtr::from_raw(self.id, off))
        })
    }

    /// Frees the object `*dest` points to and nulls `*dest`,
    /// crash-atomically and outside any transaction (`pmemobj_free`).
    /// A null `*dest` is a no-op.
    pub fn free_from<T: Persistent>(&self, dest: PPtr<PPtr<T>>) -> Result<()> {
        let dest_off = self.check_typed(dest)?;
        if self.raw.is_read_only() {
            // Nothing can be freed; a null pointer is still a no-op.
            if self.read(dest)?.is_null() {
                return Ok(());
            }
            return Err(Error::Pool(pmem_pool::Error::ReadOnly));
        }
        self.transaction(|tx| -> Result<()> {
            // Exclusively from the start: the pointer is read, then nulled.
            // A shared lock first would need an upgrade, which gives up
            // with a conflict against another reader instead of waiting.
            tx.lock_exclusive(dest_off, 16)?;
            let p: PPtr<T> = tx.read_exclusive(dest_off)?;
            if p.is_null() {
                return Ok(());
            }
            tx.free(p)?;
            tx.redo_store_locked(dest_off, &[0, 0])?;
            Ok(())
        })
    }

    /// Reserves a heap block; when the heap is full but blocks freed by
    /// committed transactions are waiting for their invalidation to be
    /// durable, makes it durable, takes them back and tries once more.
    pub(crate) fn reserve_block(
        &self,
        size: u64,
        type_num: u64,
    ) -> Result<pmem_alloc::Reservation> {
        let heap = self.heap()?;
        let p = self.raw.persister();
        match heap.reserve(p, size, type_num) {
            Err(pmem_alloc::Error::OutOfSpace { .. }) if self.inval.has_deferred() => {
                self.settle()?;
                Ok(heap.reserve(p, size, type_num)?)
            }
            r => Ok(r?),
        }
    }

    /// The heap, or `ReadOnly` on a read-only pool.
    #[allow(
        clippy::unnecessary_lazy_evaluations,
        reason = "an eager error is dropped on every call through pmem_pool::Error's \
                  drop glue (it has variants that own memory): 23 instructions per call"
    )]
    pub(crate) fn heap(&self) -> Result<&Heap> {
        self.heap
            .as_ref()
            .ok_or_else(|| Error::Pool(pmem_pool::Error::ReadOnly))
    }

    /// Every allocated object (with `type_num`, or all), as the heap sees
    /// them now: like libpmemobj's `POBJ_FOREACH`. The root object has type
    /// number [`ROOT_TYPE_NUM`].
    pub fn objects(&self, type_num: Option<u64>) -> Result<Vec<AllocInfo>> {
        Ok(self.heap()?.objects(self.raw.persister(), type_num))
    }

    /// Allocated objects of `type_num` as typed pointers (objects smaller
    /// than `T` are skipped).
    pub fn objects_of<T: Persistent>(&self, type_num: u64) -> Result<Vec<PPtr<T>>> {
        Ok(self
            .objects(Some(type_num))?
            .into_iter()
            .filter(|i| i.size >= size_of::<T>() as u64)
            .map(|i| PPtr::from_raw(self.id, i.off))
            .collect())
    }

    /// The allocation behind `p`: requested size, usable size, type number.
    pub fn alloc_info<T>(&self, p: PPtr<T>) -> Result<AllocInfo> {
        let off = self.own(p)?;
        Ok(self.heap()?.alloc_info(self.raw.persister(), off)?)
    }

    /// The heap's consistency report (what `pmem check` says of the heap).
    pub fn check_heap(&self) -> Result<pmem_alloc::HeapReport> {
        Ok(self.heap()?.check(self.raw.persister()))
    }

    fn checked_root<T>(&self, p: PPtr<T>, size: u64) -> Result<PPtr<T>> {
        let stored = self.state_u64(ROOT_SIZE_FIELD);
        if stored != size.max(1) {
            return Err(Error::RootSize {
                stored,
                requested: size,
            });
        }
        Ok(p)
    }

    /// Copies the object at `p` out of the pool. Locks it shared for the
    /// duration of the copy, so it never observes a half-done transaction.
    pub fn read<T: Persistent>(&self, p: PPtr<T>) -> Result<T> {
        let g = self.get(p)?;
        Ok(*g)
    }

    /// Copies `len` bytes at `p` out of the pool (locked shared for the
    /// duration of the copy).
    pub fn read_bytes(&self, p: PPtr<u8>, len: u64) -> Result<Vec<u8>> {
        let off = self.check(p.cast(), len, 1)?;
        self.lock_shared_range(off, len)?;
        // SAFETY: checked inside the heap; locked shared, so no writer runs.
        let v = unsafe {
            std::slice::from_raw_parts(self.raw.base().add(off as usize), len as usize).to_vec()
        };
        self.unlock_shared_range(off, len);
        Ok(v)
    }

    /// Locks `off..off+len` shared (without allocating: on a conflict the
    /// stripes taken so far are found again by walking the same range).
    fn lock_shared_range(&self, off: u64, len: u64) -> Result<()> {
        for (i, s) in stripes(off, len).enumerate() {
            if !self.locks.lock_shared(s) {
                for t in stripes(off, len).take(i) {
                    self.locks.unlock_shared(t);
                }
                return Err(Error::Conflict { offset: off });
            }
        }
        Ok(())
    }

    fn unlock_shared_range(&self, off: u64, len: u64) {
        for s in stripes(off, len) {
            self.locks.unlock_shared(s);
        }
    }

    /// A shared reference to the object at `p`, valid while the guard
    /// lives; the bytes stay locked against writers until it is dropped.
    /// Do not hold one across a transaction that writes the same bytes on
    /// this thread: that transaction would wait for it and fail with
    /// [`Error::Conflict`].
    pub fn get<T: Persistent>(&self, p: PPtr<T>) -> Result<PRef<'_, T>> {
        let off = self.check_typed(p)?;
        let len = size_of::<T>() as u64;
        self.lock_shared_range(off, len)?;
        Ok(PRef {
            pool: self,
            // SAFETY: `check_typed` proved the object lies inside the live
            // mapping and is aligned; the shared locks exclude writers for
            // the guard's life.
            ptr: unsafe { self.raw.base().add(off as usize) as *const T },
            off,
        })
    }
}

/// A shared reference into the pool from [`Pool::get`]; unlocks on drop.
pub struct PRef<'p, T> {
    pool: &'p Pool,
    ptr: *const T,
    off: u64,
}

impl<T> std::ops::Deref for PRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: set by `Pool::get` to an aligned object inside the mapping,
        // locked shared (no writer) until this guard drops.
        unsafe { &*self.ptr }
    }
}

impl<T> Drop for PRef<'_, T> {
    fn drop(&mut self) {
        self.pool
            .unlock_shared_range(self.off, size_of::<T>() as u64);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Best effort: without it the next open re-applies the last
        // committed logs (idempotent), which is correct but not clean.
        let _ = self.settle();
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("path", &self.raw.path())
            .field("mode", &self.mode())
            .field("id", &format_args!("{:#x}", self.id))
            .finish()
    }
}
