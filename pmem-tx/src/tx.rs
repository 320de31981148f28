//! Transactions: undo logging, commit, rollback, nesting.
//!
//! Protocol of a transaction on lane `L` at generation `G` (FORMAT.md,
//! "Transactions", numbers the persist points):
//! 1. Before the first byte of a range changes, its old content is appended
//!    to `L`'s undo log (entries valid for `G`) and drained: fence 1 per
//!    snapshot batch. A range already covered is not copied again.
//! 2. The caller changes the bytes with plain stores.
//! 3. Commit: every written range is flushed once (whole lines, merged),
//!    drained (fence 2), then `G + 1` is stored into `L`'s generation word
//!    and persisted (fence 3). That 8-byte store is the commit point: before
//!    it recovery rolls the undo log back, after it the log is stale.
//! 4. Abort: the snapshots are copied back newest first, drained, and the
//!    generation bumped the same way.
//!
//! A transaction that only reads takes no lane and costs no fence.

use crate::error::{Error, Result};
use crate::locks::{Held, Mode, stripes};
use crate::pool::Pool;
use crate::ptr::{PPtr, Persistent};
use pmem_pool::lane::bump_generation;
use pmem_pool::ulog::{EntryKind, LogWriter};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::Rc;

/// Options for [`Tx::add_range_flags`], as libpmemobj's `POBJ_XADD_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// Do not snapshot: for memory whose old content does not matter
    /// (freshly allocated, or about to be overwritten whole with data the
    /// caller can rebuild). An abort leaves such a range as it was written.
    pub no_snapshot: bool,
    /// Do not flush at commit: the caller persists the range itself.
    pub no_flush: bool,
}

impl Flags {
    /// Snapshot and flush (the default).
    pub const NONE: Flags = Flags {
        no_snapshot: false,
        no_flush: false,
    };
    /// See [`Flags::no_snapshot`].
    pub const NO_SNAPSHOT: Flags = Flags {
        no_snapshot: true,
        no_flush: false,
    };
    /// See [`Flags::no_flush`].
    pub const NO_FLUSH: Flags = Flags {
        no_snapshot: false,
        no_flush: true,
    };
}

struct UndoEntry {
    target: u64,
    len: u32,
    payload_off: usize,
}

#[derive(Default)]
struct Inner {
    lane: Option<u32>,
    generation: u64,
    undo: Option<LogWriter>,
    entries: Vec<UndoEntry>,
    /// Ranges snapshotted (or declared fresh) in this transaction.
    covered: BTreeMap<u64, u64>,
    /// Ranges to flush at commit.
    dirty: Vec<(u64, u64)>,
    held: Held,
    /// Persistent locks (`PMutex`/`PRwLock`) taken with `Tx::lock`.
    plocks: crate::plock::Held,
    aborted: bool,
}

struct Shared {
    inner: RefCell<Inner>,
    /// Guards (`TxRef`/`TxMut`) alive on any handle of this transaction.
    live: Cell<usize>,
}

thread_local! {
    /// The transaction running on this thread, per open pool instance.
    static ACTIVE: RefCell<Vec<(u64, Rc<Shared>)>> = const { RefCell::new(Vec::new()) };
    /// The lane this thread used last: tried first next time.
    static LANE_HINT: Cell<u32> = const { Cell::new(u32::MAX) };
}

fn active(instance: u64) -> Option<Rc<Shared>> {
    ACTIVE.with(|a| {
        a.borrow()
            .iter()
            .find(|(i, _)| *i == instance)
            .map(|(_, s)| s.clone())
    })
}

struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.borrow_mut().retain(|(i, _)| *i != self.0));
    }
}

/// A running transaction. Obtained from [`Pool::transaction`]; every change
/// made through it becomes durable at commit or is rolled back.
pub struct Tx<'p> {
    pool: &'p Pool,
    shared: Rc<Shared>,
    depth: u32,
}

impl Pool {
    /// Runs `f` as one crash-atomic transaction: when this returns `Ok`,
    /// every change `f` made through its [`Tx`] is durable; when `f`
    /// returns `Err`, panics, or calls [`Tx::abort`], every change is
    /// rolled back (and the panic resumes). A call made while a
    /// transaction on this pool is already running on this thread joins it:
    /// its changes commit with the outer one, and its failure aborts the
    /// whole.
    ///
    /// ```
    /// # fn main() -> Result<(), pmem_tx::Error> {
    /// use pmem_tx::{Pool, PoolOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let pool = Pool::create(dir.path().join("doc.pool"), "doc", 8 << 20)?;
    /// let root = pool.root::<[u64; 4]>()?;
    /// pool.transaction(|tx| -> Result<(), pmem_tx::Error> {
    ///     let mut r = tx.get_mut(root)?;
    ///     r[0] = 7;
    ///     r[1] = r[0] * 6;
    ///     Ok(())
    /// })?;
    /// assert_eq!(pool.read(root)?[1], 42);
    /// // A failing transaction leaves nothing behind.
    /// let _ = pool.transaction(|tx| -> Result<(), pmem_tx::Error> {
    ///     tx.write(root.index(0).unwrap(), 99)?;
    ///     Err(pmem_tx::Error::Aborted)
    /// });
    /// assert_eq!(pool.read(root)?[0], 7);
    /// # Ok(()) }
    /// ```
    pub fn transaction<R, E, F>(&self, f: F) -> Result<R, E>
    where
        E: From<Error>,
        F: FnOnce(&mut Tx<'_>) -> Result<R, E>,
    {
        if let Some(shared) = active(self.instance) {
            return nested(self, shared, 1, f);
        }
        let shared = Rc::new(Shared {
            inner: RefCell::new(Inner::default()),
            live: Cell::new(0),
        });
        ACTIVE.with(|a| a.borrow_mut().push((self.instance, shared.clone())));
        let reg = Registered(self.instance);
        let mut tx = Tx {
            pool: self,
            shared,
            depth: 0,
        };
        let r = catch_unwind(AssertUnwindSafe(|| f(&mut tx)));
        drop(reg);
        match r {
            Ok(Ok(v)) => {
                if tx.shared.inner.borrow().aborted {
                    tx.finish_abort()?;
                    return Err(Error::Aborted.into());
                }
                match tx.finish_commit() {
                    Ok(()) => Ok(v),
                    Err(e) => {
                        let _ = tx.finish_abort();
                        Err(e.into())
                    }
                }
            }
            Ok(Err(e)) => {
                tx.finish_abort()?;
                Err(e)
            }
            Err(panic) => {
                // Rollback errors cannot be reported while unwinding; the
                // undo log stays valid then, and the next open rolls back.
                let _ = tx.finish_abort();
                resume_unwind(panic)
            }
        }
    }
}

fn nested<R, E, F>(pool: &Pool, shared: Rc<Shared>, depth: u32, f: F) -> Result<R, E>
where
    E: From<Error>,
    F: FnOnce(&mut Tx<'_>) -> Result<R, E>,
{
    if shared.live.get() > 0 {
        return Err(Error::BorrowedAcrossNested.into());
    }
    let mut tx = Tx {
        pool,
        shared,
        depth,
    };
    match catch_unwind(AssertUnwindSafe(|| f(&mut tx))) {
        Ok(Ok(v)) if !tx.shared.inner.borrow().aborted => Ok(v),
        Ok(Ok(_)) => Err(Error::Aborted.into()),
        Ok(Err(e)) => {
            tx.shared.inner.borrow_mut().aborted = true;
            Err(e)
        }
        Err(panic) => {
            tx.shared.inner.borrow_mut().aborted = true;
            resume_unwind(panic)
        }
    }
}

impl<'p> Tx<'p> {
    /// The pool this transaction runs on.
    pub fn pool(&self) -> &'p Pool {
        self.pool
    }

    /// Nesting depth: 0 for the outermost transaction.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The lane holding this transaction's logs, once it has written.
    pub fn lane(&self) -> Option<u32> {
        self.shared.inner.borrow().lane
    }

    /// Marks the transaction aborted: everything it changed is rolled back
    /// when it ends, and its `transaction` call returns [`Error::Aborted`]
    /// (or the closure's own error).
    pub fn abort(&mut self) {
        self.shared.inner.borrow_mut().aborted = true;
    }

    /// Runs `f` as a nested transaction (same as calling
    /// [`Pool::transaction`] again on this thread).
    pub fn transaction<R, E, F>(&mut self, f: F) -> Result<R, E>
    where
        E: From<Error>,
        F: FnOnce(&mut Tx<'_>) -> Result<R, E>,
    {
        nested(self.pool, self.shared.clone(), self.depth + 1, f)
    }

    /// Copies the object at `p` out; it stays locked shared until the
    /// transaction ends, so it cannot change under this transaction.
    pub fn read<T: Persistent>(&self, p: PPtr<T>) -> Result<T> {
        Ok(*self.get(p)?)
    }

    /// A shared reference to the object at `p`, valid while the guard
    /// lives (and the transaction is borrowed).
    pub fn get<T: Persistent>(&self, p: PPtr<T>) -> Result<TxRef<'_, T>> {
        let off = self.pool.check_typed(p)?;
        self.lock_range(off, size_of::<T>() as u64, Mode::Shared)?;
        self.shared.live.set(self.shared.live.get() + 1);
        Ok(TxRef {
            // SAFETY: checked in bounds and aligned; locked shared by this
            // transaction (or exclusively, and then only this transaction
            // writes it, through `&mut self`, which this guard's borrow of
            // `self` excludes while it lives).
            ptr: unsafe { self.pool.raw.base().add(off as usize) as *const T },
            live: &self.shared.live,
        })
    }

    /// Snapshots the object at `p` and returns a mutable reference to it,
    /// valid while the guard lives.
    pub fn get_mut<T: Persistent>(&mut self, p: PPtr<T>) -> Result<TxMut<'_, T>> {
        let off = self.pool.check_typed(p)?;
        self.add(off, size_of::<T>() as u64, Flags::NONE)?;
        self.shared.live.set(self.shared.live.get() + 1);
        Ok(TxMut {
            // SAFETY: checked in bounds and aligned; locked exclusively by
            // this transaction until it ends, and the guard borrows `self`
            // mutably, so no other reference from it exists meanwhile.
            ptr: unsafe { self.pool.raw.base().add(off as usize) as *mut T },
            live: &self.shared.live,
            _tx: std::marker::PhantomData,
        })
    }

    /// Mutable bytes `len` long at `p` (snapshotted first): for byte-level
    /// updates of a part of an object.
    pub fn bytes_mut(&mut self, p: PPtr<u8>, len: u64) -> Result<TxMut<'_, [u8]>> {
        let off = self.pool.check(p.cast(), len, 1)?;
        self.add(off, len, Flags::NONE)?;
        self.shared.live.set(self.shared.live.get() + 1);
        // SAFETY: as for `get_mut`: in bounds, exclusively locked, and the
        // guard borrows the transaction mutably.
        let ptr = unsafe {
            std::ptr::slice_from_raw_parts_mut(self.pool.raw.base().add(off as usize), len as usize)
        };
        Ok(TxMut {
            ptr,
            live: &self.shared.live,
            _tx: std::marker::PhantomData,
        })
    }

    /// Snapshots `*p` and stores `value` there.
    pub fn write<T: Persistent>(&mut self, p: PPtr<T>, value: T) -> Result<()> {
        *self.get_mut(p)? = value;
        Ok(())
    }

    /// Snapshots the whole object at `p` (libpmemobj's `pmemobj_tx_add_range`).
    pub fn add_range<T: Persistent>(&mut self, p: PPtr<T>) -> Result<()> {
        self.add_range_flags(p, Flags::NONE)
    }

    /// [`add_range`](Self::add_range) with [`Flags`].
    pub fn add_range_flags<T: Persistent>(&mut self, p: PPtr<T>, flags: Flags) -> Result<()> {
        let off = self.pool.check_typed(p)?;
        self.add(off, size_of::<T>() as u64, flags)
    }

    /// Zeroes a range no object uses yet (no snapshot); flushed at commit.
    pub(crate) fn zero_fresh(&mut self, off: u64, len: u64) -> Result<()> {
        self.add(off, len, Flags::NO_SNAPSHOT)?;
        // SAFETY: `off..off+len` lies in the heap (checked by the caller),
        // is locked exclusively by this transaction, and no reference to it
        // exists (it belongs to no object yet).
        unsafe {
            self.pool
                .raw
                .persister()
                .memset_nodrain(off as usize, 0, len as usize)
        };
        Ok(())
    }

    /// Snapshots and stores a u64 of the state block (root pointer).
    pub(crate) fn set_state_u64(&mut self, off: u64, v: u64) -> Result<()> {
        self.add(off, 8, Flags::NONE)?;
        // SAFETY: `off` is an 8-aligned state-block field inside the
        // mapping, snapshotted and locked exclusively by this transaction.
        unsafe { (self.pool.raw.base().add(off as usize) as *mut u64).write_volatile(v) };
        Ok(())
    }

    fn ensure_lane(&self, inner: &mut Inner) {
        if inner.lane.is_some() {
            return;
        }
        let hint = LANE_HINT.with(|h| h.get());
        let hint = if hint == u32::MAX {
            // Spread threads over the lanes on first use.
            let id = std::thread::current().id();
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&id, &mut h);
            std::hash::Hasher::finish(&h) as u32
        } else {
            hint
        };
        let Some(lane) = self.pool.lanes.acquire(hint) else {
            return;
        };
        LANE_HINT.with(|h| h.set(lane));
        let layout = &self.pool.layout;
        let goff = layout.generation_off(lane);
        // SAFETY: the generation word of a lane we now hold exclusively,
        // 8-aligned inside the mapping.
        let generation =
            u64::from_le(unsafe { (self.pool.raw.base().add(goff) as *const u64).read_volatile() });
        inner.lane = Some(lane);
        inner.generation = generation;
        inner.undo = Some(LogWriter::new(layout.undo(lane), generation));
    }

    fn lock_range(&self, off: u64, len: u64, mode: Mode) -> Result<()> {
        let mut inner = self.shared.inner.borrow_mut();
        if inner.aborted {
            return Err(Error::Aborted);
        }
        if mode == Mode::Exclusive {
            self.ensure_lane(&mut inner);
        }
        let token = u64::from(inner.lane.unwrap_or(0)) + 1;
        let locks = &self.pool.locks;
        for s in stripes(off, len) {
            let ok = match (inner.held.get(&s).copied(), mode) {
                (Some(Mode::Exclusive), _) | (Some(Mode::Shared), Mode::Shared) => true,
                (Some(Mode::Shared), Mode::Exclusive) => locks.lock_exclusive(s, token, true),
                (None, Mode::Shared) => locks.lock_shared(s),
                (None, Mode::Exclusive) => locks.lock_exclusive(s, token, false),
            };
            if !ok {
                return Err(Error::Conflict { offset: off });
            }
            inner.held.insert(s, mode);
        }
        Ok(())
    }

    /// The heart of `add_range`: lock, snapshot what is not yet covered,
    /// one fence, remember what to flush.
    fn add(&mut self, off: u64, len: u64, flags: Flags) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.lock_range(off, len, Mode::Exclusive)?;
        let mut inner = self.shared.inner.borrow_mut();
        let inner = &mut *inner;
        let p = self.pool.raw.persister();
        let end = off + len;
        if !flags.no_snapshot {
            let gaps = uncovered(&inner.covered, off, end);
            let mut appended = false;
            for (a, b) in gaps {
                let undo = inner.undo.as_mut().ok_or(Error::Aborted)?;
                // SAFETY: `a..b` is inside the heap or state block (checked
                // by the caller), locked exclusively by this transaction,
                // and no reference to it is alive (guards borrow the
                // transaction, which `&mut self` shows is not borrowed).
                let src = unsafe {
                    std::slice::from_raw_parts(p.base().add(a as usize), (b - a) as usize)
                };
                // SAFETY: this transaction holds the lane, so it owns the
                // log area; `src` is outside the lanes, so they do not
                // overlap.
                let payload_off = match unsafe { undo.append(p, EntryKind::Snapshot, a, src) } {
                    Ok(at) => at,
                    Err(e) => {
                        if appended {
                            p.drain()?;
                        }
                        return Err(e.into());
                    }
                };
                inner.entries.push(UndoEntry {
                    target: a,
                    len: (b - a) as u32,
                    payload_off,
                });
                insert_range(&mut inner.covered, a, b);
                appended = true;
            }
            if appended {
                p.drain()?;
            }
        } else {
            insert_range(&mut inner.covered, off, end);
        }
        if !flags.no_flush {
            inner.dirty.push((off, end));
        }
        Ok(())
    }

    fn release(&self, inner: &mut Inner) {
        for (&s, &m) in inner.held.iter() {
            self.pool.locks.unlock(s, m);
        }
        inner.held.clear();
        inner.plocks.release_all(self.pool);
        if let Some(l) = inner.lane.take() {
            self.pool.lanes.release(l);
        }
        inner.undo = None;
    }

    fn finish_commit(&mut self) -> Result<()> {
        let mut inner = self.shared.inner.borrow_mut();
        let inner = &mut *inner;
        let r = self.commit_durably(inner);
        if r.is_ok() {
            self.release(inner);
        }
        r
    }

    fn commit_durably(&self, inner: &mut Inner) -> Result<()> {
        let p = self.pool.raw.persister();
        if !inner.dirty.is_empty() {
            for (a, b) in merged_lines(&mut inner.dirty) {
                p.flush(a as usize, (b - a) as usize);
            }
            p.drain()?;
        }
        if let (Some(lane), false) = (inner.lane, inner.entries.is_empty()) {
            // The commit point.
            bump_generation(p, &self.pool.layout, lane, inner.generation)?;
            inner.entries.clear();
        }
        Ok(())
    }

    fn finish_abort(&mut self) -> Result<()> {
        let mut inner = self.shared.inner.borrow_mut();
        let inner = &mut *inner;
        let p = self.pool.raw.persister();
        let r = (|| -> Result<()> {
            if let (Some(lane), false) = (inner.lane, inner.entries.is_empty()) {
                for e in inner.entries.iter().rev() {
                    // SAFETY: the payload lies in this transaction's undo log
                    // and the target in the heap or state block (disjoint);
                    // the target is locked exclusively by this transaction
                    // and no guard is alive (the closure has returned).
                    unsafe {
                        let src =
                            std::slice::from_raw_parts(p.base().add(e.payload_off), e.len as usize);
                        p.memcpy_nodrain(e.target as usize, src);
                    }
                }
                p.drain()?;
                bump_generation(p, &self.pool.layout, lane, inner.generation)?;
            }
            Ok(())
        })();
        inner.entries.clear();
        self.release(inner);
        r
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        // The outermost handle commits or aborts explicitly; if it is
        // dropped any other way (it cannot be, `transaction` owns it), the
        // locks and the lane must still be returned. Nested handles share
        // the state and release nothing.
        if self.depth == 0 {
            let mut inner = self.shared.inner.borrow_mut();
            if inner.lane.is_some() || !inner.held.is_empty() || !inner.plocks.is_empty() {
                let inner = &mut *inner;
                self.release(inner);
            }
        }
    }
}

impl Tx<'_> {
    /// The persistent locks this transaction holds (`plock.rs`), or
    /// `Aborted` if it is aborted.
    pub(crate) fn plocks(&self) -> Result<std::cell::RefMut<'_, crate::plock::Held>> {
        let inner = self.shared.inner.borrow_mut();
        if inner.aborted {
            return Err(Error::Aborted);
        }
        Ok(std::cell::RefMut::map(inner, |i| &mut i.plocks))
    }
}

/// The parts of `a..b` not in `covered`.
fn uncovered(covered: &BTreeMap<u64, u64>, a: u64, b: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut cur = a;
    // Start from the last range beginning at or before `a`.
    let start = covered.range(..=a).next_back().map_or(a, |(&s, _)| s);
    for (&s, &e) in covered.range(start..b) {
        if e <= cur {
            continue;
        }
        if s > cur {
            out.push((cur, s.min(b)));
        }
        cur = cur.max(e);
        if cur >= b {
            break;
        }
    }
    if cur < b {
        out.push((cur, b));
    }
    out
}

/// Adds `a..b` to `covered`, merging overlapping and adjacent ranges.
fn insert_range(covered: &mut BTreeMap<u64, u64>, mut a: u64, mut b: u64) {
    if let Some((&s, &e)) = covered.range(..=a).next_back()
        && e >= a
    {
        a = s;
        b = b.max(e);
    }
    let inside: Vec<u64> = covered.range(a..=b).map(|(&s, _)| s).collect();
    for s in inside {
        if let Some(e) = covered.remove(&s) {
            b = b.max(e);
        }
    }
    covered.insert(a, b);
}

/// Rounds ranges out to cache lines, sorts and merges them, so that each
/// line is flushed once.
fn merged_lines(ranges: &mut [(u64, u64)]) -> Vec<(u64, u64)> {
    const L: u64 = pmem_pool::persist::CACHE_LINE as u64;
    for r in ranges.iter_mut() {
        *r = (r.0 / L * L, r.1.next_multiple_of(L));
    }
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Shared reference into the pool from [`Tx::get`].
pub struct TxRef<'t, T: ?Sized> {
    ptr: *const T,
    live: &'t Cell<usize>,
}

impl<T: ?Sized> std::ops::Deref for TxRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: see `Tx::get`: valid, aligned, locked for this guard's life.
        unsafe { &*self.ptr }
    }
}

impl<T: ?Sized> Drop for TxRef<'_, T> {
    fn drop(&mut self) {
        self.live.set(self.live.get() - 1);
    }
}

/// Mutable reference into the pool from [`Tx::get_mut`] / [`Tx::bytes_mut`].
pub struct TxMut<'t, T: ?Sized> {
    ptr: *mut T,
    live: &'t Cell<usize>,
    _tx: std::marker::PhantomData<&'t mut ()>,
}

impl<T: ?Sized> std::ops::Deref for TxMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: see `Tx::get_mut`: valid, aligned, exclusively locked and
        // snapshotted, and the only reference while this guard lives.
        unsafe { &*self.ptr }
    }
}

impl<T: ?Sized> std::ops::DerefMut for TxMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`.
        unsafe { &mut *self.ptr }
    }
}

impl<T: ?Sized> Drop for TxMut<'_, T> {
    fn drop(&mut self) {
        self.live.set(self.live.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncovered_finds_the_gaps() {
        let mut c = BTreeMap::new();
        assert_eq!(uncovered(&c, 10, 20), vec![(10, 20)]);
        insert_range(&mut c, 12, 14);
        insert_range(&mut c, 16, 18);
        assert_eq!(uncovered(&c, 10, 20), vec![(10, 12), (14, 16), (18, 20)]);
        assert_eq!(uncovered(&c, 13, 17), vec![(14, 16)]);
        assert_eq!(uncovered(&c, 12, 14), vec![]);
        insert_range(&mut c, 14, 16);
        assert_eq!(c.len(), 1, "adjacent ranges merge: {c:?}");
        assert_eq!(c.get(&12), Some(&18));
        insert_range(&mut c, 0, 100);
        assert_eq!(c.into_iter().collect::<Vec<_>>(), vec![(0, 100)]);
    }

    #[test]
    fn lines_are_flushed_once() {
        let mut r = vec![(70, 80), (0, 8), (60, 66), (200, 300)];
        assert_eq!(merged_lines(&mut r), vec![(0, 128), (192, 320)]);
    }
}
