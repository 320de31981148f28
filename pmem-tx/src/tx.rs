//! Transactions: undo logging, commit, rollback, nesting.
//!
//! Protocol of a transaction on lane `L` at generation `G` (FORMAT.md,
//! "Commit protocol", numbers the persist points and argues each):
//! 1. Before the first byte of a range changes, its old content is appended
//!    to `L`'s undo log (entries valid for `G`) and drained: fence 1 per
//!    snapshot batch. A range already covered is not copied again.
//! 2. The caller changes the bytes with plain stores; fresh blocks are
//!    written without snapshot.
//! 3. Commit: every written range is flushed once (whole lines, merged);
//!    the redo entries (heap changes, `Fresh` ranges) and a commit record
//!    carrying a CRC of the committed data (each snapshotted range's new
//!    bytes, each fresh block) are appended to `L`'s redo log, and one drain
//!    (fence 2) makes data and record durable together: the commit point.
//!    Recovery keeps the transaction only if the data matches the record.
//! 4. Redo changes (heap changes, deferred writes) are applied and drained
//!    (fence 3). A transaction without snapshots parks its lane instead:
//!    the next drain of any transaction flushes the applied lines before
//!    its fence and does step 5 after it (`invalidate.rs`).
//! 5. `G + 1` is stored into `L`'s generation word and flushed, not
//!    fenced: the next drain of any transaction on the pool makes it
//!    durable before any later change can reach the media
//!    (`invalidate.rs`).
//!
//! Large commits (more than [`CRC_LIMIT`] bytes to checksum), writes
//! without snapshot to old bytes, and logs that overflowed into heap blocks
//! take the strict path instead: the data is drained before the commit
//! record (one more fence), and overflow blocks wait for a fenced bump.
//! Abort copies the snapshots back newest first, drains, and persists the
//! bump.
//!
//! A transaction that only reads takes no lane and costs no fence.

use crate::error::{Error, Result};
use crate::invalidate::{PARK_FRESH, PARK_LINES, ParkedInfo};
use crate::locks::{Mode, Tag, stripes};
use crate::pool::Pool;
use crate::ptr::{PPtr, Persistent};
use pmem_alloc::layout::ALLOC_HEADER_SIZE;
use pmem_alloc::{FreeTicket, RedoOp, Reservation};
use pmem_pool::lane::{store_generation, write_generation};
use pmem_pool::ulog::{CONTINUE_RESERVE, CommitInfo, EntryKind, LogArea, LogWriter, entry_size};

/// What `Tx::reserve` does with a new block's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Zeroed.
    Zero,
    /// The caller writes it in this transaction.
    Caller,
    /// Left as it is (it holds whatever bytes were there): neither
    /// written, flushed nor checksummed.
    Keep,
}

/// Most bytes a commit checksums to save the fence between data and
/// commit record; above it the strict path costs less than the CRC.
pub const CRC_LIMIT: u64 = 2048;
/// Fresh blocks tried before `reserve` falls back to waiting for one.
const FRESH_TRIES: usize = 8;
/// Largest value `Tx::write` may defer to the redo log (a pointer is 16).
const DEFER_MAX: usize = 64;
/// Most consecutive redo stores logged as one `Copy` entry (the largest
/// deferred write).
const COPY_WORDS: usize = DEFER_MAX / 8;
/// Most words one transaction defers; beyond, writes snapshot (the redo
/// log's half holds 512 bytes, shared with the heap's entries).
const DEFER_WORDS: usize = 8;
/// Snapshots are logged in pieces of at most this many bytes, so no entry
/// needs an overflow block larger than a few chunks.
const MAX_PIECE: u64 = 256 * 1024;
/// Size of the first overflow block of a transaction; later ones double,
/// up to 64 times this.
const OVERFLOW_MIN: usize = 64 * 1024;
/// Type number recorded in overflow blocks' allocation headers (never
/// published, so never seen by `objects`).
const OVERFLOW_TYPE_NUM: u64 = u64::MAX - 1;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::Rc;

mod sets;
use sets::{RangeSet, StripeSet};

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

/// Most lanes a transaction notes from stripe tags; beyond, its drains
/// flush every pending bump.
const DEPS: usize = 4;

/// The lanes (other than the transaction's own) whose generation bumps a
/// transaction that changes no heap metadata must make durable at its
/// drains: those named by the tags of the stripes it took exclusively.
#[derive(Default)]
struct Deps {
    lanes: [u32; DEPS],
    n: usize,
    /// A tag was unknown, or there were more than `DEPS` lanes.
    unknown: bool,
    /// The last tag noted (most stripes of a transaction name the same).
    last: u32,
}

impl Deps {
    /// Notes the tag of a stripe just taken with `token` (the lane + 1).
    #[inline]
    fn note(&mut self, tag: Tag, token: u64) {
        // (A lane too large for the tag field has the token of no tag but
        // `UNKNOWN`'s, which must not pass for its own.)
        let own = u64::from(tag.0) == token && tag != Tag::UNKNOWN;
        if tag == Tag::NONE || own || tag.0 == self.last {
            return;
        }
        self.note_new(tag);
    }

    #[cold]
    fn note_new(&mut self, tag: Tag) {
        self.last = tag.0;
        if tag == Tag::UNKNOWN {
            self.unknown = true;
            return;
        }
        let lane = tag.0 - 1;
        if self.lanes[..self.n].contains(&lane) {
            return;
        }
        if self.n == DEPS {
            self.unknown = true;
        } else {
            self.lanes[self.n] = lane;
            self.n += 1;
        }
    }

    fn contains(&self, lane: u32) -> bool {
        self.lanes[..self.n].contains(&lane)
    }
}

#[derive(Default)]
struct Inner {
    lane: Option<u32>,
    generation: u64,
    undo: Option<LogWriter>,
    entries: Vec<UndoEntry>,
    /// Ranges snapshotted (or declared fresh) in this transaction.
    covered: RangeSet,
    /// Ranges to flush at commit.
    dirty: Vec<(u64, u64)>,
    held: StripeSet,
    /// Persistent locks (`PMutex`/`PRwLock`) taken with `Tx::lock`.
    plocks: crate::plock::Held,
    aborted: bool,
    /// Blocks reserved by this transaction: published at commit.
    reserved: Vec<Reservation>,
    /// Reservations freed again in this transaction: cancelled at the end.
    dropped: Vec<Reservation>,
    /// Objects freed by this transaction: freed at commit.
    freed: Vec<FreeTicket>,
    /// Redo operations of the frees (publishes are added at commit).
    redo: Vec<RedoOp>,
    /// Whether redo entries were written at the current generation.
    redo_written: bool,
    /// Fresh blocks' ranges (and their allocation headers) the commit
    /// checksums.
    fresh: Vec<(u64, u64)>,
    /// Whether the caller wrote old bytes without snapshot (`NO_SNAPSHOT`):
    /// the commit then takes the strict path.
    unsnapped: bool,
    /// Whether this transaction drained since it took its lane (its lane's
    /// previous bump is then durable).
    settled: bool,
    /// Whether it streamed its generation into the lane's copy (with its
    /// first undo entry): its next drain then makes the lane's previous
    /// bump durable without writing back the generation word.
    gen_copied: bool,
    /// Whether it locked bytes exclusively since its last drain.
    locked_since_drain: bool,
    /// The lanes named by the tags of the stripes it took exclusively
    /// (`locks::Tag`): whose bumps its drains make durable when it changes
    /// no heap metadata.
    deps: Deps,
    /// Whether its release must leave [`Tag::UNKNOWN`] rather than its own
    /// lane: it took a stripe exclusively (fresh ones included) since its
    /// last drain, so that drain did not cover the stripe's tag, or that
    /// drain stored claimed lanes' bumps after its fence.
    untagged: bool,
    /// Whether a drain found many lanes marked: unmark the idle ones once
    /// the commit is over (`Invalidation::tidy`).
    tidy: bool,
    /// A commit-order number taken before the commit (`take_seq`), valid
    /// while no stripe is newly locked exclusively after it.
    early_seq: Option<u64>,
    /// Words `Tx::write` stored through the redo log instead of in place
    /// (pool offset, value): applied after the commit record, with the
    /// heap's changes. No guard ever covers one (`materialize`).
    deferred: Vec<(u64, u64)>,
    /// Heap blocks the logs continue in: never published, given back once
    /// the generation bump has made their entries stale.
    overflow: Vec<Reservation>,
    /// Parked lanes the current drain claimed (`Invalidation::flush_pending`),
    /// bumped once it returns; empty between drains.
    claims: Vec<(u32, u64)>,
    /// Whether the commit parked the lane (`Invalidation::park`): the end
    /// of the transaction gives the lane up without releasing it.
    parked: bool,
    /// The lines of the redo applies of the parked lanes this
    /// transaction's drains claimed (every parking has at least one).
    /// Non-empty: the commit takes a commit-order number after theirs; and
    /// if it changed one of the lines in place, their bumps must be
    /// durable before its commit record.
    claimed_lines: Vec<u64>,
}

impl Inner {
    /// This transaction's stripe-lock token: its lane + 1 (lane 0's before
    /// it has one; every exclusive lock takes a lane first).
    fn token(&self) -> u64 {
        u64::from(self.lane.unwrap_or(0)) + 1
    }

    /// Makes a finished transaction's state ready for the next one,
    /// keeping its collections' capacity. Returns false (and changes
    /// nothing) if the end of the transaction did not return everything
    /// it held: such a state is dropped, not reused.
    fn reset(&mut self) -> bool {
        let clean = self.lane.is_none()
            && self.held.is_empty()
            && self.plocks.is_empty()
            && self.entries.is_empty()
            && !self.redo_written
            && self.reserved.is_empty()
            && self.dropped.is_empty()
            && self.freed.is_empty()
            && self.overflow.is_empty();
        if !clean {
            return false;
        }
        // In place (moving the whole state costs more than the rest of
        // the reset). Every field is named, without `..`: a field added
        // to `Inner` fails to compile here until its reset is decided.
        let Inner {
            lane: _,
            generation,
            undo,
            entries: _,
            covered,
            dirty,
            held,
            plocks: _,
            aborted,
            reserved: _,
            dropped: _,
            freed: _,
            redo,
            redo_written: _,
            overflow: _,
            fresh,
            unsnapped,
            settled,
            gen_copied,
            locked_since_drain,
            deps,
            untagged,
            tidy,
            early_seq,
            deferred,
            claims,
            parked,
            claimed_lines,
        } = self;
        claims.clear();
        *parked = false;
        claimed_lines.clear();
        fresh.clear();
        *unsnapped = false;
        *settled = false;
        *gen_copied = false;
        *locked_since_drain = false;
        *deps = Deps::default();
        *untagged = false;
        *tidy = false;
        *early_seq = None;
        deferred.clear();
        *generation = 0;
        *undo = None;
        covered.clear();
        held.clear();
        redo.clear();
        dirty.clear();
        if dirty.capacity() > 4096 {
            *dirty = Vec::new();
        }
        *aborted = false;
        true
    }
}

struct Shared {
    inner: RefCell<Inner>,
    /// Guards (`TxRef`/`TxMut`) alive on any handle of this transaction.
    live: Cell<usize>,
    /// Where this state is in its life (see [`States`]).
    phase: Cell<Phase>,
}

/// A thread's transaction state, as [`States`] keeps it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Cleared, waiting for the next outermost transaction on its pool.
    Ready,
    /// An outermost transaction runs with it: a transaction started on
    /// the same pool and thread joins it.
    Running,
    /// Its transaction's closure has returned; the commit or rollback
    /// runs, then the state is cleared (back to `Ready`) or, when it
    /// cannot be, given up (`Spent`).
    Finishing,
    /// Not reusable: the next transaction on its pool takes a new one.
    Spent,
}

impl Shared {
    fn new(phase: Phase) -> Rc<Shared> {
        Rc::new(Shared {
            inner: RefCell::new(Inner::default()),
            live: Cell::new(0),
            phase: Cell::new(phase),
        })
    }
}

/// This thread's transaction states: one per pool instance it ran an
/// outermost transaction on lately (see [`MAX_SLOTS`]), each running,
/// finishing or ready for the next one. Starting a transaction is one
/// thread-local access that finds its pool's state; ending one touches
/// only the state itself (its [`Phase`]), so a small transaction
/// allocates nothing and looks its state up once.
struct States {
    slots: Vec<(u64, Rc<Shared>)>,
}

/// What [`States::enter`] found.
enum Entered {
    /// A transaction on the pool already runs on this thread: join it.
    Nested(Rc<Shared>),
    /// A new outermost transaction, registered, with this state.
    Outer(Rc<Shared>),
}

impl States {
    /// The transaction running on pool `instance`, if any.
    fn running(&self, instance: u64) -> Option<&Rc<Shared>> {
        self.slot(instance, Phase::Running)
            .map(|k| &self.slots[k].1)
    }

    /// Starts a transaction on pool `instance`: the running one, or the
    /// pool's ready state, or a new one.
    fn enter(&mut self, instance: u64) -> Entered {
        if let Some(s) = self.running(instance) {
            return Entered::Nested(s.clone());
        }
        match self.slot(instance, Phase::Ready) {
            Some(k) => {
                let s = &self.slots[k].1;
                s.phase.set(Phase::Running);
                Entered::Outer(s.clone())
            }
            None => self.enter_new(instance),
        }
    }

    /// The index of a slot of pool `instance` in `phase`.
    fn slot(&self, instance: u64, phase: Phase) -> Option<usize> {
        self.slots
            .iter()
            .position(|(i, s)| *i == instance && s.phase.get() == phase)
    }

    /// [`enter`](Self::enter) when the pool has no ready state: a new one
    /// replaces a spent one, or is added (after dropping the states of
    /// other pools that are only ready, when there are many).
    #[inline(never)]
    fn enter_new(&mut self, instance: u64) -> Entered {
        let shared = Shared::new(Phase::Running);
        match self.slot(instance, Phase::Spent) {
            Some(k) => self.slots[k].1 = shared.clone(),
            None => {
                if self.slots.len() >= MAX_SLOTS {
                    self.slots.retain(|(_, s)| {
                        matches!(s.phase.get(), Phase::Running | Phase::Finishing)
                    });
                }
                self.slots.push((instance, shared.clone()));
            }
        }
        Entered::Outer(shared)
    }
}

thread_local! {
    static STATES: RefCell<States> = const {
        RefCell::new(States { slots: Vec::new() })
    };
    /// The lanes this thread used last and, before that, the other one:
    /// the last is tried first next time unless it is parked, then the
    /// other (a thread whose transactions park their lanes alternates
    /// between two, instead of walking through all of them).
    static LANE_HINT: Cell<(u32, u32)> = const { Cell::new((u32::MAX, u32::MAX)) };
}

/// States a thread keeps before it drops those of pools that have no
/// transaction running or finishing (more than one only for transactions
/// on several pools, nested in each other or one after the other).
const MAX_SLOTS: usize = 4;

/// Ends an outermost transaction's hold on its state once its `Tx` is
/// gone: dropped after it (declared before it), on every way out,
/// unwinding included. The state is cleared for the next transaction on
/// the pool, or given up.
struct Recycle(Rc<Shared>);

impl Drop for Recycle {
    fn drop(&mut self) {
        // Only a state nobody else refers to (the thread's slot and this
        // guard), and that its transaction's end left clean (lane, locks
        // and blocks all returned).
        let reset = Rc::strong_count(&self.0) == 2
            && self.0.live.get() == 0
            && self
                .0
                .inner
                .try_borrow_mut()
                .is_ok_and(|mut inner| inner.reset());
        self.0
            .phase
            .set(if reset { Phase::Ready } else { Phase::Spent });
    }
}

/// Whether this thread runs a transaction on pool `instance` that holds a
/// lane (has written or is about to): a read view opened now would wait
/// for it.
pub(crate) fn writing_here(instance: u64) -> bool {
    active(instance).is_some_and(|s| s.inner.try_borrow().map_or(true, |i| i.lane.is_some()))
}

fn active(instance: u64) -> Option<Rc<Shared>> {
    STATES.with(|s| s.borrow().running(instance).cloned())
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
        let shared = match STATES.with(|s| s.borrow_mut().enter(self.instance)) {
            Entered::Nested(shared) => return nested(self, shared, 1, f),
            Entered::Outer(shared) => shared,
        };
        let _recycle = Recycle(shared.clone());
        let mut tx = Tx {
            pool: self,
            shared,
            depth: 0,
        };
        let r = catch_unwind(AssertUnwindSafe(|| f(&mut tx)));
        // No longer running: a transaction started from here on (none
        // is, by this code) would take a state of its own.
        tx.shared.phase.set(Phase::Finishing);
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
        self.materialize(off, size_of::<T>() as u64)?;
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

    /// Stores `value` at `*p`, rolled back if the transaction aborts.
    ///
    /// A small value (a multiple of 8 bytes, at most 64, 8-aligned) that
    /// this transaction has not snapshotted yet goes to the redo log
    /// instead: it is stored at commit, after the commit record, which
    /// spares the snapshot's fence. Reading it back in the same
    /// transaction first stores it in place (snapshotted, as
    /// [`get_mut`](Self::get_mut) would), so every read sees it.
    ///
    /// The fence it saves is eaten by the redo path's extra CPU work: for
    /// a 64-byte update it is level with `get_mut` on one thread. With
    /// several threads writing at once, each thread's drains read the
    /// lanes the others' redo commits left parked, and `get_mut` is faster
    /// (11-17 % on two threads; BENCHMARKS-HISTORY.md, changes 48, 49 and
    /// 54).
    pub fn write<T: Persistent>(&mut self, p: PPtr<T>, value: T) -> Result<()> {
        let off = self.pool.check_typed(p)?;
        self.write_at(p, off, value)
    }

    /// Stores `value` at `*p` and returns the value it replaces, rolled
    /// back if the transaction aborts: [`std::mem::replace`] for pool
    /// memory.
    ///
    /// The same as [`read`](Self::read) then [`write`](Self::write), but
    /// the bytes are locked exclusively at once: a read takes them shared,
    /// and the write must then upgrade the lock, which gives up with
    /// [`Error::Conflict`] if another transaction reads them too. Taking a
    /// pointer out of a slot to free it is the typical use:
    ///
    /// ```
    /// # fn main() -> Result<(), pmem_tx::Error> {
    /// use pmem_tx::{PPtr, Pool};
    /// let dir = tempfile::tempdir().unwrap();
    /// let pool = Pool::create(dir.path().join("replace.pool"), "doc", 8 << 20)?;
    /// let slot = pool.root::<PPtr<u64>>()?;
    /// pool.transaction(|tx| -> Result<(), pmem_tx::Error> {
    ///     let p = tx.alloc::<u64>(1)?;
    ///     tx.write(slot, p)
    /// })?;
    /// pool.transaction(|tx| -> Result<(), pmem_tx::Error> {
    ///     let p = tx.replace(slot, PPtr::null())?;
    ///     tx.free(p)
    /// })?;
    /// assert!(pool.read(slot)?.is_null());
    /// # Ok(()) }
    /// ```
    pub fn replace<T: Persistent>(&mut self, p: PPtr<T>, value: T) -> Result<T> {
        let off = self.pool.check_typed(p)?;
        self.lock_range(off, size_of::<T>() as u64, Mode::Exclusive)?;
        let old = self.read_exclusive(off)?;
        self.write_at(p, off, value)?;
        Ok(old)
    }

    /// [`write`](Self::write) at `p`, which `check_typed` accepted as
    /// offset `off`: deferred when small enough, else snapshotted.
    fn write_at<T: Persistent>(&mut self, p: PPtr<T>, off: u64, value: T) -> Result<()> {
        let len = size_of::<T>();
        if len > 0
            && len.is_multiple_of(8)
            && len <= DEFER_MAX
            && off.is_multiple_of(8)
            && self.defer(off, bytemuck::bytes_of(&value))?
        {
            return Ok(());
        }
        *self.get_mut(p)? = value;
        Ok(())
    }

    /// Takes `bytes` (whole words, 8-aligned `off`) into the redo log if
    /// no byte of them is covered by a snapshot or a fresh block and the
    /// transaction defers few words; returns whether it did.
    fn defer(&mut self, off: u64, bytes: &[u8]) -> Result<bool> {
        let end = off + bytes.len() as u64;
        let new_words;
        {
            let inner = self.shared.inner.borrow();
            if inner.aborted {
                return Err(Error::Aborted);
            }
            // Words already deferred are stored again in their place.
            new_words = if inner.deferred.is_empty() {
                bytes.len() / 8
            } else {
                (off..end)
                    .step_by(8)
                    .filter(|o| !inner.deferred.iter().any(|(x, _)| x == o))
                    .count()
            };
            if self.pool.raw.is_read_only()
                || inner.deferred.len() + new_words > DEFER_WORDS
                || inner.covered.next_gap(off, end) != Some((off, end))
            {
                return Ok(false);
            }
        }
        let all_new = new_words == bytes.len() / 8;
        self.lock_range(off, end - off, Mode::Exclusive)?;
        // Stored after the commit record, just before a fence: its miss
        // would add to that fence's wait unless it starts now.
        self.pool.prefetch_write(off);
        let mut inner = self.shared.inner.borrow_mut();
        let words = (off..).step_by(8).zip(bytes.chunks_exact(8)).map(|(o, w)| {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            (o, u64::from_ne_bytes(word))
        });
        if all_new {
            // None of these words is deferred yet: appended, with no
            // search for each (a plain loop: `extend` of this iterator,
            // which does not know its length, is not inlined).
            inner.deferred.reserve(bytes.len() / 8);
            for w in words {
                inner.deferred.push(w);
            }
        } else {
            for (o, v) in words {
                set_deferred(&mut inner, o, v);
            }
        }
        Ok(true)
    }

    /// Before anything reads or snapshots `off..off+len`: if a deferred
    /// word lies there, stores every deferred word in place the undo way
    /// (snapshot, fence, store), so that the bytes read are the
    /// transaction's own and no guard ever covers a deferred word.
    #[inline]
    fn materialize(&self, off: u64, len: u64) -> Result<()> {
        let words = {
            let mut inner = self.shared.inner.borrow_mut();
            if inner.deferred.is_empty() {
                return Ok(());
            }
            let end = off + len.max(1);
            if !inner.deferred.iter().any(|&(o, _)| o < end && off < o + 8) {
                return Ok(());
            }
            std::mem::take(&mut inner.deferred)
        };
        self.materialize_words(words)
    }

    /// [`materialize`](Self::materialize) of the deferred `words`, which
    /// hold one in `off..off+len`.
    #[inline(never)]
    fn materialize_words(&self, mut words: Vec<(u64, u64)>) -> Result<()> {
        // Consecutive words (one object's) are snapshotted together: one
        // fence per run instead of one per word.
        words.sort_unstable_by_key(|&(o, _)| o);
        let mut i = 0;
        while i < words.len() {
            let start = words[i].0;
            let mut n = 1;
            while i + n < words.len() && words[i + n].0 == start + 8 * n as u64 {
                n += 1;
            }
            if let Err(e) = self.snapshot(start, 8 * n as u64, Flags::NONE) {
                // Not stored yet: the words from here on stay deferred
                // (and still reach the commit, if the caller goes on).
                self.shared.inner.borrow_mut().deferred = words.split_off(i);
                return Err(e);
            }
            for &(o, v) in &words[i..i + n] {
                // SAFETY: `o` is an 8-aligned word of the heap, locked
                // exclusively by this transaction and now snapshotted; no
                // guard covers it (guards are only made after this call,
                // and a deferred word is only made with `&mut self`, when
                // no guard is alive).
                unsafe { (self.pool.raw.base().add(o as usize) as *mut u64).write(v) };
            }
            i += n;
        }
        let mut inner = self.shared.inner.borrow_mut();
        // Keep the vector's capacity for the next transaction.
        words.clear();
        if inner.deferred.is_empty() {
            inner.deferred = words;
        }
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

    /// Locks `off..off+len` exclusively for this transaction, for the
    /// atomic (non-transactional) alloc/free, which then store the
    /// destination pointer's words with
    /// [`redo_store_locked`](Self::redo_store_locked): one lock lookup for
    /// both words.
    pub(crate) fn lock_exclusive(&mut self, off: u64, len: u64) -> Result<()> {
        self.lock_range(off, len, Mode::Exclusive)
    }

    /// Reads the `T` at pool offset `off`, which `check_typed` accepted and
    /// this transaction holds exclusively (`lock_exclusive`): what
    /// [`read`](Self::read) returns, without checking the pointer and
    /// looking its stripes up a second time.
    pub(crate) fn read_exclusive<T: Persistent>(&self, off: u64) -> Result<T> {
        let len = size_of::<T>() as u64;
        self.materialize(off, len)?;
        debug_assert!(
            stripes(off, len).all(|s| self.shared.inner.borrow().held.holds_exclusive(s)),
            "read_exclusive of bytes not locked exclusively"
        );
        // SAFETY: `off..off+len` is in bounds and aligned for `T`
        // (`check_typed`), and locked exclusively by this transaction, so
        // no other thread writes it; this thread writes it only through
        // `&mut self`, which this borrow of `self` excludes.
        Ok(unsafe { (self.pool.raw.base().add(off as usize) as *const T).read() })
    }

    /// Stores `words` at the 8-aligned heap offset `off`, which this
    /// transaction locked exclusively, through the redo log instead of the
    /// undo log: no snapshot, applied after the commit record, so the
    /// destination pointer is published together with the allocation.
    ///
    /// They go in as deferred writes (`Tx::write`), so a read later in
    /// the same transaction (a `free_from` or `alloc_into` that joined a
    /// running one) sees them. Bytes this transaction already snapshotted
    /// (even in part) or allocated are stored in place instead, the undo
    /// way: the commit record checksums them, and a store after the record
    /// would make a crash roll the committed transaction back.
    pub(crate) fn redo_store_locked(&mut self, off: u64, words: &[u64]) -> Result<()> {
        let end = off + 8 * words.len() as u64;
        let deferred = {
            let mut inner = self.shared.inner.borrow_mut();
            let inner = &mut *inner;
            debug_assert!(
                stripes(off, end - off).all(|s| inner.held.holds_exclusive(s)),
                "redo store into words not locked exclusively"
            );
            let untouched = inner.covered.next_gap(off, end) == Some((off, end));
            if untouched {
                for (o, &v) in (off..).step_by(8).zip(words) {
                    set_deferred(inner, o, v);
                }
            }
            untouched
        };
        if !deferred {
            // Snapshots the part not yet covered (nothing, and no fence,
            // if all of it is), and marks the words dirty.
            self.add(off, end - off, Flags::NONE)?;
            for (o, &v) in (off..).step_by(8).zip(words) {
                // SAFETY: an 8-aligned heap word (checked by the caller),
                // locked exclusively by this transaction and now covered
                // by its snapshot or fresh range; no guard is alive (`&mut
                // self`, and a joining call fails while the outer one
                // holds guards).
                unsafe { (self.pool.raw.base().add(o as usize) as *mut u64).write(v) };
            }
        }
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

    /// Reserves a block of `size` bytes with `type_num`, writes its
    /// allocation header, and takes it into the transaction: published at
    /// commit, given back if the transaction aborts. With `Fill::Zero` or
    /// `Fill::Caller` it is locked, not snapshotted (it was no object),
    /// flushed and checksummed at commit; with `Fill::Keep` only its
    /// header is (this transaction never writes its data). Returns its
    /// offset.
    pub(crate) fn reserve(&mut self, size: u64, type_num: u64, fill: Fill) -> Result<u64> {
        let heap = self.pool.heap()?;
        let p = self.pool.raw.persister();
        {
            let mut inner = self.shared.inner.borrow_mut();
            if inner.aborted {
                return Err(Error::Aborted);
            }
            // The block's header is written below: under a lane, as every
            // write to pool memory (`view.rs`).
            self.ensure_lane(&mut inner)?;
        }
        let mut r = self.pool.reserve_block(size, type_num)?;
        if fill != Fill::Keep {
            // A fresh block is nobody's, so locking it must never wait: its
            // stripes can only be held because they alias bytes another
            // transaction uses, and waiting for those while holding our own
            // can deadlock. Set such a block aside (it is given back at the
            // end) and take another; give up trying after a few.
            for _ in 0..FRESH_TRIES {
                match self.try_lock_fresh(r.off, r.usable.max(1)) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        self.shared.inner.borrow_mut().dropped.push(r);
                        return Err(e);
                    }
                }
                let next = self.pool.reserve_block(size, type_num)?;
                self.shared
                    .inner
                    .borrow_mut()
                    .dropped
                    .push(std::mem::replace(&mut r, next));
            }
        }
        let (off, usable, h) = (r.off, r.usable, r.hdr);
        // SAFETY: the reservation is ours alone until commit or cancel.
        unsafe { heap.write_header(p, &r) };
        {
            let mut inner = self.shared.inner.borrow_mut();
            inner.reserved.push(r);
            let (a, b) = (off, off + usable.max(1));
            let he = h + ALLOC_HEADER_SIZE;
            if fill == Fill::Keep {
                // Not covered: a write later in this transaction would be
                // snapshotted (and so flushed and checksummed) as usual.
                inner.dirty.push((h, he));
                inner.fresh.push((h, he));
            } else {
                // Fresh: nothing to snapshot, flushed and checksummed at
                // commit with its allocation header (one range where the
                // header is the block's first bytes, two where it is in
                // its run's header table). A deferred write inside it
                // (through a stale pointer, while the block was free) is
                // dead: stored after the commit record, it would also
                // change bytes the record checksums.
                drop_deferred(&mut inner, a, usable);
                inner.covered.insert(a, b);
                if he == a {
                    inner.dirty.push((h, b));
                    inner.fresh.push((h, b));
                } else {
                    inner.dirty.push((h, he));
                    inner.dirty.push((a, b));
                    inner.fresh.push((h, he));
                    inner.fresh.push((a, b));
                }
            }
        }
        if fill == Fill::Zero {
            // SAFETY: a block reserved by this transaction, locked
            // exclusively by it, that no reference can point to yet.
            unsafe { std::ptr::write_bytes(p.base().add(off as usize), 0, size as usize) };
        }
        Ok(off)
    }

    /// Allocates a `T` holding `value` (type number 0); it becomes
    /// reachable only through what this transaction stores, and vanishes if
    /// it aborts. No snapshot is needed for it.
    ///
    /// Object data is 16-byte aligned. Objects above 896 KiB (a huge span
    /// of the heap) start on a 64-byte cache line, so an element of a
    /// large array whose size divides 64 bytes lies in one line: a
    /// transaction that changes it locks one stripe and flushes one line.
    pub fn alloc<T: Persistent>(&mut self, value: T) -> Result<PPtr<T>> {
        self.alloc_typed(0, value)
    }

    /// [`alloc`](Self::alloc) with a type number (for
    /// [`Pool::objects`](crate::Pool::objects)).
    pub fn alloc_typed<T: Persistent>(&mut self, type_num: u64, value: T) -> Result<PPtr<T>> {
        let p = self.new_ptr::<T>(type_num, false)?;
        *self.fresh_mut(p)? = value;
        Ok(p)
    }

    /// A mutable reference to the object at `p`, which this transaction
    /// has just reserved (`Fill::Caller` or `Fill::Zero`): what
    /// [`get_mut`](Self::get_mut) returns, without its walk through the
    /// snapshot path, which finds nothing to do for a fresh block (it is
    /// covered, so nothing is snapshotted; it is already marked dirty).
    /// Falls back to `get_mut` where that walk would do something: when
    /// `reserve` could not lock every stripe of the block without waiting.
    /// (No deferred write lies inside a fresh block: `reserve` drops them.)
    pub(crate) fn fresh_mut<T: Persistent>(&mut self, p: PPtr<T>) -> Result<TxMut<'_, T>> {
        let off = p.offset();
        let len = size_of::<T>() as u64;
        let direct = {
            let inner = self.shared.inner.borrow();
            let end = off + len.max(1);
            debug_assert_eq!(inner.covered.next_gap(off, end), None, "not a fresh block");
            debug_assert!(!inner.deferred.iter().any(|&(o, _)| o < end && off < o + 8));
            stripes(off, len).all(|s| inner.held.holds_exclusive(s))
        };
        if !direct {
            return self.get_mut(p);
        }
        self.shared.live.set(self.shared.live.get() + 1);
        Ok(TxMut {
            // SAFETY: `off` came from `reserve` (in bounds, aligned for
            // `T`, which `new_ptr` checked), the block is locked
            // exclusively by this transaction and is no object yet, so
            // nothing else reads or writes it; the guard borrows `self`
            // mutably, so it is the only reference from this transaction.
            ptr: unsafe { self.pool.raw.base().add(off as usize) as *mut T },
            live: &self.shared.live,
            _tx: std::marker::PhantomData,
        })
    }

    /// Allocates a zeroed `T`.
    pub fn zalloc<T: Persistent>(&mut self, type_num: u64) -> Result<PPtr<T>> {
        self.new_ptr::<T>(type_num, true)
    }

    fn new_ptr<T>(&mut self, type_num: u64, zero: bool) -> Result<PPtr<T>> {
        if align_of::<T>() > 16 {
            return Err(Error::BadPointer {
                offset: 0,
                size: size_of::<T>() as u64,
                reason: "types aligned to more than 16 bytes cannot be allocated",
            });
        }
        let fill = if zero { Fill::Zero } else { Fill::Caller };
        let off = self.reserve(size_of::<T>().max(1) as u64, type_num, fill)?;
        Ok(PPtr::from_raw(self.pool.id, off))
    }

    /// Allocates `size` bytes with `type_num`, zeroed.
    pub fn alloc_bytes(&mut self, size: u64, type_num: u64) -> Result<PPtr<u8>> {
        let off = self.reserve(size.max(1), type_num, Fill::Zero)?;
        Ok(PPtr::from_raw(self.pool.id, off))
    }

    /// Frees the object at `p` when the transaction commits (nothing
    /// happens if it aborts). Freeing an object this transaction allocated
    /// gives it back at the end. Double frees and pointers that are not the
    /// start of an object are errors.
    ///
    /// The free waits for whoever holds the object's first 64-byte granule
    /// (a guard or a transaction using it); guards into the rest of a large
    /// object do not hold it up, and keep reading the old bytes until they
    /// drop (the block is not handed out again for writing while they
    /// live).
    pub fn free<T>(&mut self, p: PPtr<T>) -> Result<()> {
        let off = self.pool.own(p)?;
        // The object's lock word is taken below, after the bookkeeping:
        // start its miss now (objects larger than a few lines each have
        // their own line of the lock table, which the last free of a
        // neighbour did not bring in).
        self.pool.prefetch_lock(off);
        let heap = self.pool.heap()?;
        {
            let mut inner = self.shared.inner.borrow_mut();
            if inner.aborted {
                return Err(Error::Aborted);
            }
            if let Some(i) = inner.reserved.iter().position(|r| r.off == off) {
                let r = inner.reserved.swap_remove(i);
                drop_deferred(&mut inner, r.off, r.usable);
                // The block goes back to the heap when this transaction
                // ends, and another one may write it at once: the commit
                // record must not checksum it (a crash before this lane's
                // bump is durable would then see a mismatch and roll this
                // transaction back). Its lines are still flushed with the
                // rest, before anyone else can reach them.
                inner.fresh.retain(|&(a, _)| a != r.hdr && a != r.off);
                inner.dropped.push(r);
                return Ok(());
            }
        }
        // Whoever uses the object's first granule (the one holding its
        // first byte, where a whole-object reader starts) must be done
        // with it first. The rest of a large object is not locked:
        // that would cost two locked instructions per 64 bytes (128 for a
        // 4 KiB object), and soundness does not need it. A guard into the
        // rest may outlive the free; it keeps reading the old bytes,
        // because nothing rewrites a freed block's data before it is
        // allocated again, and an allocation that writes the data locks
        // all of it first (`try_lock_fresh`), which waits for the guard.
        // Two frees of one object are told apart by the heap
        // (`free_ops`), not by this lock.
        self.lock_range(off, 1, Mode::Exclusive)?;
        let mut inner = self.shared.inner.borrow_mut();
        let inner = &mut *inner;
        let t = heap.free_ops(self.pool.raw.persister(), off, &mut inner.redo)?;
        // The usable size comes from the heap's volatile map (the ticket):
        // reading the object's header would miss the cache (its line was
        // last flushed when the object was allocated). Deferred writes
        // into the object are dropped only once the free is sure: a
        // refused free leaves them to be stored.
        drop_deferred(inner, off, t.usable);
        inner.freed.push(t);
        Ok(())
    }

    /// Resizes the allocation at `p` to `size` bytes: allocates a new one
    /// with the same type number, copies the common prefix, frees the old
    /// one at commit, and returns the new pointer.
    pub fn realloc(&mut self, p: PPtr<u8>, size: u64) -> Result<PPtr<u8>> {
        let off = self.pool.own(p)?;
        let heap = self.pool.heap()?;
        // An object allocated earlier in this transaction is reserved, not
        // yet published: its reservation knows its size and type.
        let reserved = self
            .shared
            .inner
            .borrow()
            .reserved
            .iter()
            .find(|r| r.off == off)
            .map(|r| pmem_alloc::AllocInfo {
                off,
                size: r.size(),
                usable: r.usable,
                type_num: r.type_num(),
            });
        let old = match reserved {
            Some(info) => info,
            None => heap.alloc_info(self.pool.raw.persister(), off)?,
        };
        self.materialize(old.off, old.size.max(1))?;
        self.lock_range(old.off, old.usable.max(1), Mode::Shared)?;
        let new = self.alloc_bytes(size, old.type_num)?;
        let n = old.size.min(size) as usize;
        let base = self.pool.raw.persister().base();
        // SAFETY: the old object is locked (at least shared) and the new
        // one exclusively by this transaction; both lie in the heap and are
        // distinct blocks; no guard is alive (`&mut self`).
        unsafe {
            std::ptr::copy_nonoverlapping(
                base.add(old.off as usize),
                base.add(new.offset() as usize),
                n,
            )
        };
        self.free(p)?;
        Ok(new)
    }

    /// Takes a lane for this transaction if it has none yet: every write
    /// to pool memory happens under one, which is what lets a read view
    /// (`view.rs`) exclude writers by waiting for idle lanes.
    #[inline]
    fn ensure_lane(&self, inner: &mut Inner) -> Result<()> {
        if inner.lane.is_some() {
            return Ok(());
        }
        self.take_lane(inner)
    }

    /// [`ensure_lane`](Self::ensure_lane) when the transaction has none.
    #[inline(never)]
    fn take_lane(&self, inner: &mut Inner) -> Result<()> {
        let lanes = &self.pool.lanes;
        let (last, other) = LANE_HINT.with(|h| h.get());
        let hint = if last == u32::MAX {
            // Spread threads over the lanes on first use.
            let id = std::thread::current().id();
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&id, &mut h);
            std::hash::Hasher::finish(&h) as u32
        } else if other != u32::MAX && lanes.is_busy(last) {
            other
        } else {
            last
        };
        let lane = loop {
            let lane = match lanes.try_acquire(hint) {
                Some(l) => Some(l),
                None => {
                    // Every lane is held: some may be parked, waiting for
                    // a drain that no one else may come to make.
                    let p = self.pool.raw.persister();
                    self.pool.inval.unpark_all(p, &self.pool.layout, lanes)?;
                    lanes.acquire(hint)
                }
            };
            let Some(lane) = lane else {
                return Ok(());
            };
            if !lanes.views_open() {
                break lane;
            }
            // A read view is open: give the lane back (the view waits for
            // every lane to be free) and wait for the views to close.
            lanes.release(lane);
            if crate::view::held_here(self.pool.instance) {
                return Err(Error::ViewConflict { this_thread: true });
            }
            if !crate::view::wait_until(self.pool.locks.timeout(), || !lanes.views_open()) {
                return Err(Error::ViewConflict { this_thread: false });
            }
        };
        if lane != last {
            LANE_HINT.with(|h| h.set((lane, last)));
        }
        let layout = &self.pool.layout;
        let generation = self.pool.inval.generation(lane);
        inner.lane = Some(lane);
        inner.generation = generation;
        inner.undo = Some(LogWriter::new_batched(
            layout.undo(lane),
            pmem_pool::lane::log_key(lane, generation),
        ));
        Ok(())
    }

    /// Takes `off..off+len` exclusively if every stripe not yet held is
    /// free right now; otherwise takes nothing and returns false.
    fn try_lock_fresh(&self, off: u64, len: u64) -> Result<bool> {
        let mut inner = self.shared.inner.borrow_mut();
        self.try_lock_fresh_in(&mut inner, off, len)
    }

    fn try_lock_fresh_in(&self, inner: &mut Inner, off: u64, len: u64) -> Result<bool> {
        if self.pool.raw.is_read_only() {
            return Ok(false);
        }
        self.ensure_lane(inner)?;
        let token = inner.token();
        let locks = &self.pool.locks;
        let Inner {
            held,
            deps,
            untagged,
            ..
        } = inner;
        *untagged = true;
        Ok(held.take_all_or_none(
            stripes(off, len),
            |s| {
                locks
                    .try_lock_exclusive(s, token)
                    .map(|t| deps.note(t, token))
                    .is_some()
            },
            // Taken and given back at once: what the tag named may still
            // be pending, and the next holder must not trust this lane.
            |s| locks.unlock_exclusive(s, token, Tag::UNKNOWN),
        ))
    }

    fn lock_range(&self, off: u64, len: u64, mode: Mode) -> Result<()> {
        let mut inner = self.shared.inner.borrow_mut();
        self.lock_in(&mut inner, off, len, mode)
    }

    fn lock_in(&self, inner: &mut Inner, off: u64, len: u64, mode: Mode) -> Result<()> {
        if inner.aborted {
            return Err(Error::Aborted);
        }
        if mode == Mode::Exclusive {
            if self.pool.raw.is_read_only() {
                return Err(Error::Pool(pmem_pool::Error::ReadOnly));
            }
            self.ensure_lane(inner)?;
            // Bytes taken over from another transaction: this one now
            // depends on it (see the commit's `seq`).
            inner.locked_since_drain = true;
            inner.untagged = true;
        }
        let token = inner.token();
        let locks = &self.pool.locks;
        let mut new_exclusive = false;
        let Inner { held, deps, .. } = inner;
        let mut note = |t: Option<Tag>| t.map(|t| deps.note(t, token)).is_some();
        // One lookup per stripe (O(1) along a run): the record is updated
        // in place.
        let r = held.update_run(stripes(off, len), |s, held| {
            let ok = match (held, mode) {
                // Already held strongly enough: keep the record as it is
                // (a shared request must not downgrade an exclusive hold).
                (Some(Mode::Exclusive), _) | (Some(Mode::Shared), Mode::Shared) => {
                    return Ok(None);
                }
                (Some(Mode::Shared), Mode::Exclusive) => note(locks.lock_exclusive(s, token, true)),
                (None, Mode::Shared) => locks.lock_shared(s),
                (None, Mode::Exclusive) => note(locks.lock_exclusive(s, token, false)),
            };
            new_exclusive |= mode == Mode::Exclusive;
            if ok {
                Ok(Some(mode))
            } else {
                Err(Error::Conflict { offset: off })
            }
        });
        if new_exclusive {
            // Bytes another transaction may have just released: an order
            // number taken before is too small for them.
            inner.early_seq = None;
        }
        r
    }

    /// Takes this transaction's commit-order number now, once every
    /// stripe it will write is locked (a stripe locked later through
    /// `lock_in` voids it; a fresh block's stripes do not, since no live
    /// log can cover a block the heap handed out: its last owner's frees
    /// waited for that owner's log to be retired).
    /// For the atomic publishers: the number is a locked instruction,
    /// which waits for every store before it; taken before the new
    /// block's header is stored, it does not wait for that store's cache
    /// miss, which then overlaps the rest of the commit up to its fence.
    pub(crate) fn take_seq(&mut self) {
        let seq = self
            .pool
            .seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.shared.inner.borrow_mut().early_seq = Some(seq);
    }

    /// The heart of `add_range`: lock, snapshot what is not yet covered,
    /// one fence, remember what to flush.
    fn add(&mut self, off: u64, len: u64, flags: Flags) -> Result<()> {
        self.materialize(off, len)?;
        self.snapshot(off, len, flags)
    }

    /// `add` without the deferred-word check. Takes `&self` for
    /// `materialize`; the bytes it snapshots are covered by no guard: with
    /// `&mut self` (from `add`) no guard is alive, and the words
    /// `materialize` passes are covered by none.
    fn snapshot(&self, off: u64, len: u64, flags: Flags) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.lock_range(off, len, Mode::Exclusive)?;
        let mut inner = self.shared.inner.borrow_mut();
        let inner = &mut *inner;
        let p = self.pool.raw.persister();
        let end = off + len;
        if !flags.no_snapshot {
            // The transaction's first undo entry starts the lane's undo log.
            let first = inner.entries.is_empty();
            let mut appended = false;
            let mut undo = inner.undo.take().ok_or(Error::Aborted)?;
            let mut result = Ok(());
            // The gaps are found one at a time (no buffer): each starts
            // where the previous one ended.
            let mut cur = off;
            'gaps: while let Some((ga, gb)) = inner.covered.next_gap(cur, end) {
                cur = gb;
                let mut a = ga;
                while a < gb {
                    let b = gb.min(a + MAX_PIECE);
                    // SAFETY: `a..b` is inside the heap or state block
                    // (checked by the caller), locked exclusively by this
                    // transaction, and no reference to it is alive (see
                    // `snapshot`'s comment).
                    let src = unsafe {
                        std::slice::from_raw_parts(p.base().add(a as usize), (b - a) as usize)
                    };
                    match self.append_entry(inner, &mut undo, EntryKind::Snapshot, a, src) {
                        Ok(payload_off) => {
                            inner.entries.push(UndoEntry {
                                target: a,
                                len: (b - a) as u32,
                                payload_off,
                            });
                            inner.covered.insert(a, b);
                            appended = true;
                        }
                        Err(e) => {
                            result = Err(e);
                            break 'gaps;
                        }
                    }
                    a = b;
                }
            }
            if appended && first {
                self.copy_generation(inner, &mut undo);
            }
            undo.flush(p);
            inner.undo = Some(undo);
            if appended {
                self.drain(inner)?;
            }
            result?;
        } else {
            // Old bytes changed without snapshot: a finished transaction's
            // commit record may still checksum them, so its invalidation
            // must be durable before they change (and this commit cannot
            // checksum them: it takes the strict path).
            inner.unsnapped = true;
            if self.pool.inval.any() {
                self.drain(inner)?;
            }
            inner.covered.insert(off, end);
        }
        if !flags.no_flush {
            inner.dirty.push((off, end));
        }
        Ok(())
    }

    /// Writes this transaction's generation into its lane's copy, in a
    /// pool that keeps one, and notes it for the coming drain: the copy
    /// holds the lane's previous bump once that drain is done, so the
    /// drain need not write back the lane's generation word (a line the
    /// previous commit stored into; writing it back costs tx_update about
    /// a tenth of its time). Streamed like the undo entry it goes with,
    /// into the same line.
    fn copy_generation(&self, inner: &mut Inner, undo: &mut LogWriter) {
        let Some(lane) = inner.lane else {
            return;
        };
        let Some(off) = self.pool.layout.generation_copy_off(lane) else {
            return;
        };
        let p = self.pool.raw.persister();
        // SAFETY: this transaction holds the lane, so it owns the lane's
        // undo area, whose first (8-aligned) word this is, inside the
        // mapping; the source is a local.
        unsafe { undo.write_beside(p, off, &inner.generation.to_le_bytes()) };
        inner.gen_copied = true;
    }

    /// Appends one entry to `w`, continuing the log in a new overflow
    /// block from the heap when the current area is full.
    #[inline]
    fn append_entry(
        &self,
        inner: &mut Inner,
        w: &mut LogWriter,
        kind: EntryKind,
        target: u64,
        payload: &[u8],
    ) -> Result<usize> {
        let p = self.pool.raw.persister();
        // SAFETY: this transaction holds the lane, so it owns the lane's
        // log areas, and it reserved and locked every overflow block the
        // writer continued into; `payload` lies outside them (user data or
        // a local).
        match unsafe { w.append(p, kind, target, payload) } {
            Ok(at) => Ok(at),
            Err(e) => self.append_entry_slow(inner, w, kind, target, payload, e),
        }
    }

    /// [`append_entry`](Self::append_entry) when the entry did not fit
    /// (`err`): continues the log in overflow blocks until it does.
    #[inline(never)]
    fn append_entry_slow(
        &self,
        inner: &mut Inner,
        w: &mut LogWriter,
        kind: EntryKind,
        target: u64,
        payload: &[u8],
        mut err: pmem_pool::Error,
    ) -> Result<usize> {
        let p = self.pool.raw.persister();
        loop {
            match err {
                pmem_pool::Error::LogFull { .. } if self.pool.heap.is_some() => {
                    let area = self.overflow_area(inner, entry_size(payload.len()))?;
                    // SAFETY: as in `append_entry`; `area` was just
                    // reserved and locked.
                    unsafe { w.chain(p, area)? };
                }
                e => return Err(e.into()),
            }
            // SAFETY: as in `append_entry`.
            match unsafe { w.append(p, kind, target, payload) } {
                Ok(at) => return Ok(at),
                Err(e) => err = e,
            }
        }
    }

    /// Reserves (never publishes) a heap block for the log to continue in:
    /// at least `need` bytes, growing with the number already taken.
    fn overflow_area(&self, inner: &mut Inner, need: usize) -> Result<LogArea> {
        let grow = OVERFLOW_MIN << inner.overflow.len().min(6);
        let size = (need + CONTINUE_RESERVE).max(grow);
        // As in `reserve`: never wait for a fresh block's stripes.
        let mut r = self.pool.reserve_block(size as u64, OVERFLOW_TYPE_NUM)?;
        let mut locked = false;
        for _ in 0..FRESH_TRIES {
            match self.try_lock_fresh_in(inner, r.off, r.usable) {
                Ok(true) => {
                    locked = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    inner.overflow.push(r);
                    return Err(e);
                }
            }
            let next = self.pool.reserve_block(size as u64, OVERFLOW_TYPE_NUM)?;
            inner.overflow.push(std::mem::replace(&mut r, next));
        }
        let area = LogArea {
            off: r.off as usize,
            cap: (r.usable as usize) & !7,
        };
        let (off, usable) = (r.off, r.usable);
        inner.overflow.push(r);
        if !locked {
            self.lock_in(inner, off, usable, Mode::Exclusive)?;
        }
        Ok(area)
    }

    /// Gives the overflow blocks back; only once the logs in them are
    /// stale (after the generation bump) or were never needed.
    #[inline]
    fn return_overflow(&self, inner: &mut Inner) {
        if !inner.overflow.is_empty() {
            self.cancel_overflow(inner);
        }
    }

    #[inline(never)]
    fn cancel_overflow(&self, inner: &mut Inner) {
        if let Some(heap) = self.pool.heap.as_ref() {
            for r in inner.overflow.drain(..) {
                heap.cancel(r);
            }
        }
    }

    /// Gives back the stripes, persistent locks and lane. `committed`: the
    /// transaction committed, so the stripes it held exclusively may name
    /// its lane (`locks::Tag`) if its last drain covered their tags.
    fn release(&self, inner: &mut Inner, committed: bool) {
        // (A read-only or empty transaction holds nothing: no walk of the
        // sets then.)
        if !inner.held.is_empty() {
            let token = inner.token();
            let tag = if committed && !inner.untagged {
                Tag::token(token)
            } else {
                Tag::UNKNOWN
            };
            let locks = &self.pool.locks;
            for (&s, &m) in inner.held.iter() {
                match m {
                    Mode::Shared => locks.unlock_shared(s),
                    Mode::Exclusive => locks.unlock_exclusive(s, token, tag),
                }
            }
            inner.held.clear();
        }
        if !inner.plocks.is_empty() {
            inner.plocks.release_all(self.pool);
        }
        if let Some(l) = inner.lane.take()
            && !std::mem::take(&mut inner.parked)
        {
            self.pool.lanes.release(l);
        }
        inner.undo = None;
    }

    fn finish_commit(&mut self) -> Result<()> {
        let mut inner = self.shared.inner.borrow_mut();
        let inner = &mut *inner;
        let r = self.commit_durably(inner);
        if r.is_ok() {
            self.release(inner, true);
            if std::mem::take(&mut inner.tidy) {
                self.tidy();
            }
        }
        r
    }

    /// Unmarks the lanes no one holds (`Invalidation::tidy`), after the
    /// commit gave back its locks and lane: their locked instructions
    /// already waited for the commit's flushes, so this fence waits only
    /// for its own. A failure here leaves the marks set, which costs
    /// flushes, not durability: the transaction stays committed.
    fn tidy(&self) {
        let p = self.pool.raw.persister();
        let layout = &self.pool.layout;
        let heap = self.pool.heap.as_ref();
        let _ = self.pool.inval.tidy(&self.pool.lanes, heap, |lanes| {
            p.order_flushes_after_loads();
            for &l in lanes {
                p.flush_word(layout.generation_off(l));
            }
            p.drain()
        });
    }

    /// Drains, first flushing every lane's unfenced generation bump
    /// (`invalidate.rs`); the first drain after taking the lane settles
    /// the lane's own previous bump.
    fn drain(&self, inner: &mut Inner) -> Result<()> {
        let p = self.pool.raw.persister();
        // Its own lane's previous bump is durable after an earlier drain of
        // this transaction, or after this one if the lane's copy was
        // written for it.
        let own = if inner.settled || inner.gen_copied {
            inner.lane
        } else {
            None
        };
        let inval = &self.pool.inval;
        let me = crate::invalidate::thread_token();
        let Inner {
            claims,
            claimed_lines,
            entries,
            dirty,
            deferred,
            redo,
            unsnapped,
            deps,
            reserved,
            freed,
            fresh,
            overflow,
            ..
        } = &mut *inner;
        // A transaction that changes no heap metadata, writes nothing
        // without snapshot or through the redo log, and claimed no parked
        // lane depends only on the transactions that last held its stripes
        // exclusively (their tags), so the pending bumps it makes durable
        // are theirs and its own thread's. Anything else may overwrite
        // words no stripe covers, and makes every pending bump durable.
        // (Asked only of another thread's marked lane: a thread alone
        // never pays for the question.) A drain that claimed parked lanes
        // left `deps.unknown` set, so that case needs no test of its own.
        debug_assert!(claimed_lines.is_empty() || deps.unknown);
        let deps = &*deps;
        let flush_other = |lane: u32| {
            let targeted = !deps.unknown
                && redo.is_empty()
                && deferred.is_empty()
                && !*unsnapped
                && reserved.is_empty()
                && freed.is_empty()
                && fresh.is_empty()
                && overflow.is_empty();
            !targeted || deps.contains(lane)
        };
        // This thread's parked lane, and another thread's whose bytes this
        // transaction changes: its apply must be durable (and its bump
        // stored) before those changes can be. Others are left to their
        // own threads' next drains (claiming them costs both threads),
        // unless they stay parked for several of ours (`stale`).
        let mut looked = false;
        let want = |i: &ParkedInfo<'_>| {
            i.owner == me
                || *unsnapped
                || touches(
                    i,
                    entries
                        .iter()
                        .map(|e| (e.target, e.target + u64::from(e.len))),
                )
                || touches(i, dirty.iter().copied())
                || touches(i, deferred.iter().map(|&(o, _)| (o, o + 8)))
                || touches(i, redo.iter().map(|op| (op.off(), op.off() + 8)))
                || crate::invalidate::stale(i, &mut looked)
        };
        let before = claimed_lines.len();
        let mine = LANE_HINT.with(|h| h.get());
        let tidy = inval.flush_pending(
            p,
            &self.pool.layout,
            own,
            mine,
            &self.pool.lanes,
            claims,
            claimed_lines,
            want,
            flush_other,
        );
        inner.tidy |= tidy;
        // At the commit point the redo ops are applied right after this
        // fence (earlier drains of a transaction find `redo` empty, or
        // start these loads early), into lines the flushes above may just
        // have written back and evicted (a bitmap word or a line of
        // pointer slots the previous operation applied to, parked, and
        // this drain flushed): start loading them now, so that their
        // misses overlap each other and the fence instead of stalling the
        // apply's locked instructions one after the other.
        for op in inner.redo.iter() {
            self.pool.prefetch_write(op.off());
        }
        if let Err(e) = p.drain() {
            // The claimed lanes stay parked, for a later drain.
            inner.claims.clear();
            inner.claimed_lines.truncate(before);
            return Err(e.into());
        }
        // This drain covered every tag noted so far.
        inner.untagged = false;
        if !inner.claims.is_empty() {
            inval.bump_claimed(&mut inner.claims, p, &self.pool.layout, &self.pool.lanes);
            // Those bumps are stored after the fence: only a later drain
            // that flushes every pending bump makes them durable.
            inner.deps.unknown = true;
            inner.untagged = true;
        }
        inner.locked_since_drain = false;
        if let (Some(lane), false) = (inner.lane, inner.settled) {
            inner.settled = true;
            self.pool.inval.settled(lane, self.pool.heap.as_ref());
        }
        Ok(())
    }

    fn commit_durably(&self, inner: &mut Inner) -> Result<()> {
        let p = self.pool.raw.persister();
        // Deferred writes go into the redo log: applied after the commit
        // record, then drained before the log is retired, as the heap's.
        if !inner.deferred.is_empty() {
            inner.redo.extend(
                inner
                    .deferred
                    .drain(..)
                    .map(|(off, val)| RedoOp::Set64 { off, val }),
            );
        }
        if let Some(heap) = self.pool.heap.as_ref() {
            for r in &inner.reserved {
                heap.publish_ops(r, &mut inner.redo);
            }
        }
        let heap_ops = !inner.redo.is_empty();
        if inner.entries.is_empty() && !heap_ops {
            // Nothing logged: at most bytes written without snapshot.
            if !inner.dirty.is_empty() {
                self.write_back_dirty(inner);
                self.drain(inner)?;
            }
            self.finish_heap(inner, None);
            return Ok(());
        }
        self.ensure_lane(inner)?;
        let lane = inner.lane.ok_or(Error::Aborted)?;
        // Commit order matters only between committed logs that can be
        // valid at once and depend on each other. Every drain persists the
        // pending bumps of the transactions whose bytes this one locked
        // before it, so a later one's log can be valid together with an
        // earlier one's only if it locked bytes exclusively after its last
        // drain (or never drained: no snapshot). Those take the next
        // number; the others keep 0, which orders them before any
        // transaction that depends on them. This spares a snapshotting
        // transaction a locked instruction after its snapshot fence, which
        // would wait for that fence instead of letting it overlap the
        // commit's work.
        let early = inner.early_seq.take();
        let seq = if inner.entries.is_empty()
            || inner.locked_since_drain
            || !inner.claimed_lines.is_empty()
        {
            early.unwrap_or_else(|| {
                self.pool
                    .seq
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            })
        } else {
            0
        };
        let covered: u64 = inner.entries.iter().map(|e| u64::from(e.len)).sum::<u64>()
            + inner.fresh.iter().map(|(a, b)| b - a).sum::<u64>();
        let mut strict = inner.unsnapped || covered > CRC_LIMIT || !inner.overflow.is_empty();
        let mut w = LogWriter::new_batched(
            self.pool.layout.redo(lane, inner.generation),
            pmem_pool::lane::log_key(lane, inner.generation),
        );
        inner.redo_written = true;
        let ops = std::mem::take(&mut inner.redo);
        let fresh = std::mem::take(&mut inner.fresh);
        let logged = (|| -> Result<()> {
            if !strict {
                for &(a, b) in &fresh {
                    self.append_entry(inner, &mut w, EntryKind::Fresh, a, &(b - a).to_le_bytes())?;
                }
            }
            let mut rest = &ops[..];
            while let Some(op) = rest.first() {
                // The entry's payload: `n` words of `buf`.
                let mut buf = [0u8; 8 * COPY_WORDS];
                let (kind, off, n) = match *op {
                    RedoOp::Set64 { off, .. } => {
                        // Stores to consecutive words (a pointer is two,
                        // a deferred write up to four) are one `Copy`
                        // entry: 16 bytes of log less per extra word, so
                        // that an allocation's log and commit record fit
                        // in two lines. Applied in place as before, word
                        // by word; only recovery sees the `Copy`.
                        let mut n = 0;
                        for (k, next) in rest.iter().take(COPY_WORDS).enumerate() {
                            match *next {
                                RedoOp::Set64 { off: o, val } if o == off + 8 * k as u64 => {
                                    buf[8 * k..8 * k + 8].copy_from_slice(&val.to_le_bytes());
                                    n = k + 1;
                                }
                                _ => break,
                            }
                        }
                        let kind = if n == 1 {
                            EntryKind::Set64
                        } else {
                            EntryKind::Copy
                        };
                        (kind, off, n)
                    }
                    RedoOp::Or64 { off, mask } => {
                        buf[..8].copy_from_slice(&mask.to_le_bytes());
                        (EntryKind::Or64, off, 1)
                    }
                    RedoOp::AndNot64 { off, mask } => {
                        buf[..8].copy_from_slice(&mask.to_le_bytes());
                        (EntryKind::AndNot64, off, 1)
                    }
                };
                self.append_entry(inner, &mut w, kind, off, &buf[..8 * n])?;
                rest = &rest[n..];
            }
            Ok(())
        })();
        inner.redo = ops;
        inner.fresh = fresh;
        logged?;
        // A redo log that overflowed into heap blocks is strict too (its
        // blocks must not be reused before the bump is durable).
        strict |= !inner.overflow.is_empty();
        let mut info = CommitInfo {
            seq,
            n_undo: u32::try_from(inner.entries.len()).unwrap_or(u32::MAX),
            data_crc: 0,
            flags: 0,
        };
        if !strict {
            // Checksummed before the data is flushed: a flush may evict
            // the lines (clflushopt does, and clwb on some processors),
            // and the checksum would then read them back from memory.
            info.flags = CommitInfo::DATA_CRC;
            info.data_crc = self.data_crc(inner);
        }
        self.write_back_dirty(inner);
        w.flush(p);
        if strict || changed_claimed(inner) {
            // The data first, then the record that commits it. Or: a drain
            // of this transaction bumped parked lanes whose redo it changed
            // in place; a crash must not find this record durable while
            // their logs, which recovery would replay over those changes,
            // are still valid.
            self.drain(inner)?;
        }
        // SAFETY: as in `append_entry` (this transaction holds the lane).
        match unsafe { w.append_commit_info(p, &info) } {
            Ok(()) => {}
            Err(pmem_pool::Error::LogFull { .. }) => {
                // Continue the log to fit the record, then commit it.
                let area = self.overflow_area(inner, entry_size(pmem_pool::ulog::COMMIT_INFO))?;
                // SAFETY: as above; `area` was just reserved and locked.
                unsafe {
                    w.chain(p, area)?;
                    w.append_commit_info(p, &info)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
        w.flush(p);
        // The commit point.
        self.drain(inner)?;
        if heap_ops
            && inner.entries.is_empty()
            && inner.overflow.is_empty()
            && inner.fresh.len() <= PARK_FRESH
        {
            // Nothing to roll back: park the lane instead of fencing the
            // apply, if its lines fit (`invalidate.rs`).
            let mut lines = [0u64; PARK_LINES];
            let mut n = 0;
            let fits = inner.redo.iter().all(|op| {
                let line = op.off() & !63;
                if lines[..n].contains(&line) {
                    return true;
                }
                if n == PARK_LINES {
                    return false;
                }
                lines[n] = line;
                n += 1;
                true
            });
            if fits {
                // SAFETY: as for `apply_ops_nodrain` below.
                unsafe { pmem_alloc::apply_ops_unflushed(p, &inner.redo) };
                self.pool.inval.park(lane, &lines[..n], &inner.fresh);
                inner.parked = true;
                inner.redo_written = false;
                self.finish_heap(inner, Some(lane));
                return Ok(());
            }
        }
        if heap_ops {
            // SAFETY: the ops come from the heap's `publish_ops`/`free_ops`
            // and `redo_store_locked`: heap metadata words, only ever
            // accessed atomically, and words this transaction holds
            // exclusively.
            unsafe { pmem_alloc::apply_ops_nodrain(p, &inner.redo) };
            // The heap metadata is updated (before the bump below can
            // become durable).
            self.drain(inner)?;
        }
        let bumped = inner.generation.wrapping_add(1);
        let lazy = inner.overflow.is_empty();
        if lazy {
            // Not flushed here: every later drain flushes the marked
            // lanes' words, and a flush in flight would make every locked
            // instruction until then (releasing the locks and the lane)
            // wait for it. Marked first: a locked instruction after the
            // store would wait for it (its line is usually not cached any
            // more). Published after the store (`Invalidation::tidy`).
            self.pool.inval.mark(lane);
            write_generation(p, &self.pool.layout, lane, inner.generation);
            self.pool.inval.set_generation(lane, bumped);
        } else {
            // Overflow blocks go back to the heap now: the bump first.
            store_generation(p, &self.pool.layout, lane, inner.generation);
            self.pool.inval.set_generation(lane, bumped);
            p.drain()?;
        }
        inner.entries.clear();
        inner.redo_written = false;
        self.return_overflow(inner);
        self.finish_heap(inner, lazy.then_some(lane));
        Ok(())
    }

    /// Starts making the bytes this transaction wrote in place durable
    /// (its snapshotted ranges, fresh blocks and their headers): each byte
    /// once, by streaming its words again (`Persister::restream`), which
    /// the commit's fence waits for less than for written-back lines.
    fn write_back_dirty(&self, inner: &mut Inner) {
        let p = self.pool.raw.persister();
        for (a, b) in merged_ranges(&mut inner.dirty) {
            // SAFETY: every dirty range is locked exclusively by this
            // transaction (snapshotted) or reserved by it (a fresh block
            // and its header), and no guard is alive (the closure
            // returned): no one else writes these bytes, no reference
            // points into them.
            unsafe { p.restream(a as usize, (b - a) as usize) };
        }
    }

    /// CRC-32 of the committed data, as recovery computes it
    /// (`pmem_pool::lane::data_crc`): each undo entry's range, then each
    /// fresh range, in log order.
    fn data_crc(&self, inner: &Inner) -> u32 {
        let base = self.pool.raw.base();
        let mut h = pmem_pool::crc::Crc32c::new();
        let ranges = inner
            .entries
            .iter()
            .map(|e| (e.target, e.target + u64::from(e.len)))
            .chain(inner.fresh.iter().copied());
        for (a, b) in ranges {
            // SAFETY: every range lies in the heap or state block, locked
            // exclusively by this transaction, with no guard alive (the
            // closure returned): nothing writes it while it is read.
            h.update(unsafe { std::slice::from_raw_parts(base.add(a as usize), (b - a) as usize) });
        }
        h.finalize()
    }

    /// Hands the heap what the commit published, freed and dropped. Frees
    /// wait for `pending`'s bump to be durable: the lane whose bump this
    /// commit left unfenced, if any.
    #[inline]
    fn finish_heap(&self, inner: &mut Inner, pending: Option<u32>) {
        // A published block stays unavailable: nothing to do for it.
        inner.reserved.clear();
        // (Most transactions free and drop nothing: no call then.)
        if !inner.freed.is_empty() || !inner.dropped.is_empty() {
            self.return_blocks(inner, pending);
        }
        inner.redo.clear();
        inner.fresh.clear();
    }

    /// [`finish_heap`](Self::finish_heap) of the blocks the transaction
    /// freed (released now, or once `pending`'s bump is durable) and of
    /// the reservations it dropped.
    #[inline(never)]
    fn return_blocks(&self, inner: &mut Inner, pending: Option<u32>) {
        if let Some(heap) = self.pool.heap.as_ref() {
            if !inner.freed.is_empty() {
                match pending {
                    Some(l) => self.pool.inval.defer(l, &mut inner.freed),
                    None => heap.release_frees(&mut inner.freed),
                }
            }
            if !inner.dropped.is_empty() {
                for r in inner.dropped.drain(..) {
                    heap.cancel(r);
                }
            }
        }
    }

    fn finish_abort(&mut self) -> Result<()> {
        let mut inner = self.shared.inner.borrow_mut();
        let inner = &mut *inner;
        let p = self.pool.raw.persister();
        let r = (|| -> Result<()> {
            // Fresh blocks this transaction wrote are free again; flush
            // them anyway, allocation header included (`reserve` wrote it,
            // in its run's header table, or before the data), so that no
            // line is left dirty behind the transaction (the rollback
            // below drains them).
            let fresh: Vec<(u64, u64)> = inner
                .reserved
                .iter()
                .chain(inner.dropped.iter())
                .flat_map(|r| {
                    [
                        (r.hdr, r.hdr + ALLOC_HEADER_SIZE),
                        (r.off, r.off + r.usable.max(1)),
                    ]
                })
                .collect();
            let mut fresh = fresh;
            for (a, b) in merged_lines(&mut fresh) {
                p.flush(a as usize, (b - a) as usize);
            }
            let logged = !inner.entries.is_empty() || inner.redo_written;
            if !fresh.is_empty() && !logged {
                p.drain()?;
            }
            if let (Some(lane), true) = (inner.lane, logged) {
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
                store_generation(p, &self.pool.layout, lane, inner.generation);
                self.pool
                    .inval
                    .set_generation(lane, inner.generation.wrapping_add(1));
                p.drain()?;
                // The lane's word is durable: so is its previous bump.
                inner.settled = true;
                self.pool.inval.settled(lane, self.pool.heap.as_ref());
            }
            Ok(())
        })();
        // The logs are stale now (or the abort failed and they stay valid
        // for recovery: then keep the blocks out of the heap's hands).
        if r.is_ok() {
            self.return_overflow(inner);
        } else {
            inner.overflow.clear();
        }
        inner.entries.clear();
        inner.redo_written = false;
        inner.redo.clear();
        inner.deferred.clear();
        inner.fresh.clear();
        inner.unsnapped = false;
        if let Some(heap) = self.pool.heap.as_ref() {
            for r in inner.reserved.drain(..).chain(inner.dropped.drain(..)) {
                heap.cancel(r);
            }
            for t in inner.freed.drain(..) {
                heap.cancel_free(t);
            }
        }
        self.release(inner, false);
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
                self.release(inner, false);
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

/// Whether the 64-byte line at `line` holds a byte of `a..b`.
fn line_in(line: u64, a: u64, b: u64) -> bool {
    line < b && a < line + 64
}

/// Whether any of `ranges` (pool offsets, end exclusive) shares a line
/// with a parked lane's redo apply or a byte with its fresh blocks.
fn touches(i: &ParkedInfo<'_>, ranges: impl Iterator<Item = (u64, u64)>) -> bool {
    for (a, b) in ranges {
        if i.lines.iter().any(|&l| line_in(l, a, b))
            || i.fresh.iter().any(|&(fa, fb)| fa < b && a < fb)
        {
            return true;
        }
    }
    false
}

/// Whether a snapshotted range (changed in place) shares a line with the
/// redo apply of a lane this transaction's drains claimed.
fn changed_claimed(inner: &Inner) -> bool {
    !inner.claimed_lines.is_empty()
        && inner.entries.iter().any(|e| {
            let (a, b) = (e.target, e.target + u64::from(e.len));
            inner.claimed_lines.iter().any(|&l| line_in(l, a, b))
        })
}

/// Records `v` as the deferred value of the word at `off`, replacing an
/// earlier one.
fn set_deferred(inner: &mut Inner, off: u64, v: u64) {
    match inner.deferred.iter_mut().find(|(x, _)| *x == off) {
        Some(e) => e.1 = v,
        None => inner.deferred.push((off, v)),
    }
}

/// Forgets the deferred writes into an object being freed: they would
/// only store into a dead block.
fn drop_deferred(inner: &mut Inner, off: u64, usable: u64) {
    inner
        .deferred
        .retain(|&(o, _)| !(off <= o && o < off + usable.max(1)));
}

/// Sorts byte ranges and merges those that overlap or touch, so that each
/// byte is written back once. Works in place (the merged ranges are
/// compacted to the front of `ranges`, the rest is left over), allocating
/// nothing.
fn merged_ranges(ranges: &mut [(u64, u64)]) -> impl ExactSizeIterator<Item = (u64, u64)> + '_ {
    // (One range, the common case, has nothing to sort or merge.)
    let mut n = ranges.len();
    if n > 1 {
        ranges.sort_unstable();
        n = 0;
        for i in 0..ranges.len() {
            let (a, b) = ranges[i];
            if n > 0 && a <= ranges[n - 1].1 {
                ranges[n - 1].1 = ranges[n - 1].1.max(b);
            } else {
                ranges[n] = (a, b);
                n += 1;
            }
        }
    }
    ranges[..n].iter().copied()
}

/// Rounds ranges out to cache lines, sorts and merges them, so that each
/// line is flushed once. Works in place (the merged ranges are compacted
/// to the front of `ranges`, the rest is left over), allocating nothing.
fn merged_lines(ranges: &mut [(u64, u64)]) -> impl ExactSizeIterator<Item = (u64, u64)> + '_ {
    const L: u64 = pmem_pool::persist::CACHE_LINE as u64;
    for r in ranges.iter_mut() {
        *r = (r.0 / L * L, r.1.next_multiple_of(L));
    }
    merged_ranges(ranges)
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
    fn lines_are_flushed_once() {
        let mut r = vec![(70, 80), (0, 8), (60, 66), (200, 300)];
        let got: Vec<_> = merged_lines(&mut r).collect();
        assert_eq!(got, vec![(0, 128), (192, 320)]);
        let mut one = vec![(130, 131)];
        assert_eq!(merged_lines(&mut one).collect::<Vec<_>>(), vec![(128, 192)]);
        assert_eq!(merged_lines(&mut []).len(), 0);
    }

    #[test]
    fn bytes_are_written_back_once_and_only_theirs() {
        // Overlapping and touching ranges merge; a gap, even inside one
        // line, keeps two ranges (the bytes between are not this
        // transaction's to rewrite).
        let mut r = vec![(70, 80), (0, 8), (8, 16), (60, 66), (64, 72), (200, 300)];
        let got: Vec<_> = merged_ranges(&mut r).collect();
        assert_eq!(got, vec![(0, 16), (60, 80), (200, 300)]);
        let mut one = vec![(130, 131)];
        assert_eq!(
            merged_ranges(&mut one).collect::<Vec<_>>(),
            vec![(130, 131)]
        );
        assert_eq!(merged_ranges(&mut []).len(), 0);
    }

    #[test]
    fn an_early_commit_number_is_voided_by_a_later_exclusive_lock() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::create(dir.path().join("seq.pool"), "seq", 8 << 20).unwrap();
        let root = pool.root::<[u64; 64]>().unwrap();
        let early = |tx: &Tx<'_>| tx.shared.inner.borrow().early_seq;
        pool.transaction(|tx| -> Result<()> {
            tx.lock_exclusive(root.offset(), 8)?;
            tx.redo_store_locked(root.offset(), &[1])?;
            tx.take_seq();
            let taken = early(tx);
            assert!(taken.is_some());
            // The same stripe again, shared reads, a fresh block: kept.
            tx.lock_exclusive(root.offset() + 8, 8)?;
            tx.redo_store_locked(root.offset() + 8, &[2])?;
            tx.read(root.cast::<u64>().at(40))?;
            let p = tx.alloc([0u64; 16])?;
            tx.write(p, [1; 16])?;
            assert_eq!(early(tx), taken);
            // Bytes newly locked exclusively: voided.
            tx.write(root.cast::<u64>().at(32), 3)?;
            assert_eq!(early(tx), None);
            Ok(())
        })
        .unwrap();
        assert_eq!(pool.read(root.cast::<u64>().at(32)).unwrap(), 3);
    }

    #[test]
    fn deps_note_other_lanes_up_to_four_then_every_lane() {
        let token = 8; // lane 7
        let mut d = Deps::default();
        d.note(Tag::NONE, token);
        d.note(Tag(8), token);
        assert_eq!((d.n, d.unknown), (0, false), "nothing and its own lane");
        for t in [3, 3, 5, 3, 9, 12] {
            d.note(Tag(t), token);
        }
        assert_eq!((d.n, d.unknown), (4, false));
        assert!(d.contains(2) && d.contains(4) && d.contains(8) && d.contains(11));
        assert!(!d.contains(7), "its own lane is not a dependency");
        d.note(Tag(20), token);
        assert!(d.unknown, "a fifth lane means every lane");

        let mut d = Deps::default();
        d.note(Tag::UNKNOWN, token);
        assert!(d.unknown);
        // A lane whose token is the unknown tag's value (too large for the
        // field) must not take an unknown tag for its own.
        let mut d = Deps::default();
        d.note(Tag::UNKNOWN, u64::from(Tag::UNKNOWN.0));
        assert!(d.unknown);
    }
}
