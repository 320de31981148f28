//! Lazy log invalidation: a transaction's generation bump is stored at
//! commit, but flushed and fenced by a later drain: its thread's next one,
//! or that of a transaction that depends on it.
//!
//! A transaction's commit record carries a checksum of its data, so data
//! and record share one fence and recovery keeps the transaction whenever
//! the record is valid and the data matches. What must never happen is a
//! later change to the same bytes reaching the media while the record is
//! still valid: recovery would see a mismatch and roll a finished
//! transaction back. Every later change is preceded by a drain that also
//! persists the generation words of the lanes whose bump is not yet fenced
//! and that the change may depend on: the lanes named by the tags of the
//! stripes the changing transaction took (`locks::Tag`), or every such
//! lane for a transaction that changes bytes no stripe covers:
//! - a snapshotted write: the snapshot's drain (fence 1) precedes it;
//! - a write without snapshot to non-fresh bytes (`NO_SNAPSHOT`): `Tx::add`
//!   drains first when any bump is pending;
//! - a redo change (heap metadata, `alloc_into`'s destination): the commit
//!   record's drain precedes the apply;
//! - a block this transaction freed, written by the next owner as a fresh
//!   block without any drain: the block goes back to the heap only after
//!   this lane's bump is durable ([`Invalidation::defer`]).
//!
//! A transaction that logged no snapshot (only redo: deferred words, heap
//! changes, fresh blocks) does not even fence its redo apply: it *parks*
//! its lane ([`Invalidation::park`]) with the lines the apply dirtied, and
//! the next drain of any transaction flushes those lines before its fence
//! and stores the parked lane's bump after it
//! ([`Invalidation::bump_claimed`]), so the bump follows the apply to the
//! media. Until then the committed redo log stays valid and recovery
//! replays it (idempotent stores, in commit order). The lane stays held
//! until its bump is stored, so no one writes its logs before the apply is
//! durable; a later change to the parked transaction's bytes is preceded
//! by a drain that claims the lane and, for a change in place, by a second
//! one that makes its bump durable (the snapshot's and the commit's).
//!
//! Drains find the lanes with such bumps by a mark per lane, which stays
//! while the lane is in use; [`Invalidation::tidy`] clears the marks of
//! lanes no one holds once their bumps are durable, so that a burst of
//! threads does not tax every later drain.
//!
//! FORMAT.md ("Commit protocol") has the whole argument.

use pmem_alloc::{FreeTicket, Heap};
use pmem_pool::Persister;
use pmem_pool::lane::LaneLayout;
use pmem_pool::lane_set::LaneSet;
use std::cell::Cell;
// `--cfg loom` swaps in loom's primitives, so that `tests/loom_inval.rs`
// checks the real marking code.
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

/// Drains that find other threads' marks a thread lets pass between two
/// [`tidy`](Invalidation::tidy)s. The caller's own lanes (the one it holds
/// and the two it alternates between, see `flush_pending`) never ask for a
/// tidy: their marks are in use; nor do lanes someone holds, which a tidy
/// leaves marked. Any other marked lane does, at once the first time: each
/// flush of a word that is already durable costs about 8 ns here, at every
/// drain for ever, where a tidy costs one fence. But when many threads are
/// at work, a tidy finds few idle lanes, and unmarking a lane that is used
/// again costs its next commit a locked instruction on a line every thread
/// reads; so a thread tidies at most once per this many such drains.
const TIDY_EVERY: u32 = 1024;

/// Drains a thread lets pass before it looks again whether another
/// thread's marked lane is idle, after finding none that was.
const TIDY_RECHECK: u32 = 16;

thread_local! {
    /// Drains with another's marks this thread still lets pass before a
    /// tidy.
    static TIDY_WAIT: Cell<u32> = const { Cell::new(0) };
}

/// Most lines a parked lane leaves unflushed ([`Invalidation::park`]);
/// a commit whose redo apply dirties more fences it instead.
pub const PARK_LINES: usize = 4;

/// `Parked::state` tags (the bits above them count parkings, so that a
/// claim taken on one parking never bumps the next).
const PARK_IDLE: u64 = 0;
const PARK_UNFENCED: u64 = 1;
const PARK_BUMPING: u64 = 2;
const PARK_TAG: u64 = 3;

/// One lane's parking: its transaction committed and applied its redo
/// log without flushing it; its bump waits for a drain that covers the
/// lines.
///
/// What every drain reads of another thread's parking (state, owner,
/// counts, lines) fills one cache line, the fresh blocks a second one
/// (read only when there are any): the parking thread writes both at
/// every parking, and each line read by a drain on another core is a
/// transfer between the cores.
#[repr(C, align(64))]
struct Parked {
    /// `parkings << 2 | tag`.
    state: AtomicU64,
    /// The parking thread's [`thread_token`].
    owner: AtomicU64,
    /// How many of `lines` are valid.
    count: AtomicUsize,
    /// How many of `fresh` are valid.
    nfresh: AtomicUsize,
    /// The lines' pool offsets.
    lines: [AtomicU64; PARK_LINES],
    /// The fresh blocks the parked commit record checksums (start, end).
    fresh: [[AtomicU64; 2]; PARK_FRESH],
}

#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::offset_of!(Parked, fresh), 64);

/// Most fresh blocks a parked transaction may have allocated; one with
/// more fences its apply instead.
pub const PARK_FRESH: usize = 4;

/// What a drain learns of a parked lane to decide whether to claim it.
pub struct ParkedInfo<'a> {
    /// The lane.
    pub lane: u32,
    /// The parking (a number that changes with every parking of the lane).
    pub parking: u64,
    /// The parking thread's [`thread_token`].
    pub owner: u64,
    /// The lines its redo apply dirtied.
    pub lines: &'a [u64],
    /// The fresh blocks its commit record checksums.
    pub fresh: &'a [(u64, u64)],
}

static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    static TOKEN: u64 = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Drains of a thread that may pass over the same parking of another
/// thread's lane before it claims that lane itself: a thread that parked
/// its lane and then stopped using the pool would otherwise keep the lane
/// and the blocks it freed until a lane or the heap ran out.
const STALE_AFTER: u32 = 8;

/// One parking of another thread's lane that this thread watches.
#[derive(Clone, Copy)]
struct Watch {
    lane: u32,
    parking: u64,
    /// This thread's looks at the parked lanes that found it.
    passes: u32,
    /// The last of those looks (its [`LOOKS`] number).
    last: u64,
}

/// Parkings a thread watches at once: when more lanes are parked, the
/// others wait for a free entry, so that each watched one keeps counting.
const WATCHES: usize = 8;

thread_local! {
    /// Other threads' parkings this thread passed over.
    static WATCHED: Cell<[Watch; WATCHES]> = const {
        Cell::new([Watch { lane: u32::MAX, parking: 0, passes: 0, last: 0 }; WATCHES])
    };
    /// This thread's looks at other threads' parked lanes so far (its
    /// drains that asked [`stale`] about some parking).
    static LOOKS: Cell<u64> = const { Cell::new(0) };
}

/// Whether this thread has now passed over `i`'s parking [`STALE_AFTER`]
/// times. A parking is watched from the first look that finds it while
/// fewer than [`WATCHES`] are; an entry is given up when its lane is not
/// found with that parking in a look (it was claimed). With more parked
/// lanes than entries, the extra ones are watched as entries free up,
/// instead of evicting each other at every look and never going stale.
///
/// `looked` is the caller's, false at the start of each drain: the first
/// call of a drain starts a new look.
pub fn stale(i: &ParkedInfo<'_>, looked: &mut bool) -> bool {
    let look = LOOKS
        .try_with(|n| {
            if !std::mem::replace(looked, true) {
                n.set(n.get() + 1);
            }
            n.get()
        })
        .unwrap_or(0);
    WATCHED
        .try_with(|w| {
            let mut all = w.get();
            let same = |e: &Watch| (e.lane, e.parking) == (i.lane, i.parking);
            // An entry not refreshed by the previous look or this one
            // watches a parking that is over (lanes are looked at in the
            // same order every time).
            let free = |e: &Watch| e.lane == u32::MAX || e.lane == i.lane || e.last + 1 < look;
            let Some(k) = all
                .iter()
                .position(same)
                .or_else(|| all.iter().position(free))
            else {
                return false;
            };
            let e = &mut all[k];
            let passes = match (same(e), e.last == look) {
                (true, true) => e.passes,
                (true, false) => e.passes + 1,
                (false, _) => 1,
            };
            *e = Watch {
                lane: i.lane,
                parking: i.parking,
                passes,
                last: look,
            };
            w.set(all);
            let stale = passes >= STALE_AFTER;
            if stale {
                // The caller claims the lane and releases it marked: a
                // lane its thread left, which the next drain's look for
                // idle lanes (`flush_pending`) should find and tidy, not
                // wait out an earlier tidy's `TIDY_EVERY`. Rare: a thread
                // left its lane parked.
                let _ = TIDY_WAIT.try_with(|t| t.set(0));
            }
            stale
        })
        .unwrap_or(true)
}

/// A number of the calling thread, unique in the process, never 0.
pub fn thread_token() -> u64 {
    TOKEN.try_with(|t| *t).unwrap_or(u64::MAX)
}

/// Which lanes may have a stored but unfenced generation bump, and the
/// frees that wait for it.
pub struct Invalidation {
    /// One bit per lane, set at a lazy bump when clear: the lanes whose
    /// words every drain flushes. Cleared only by [`tidy`](Self::tidy),
    /// for a lane no one holds after its bump was made durable.
    mask: Box<[AtomicU64]>,
    /// Per lane: freed blocks to give back once the lane's bump is durable.
    deferred: Box<[Mutex<Vec<FreeTicket>>]>,
    /// Tickets in all `deferred` lists (a hint: checked without locks).
    deferred_count: AtomicUsize,
    /// Each lane's current generation, as last stored: read by the lane's
    /// next holder instead of the generation word, whose line the last
    /// flush may have evicted (clwb does on some CPUs).
    generations: Box<[AtomicU64]>,
    /// Per lane: its parking, if any.
    parked: Box<[Parked]>,
    /// One bit per lane that ever parked (set by its first `park`): the
    /// lanes every drain looks at.
    parked_mask: Box<[AtomicU64]>,
    /// One bit per word of `mask` that may hold a mark (bit `w` for word
    /// `w`), set before the word's first mark and never cleared, so that
    /// a drain loads only the words a mark ever went into: one or two for
    /// a few threads, instead of every word (four for the default 256
    /// lanes, at each drain). All ones, and unused, beyond 64 words.
    mask_words: AtomicU64,
    /// The same for `parked_mask`.
    parked_words: AtomicU64,
}

impl Invalidation {
    /// `generation(lane)` reads lane `lane`'s generation word from the
    /// pool (recovery is done).
    pub fn new(lanes: u32, generation: impl Fn(u32) -> u64) -> Self {
        let words = (lanes as usize).div_ceil(64);
        Invalidation {
            mask: (0..words).map(|_| AtomicU64::new(0)).collect(),
            deferred: (0..lanes).map(|_| Mutex::new(Vec::new())).collect(),
            deferred_count: AtomicUsize::new(0),
            generations: (0..lanes).map(|l| AtomicU64::new(generation(l))).collect(),
            parked: (0..lanes)
                .map(|_| Parked {
                    state: AtomicU64::new(PARK_IDLE),
                    lines: std::array::from_fn(|_| AtomicU64::new(0)),
                    count: AtomicUsize::new(0),
                    owner: AtomicU64::new(0),
                    fresh: std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]),
                    nfresh: AtomicUsize::new(0),
                })
                .collect(),
            parked_mask: (0..words).map(|_| AtomicU64::new(0)).collect(),
            mask_words: AtomicU64::new(if words > 64 { u64::MAX } else { 0 }),
            parked_words: AtomicU64::new(if words > 64 { u64::MAX } else { 0 }),
        }
    }

    /// Parks `lane`: its holder committed, applied its redo log without
    /// flushing the `lines` (pool offsets, at most [`PARK_LINES`]) and
    /// keeps the lane held (it gives the lane up without releasing it).
    /// The next drain of any transaction flushes the lines, and after its
    /// fence stores the lane's bump and releases the lane
    /// ([`bump_claimed`](Self::bump_claimed)).
    pub fn park(&self, lane: u32, lines: &[u64], fresh: &[(u64, u64)]) {
        let s = &self.parked[lane as usize];
        debug_assert!(!lines.is_empty() && lines.len() <= PARK_LINES && fresh.len() <= PARK_FRESH);
        let n = lines.len().min(PARK_LINES);
        for (slot, &l) in s.lines.iter().zip(&lines[..n]) {
            slot.store(l, Ordering::Relaxed);
        }
        s.count.store(n, Ordering::Relaxed);
        let nf = fresh.len().min(PARK_FRESH);
        for (slot, &(a, b)) in s.fresh.iter().zip(&fresh[..nf]) {
            slot[0].store(a, Ordering::Relaxed);
            slot[1].store(b, Ordering::Relaxed);
        }
        s.nfresh.store(nf, Ordering::Relaxed);
        s.owner.store(thread_token(), Ordering::Relaxed);
        let parkings = s.state.load(Ordering::Relaxed) >> 2;
        // Release: whoever sees the parking sees its lines and the applied
        // stores before them.
        s.state.store(
            (parkings.wrapping_add(1) << 2) | PARK_UNFENCED,
            Ordering::Release,
        );
        // The bit stays set once the lane has parked (a parking is found by
        // its state): setting and clearing it at every parking would be
        // two locked instructions on a line every thread's drains read.
        let (word, bit) = bit_of(&self.parked_mask, lane);
        if word.load(Ordering::SeqCst) & bit == 0 {
            note_word(&self.parked_words, lane);
            word.fetch_or(bit, Ordering::SeqCst);
        }
    }

    /// The lines parked lanes left unflushed (for the crash tests' "nothing
    /// left unflushed" check).
    #[cfg(feature = "sim")]
    pub(crate) fn parked_lines(&self) -> Vec<u64> {
        // The claims are dropped: nothing is bumped.
        let mut v = Vec::new();
        self.claim_parked(&mut Vec::new(), |_| true, |l| v.push(l));
        v
    }

    /// How many lanes are parked right now (a snapshot).
    pub fn parked_count(&self) -> u32 {
        set_bits(&self.parked_mask, &self.parked_words)
            .filter(|&l| self.parked[l].state.load(Ordering::Acquire) & PARK_TAG != PARK_IDLE)
            .count() as u32
    }

    /// Whether any lane ever parked (and may be parked now).
    pub(crate) fn any_parked(&self) -> bool {
        // (A word's bit is noted before its first lane's: at worst this
        // says yes a moment early, and the walk then finds nothing.)
        match self.parked_words.load(Ordering::Acquire) {
            0 => false,
            // Every word noted, or more words than bits: look at them.
            u64::MAX => self
                .parked_mask
                .iter()
                .any(|m| m.load(Ordering::Acquire) != 0),
            _ => true,
        }
    }

    /// Claims every parked lane into `claims` (lane, state) after passing
    /// each of its lines to `flush`; waits for a lane someone is bumping
    /// right now (a few stores), so that its word is stored when this
    /// returns. The part of [`flush_pending`](Self::flush_pending) that
    /// `tests/loom_park.rs` checks.
    pub fn claim_parked(
        &self,
        claims: &mut Vec<(u32, u64)>,
        mut want: impl FnMut(&ParkedInfo<'_>) -> bool,
        mut flush: impl FnMut(u64),
    ) {
        for lane in set_bits(&self.parked_mask, &self.parked_words) {
            let s = &self.parked[lane];
            let mut st = s.state.load(Ordering::Acquire);
            while st & PARK_TAG == PARK_BUMPING {
                std::hint::spin_loop();
                #[cfg(loom)]
                loom::thread::yield_now();
                st = s.state.load(Ordering::Acquire);
            }
            if st & PARK_TAG != PARK_UNFENCED {
                continue;
            }
            let n = s.count.load(Ordering::Relaxed).min(PARK_LINES);
            let mut lines = [0u64; PARK_LINES];
            for (d, l) in lines.iter_mut().zip(&s.lines[..n]) {
                *d = l.load(Ordering::Relaxed);
            }
            let nf = s.nfresh.load(Ordering::Relaxed).min(PARK_FRESH);
            // (Not read at all when there are none: its own line.)
            let mut fresh = [(0u64, 0u64); PARK_FRESH];
            for (d, f) in fresh.iter_mut().zip(&s.fresh[..nf]) {
                *d = (f[0].load(Ordering::Relaxed), f[1].load(Ordering::Relaxed));
            }
            let info = ParkedInfo {
                lane: lane as u32,
                parking: st >> 2,
                owner: s.owner.load(Ordering::Relaxed),
                lines: &lines[..n],
                fresh: &fresh[..nf],
            };
            if !want(&info) {
                continue;
            }
            for &l in &lines[..n] {
                flush(l);
            }
            claims.push((lane as u32, st));
        }
    }

    /// Stores the bump of every lane in `claims` (taken by
    /// [`flush_pending`](Self::flush_pending) before a drain that has now
    /// returned, so the lanes' applied lines are durable), marks it, and
    /// releases the lane. A claim whose lane someone else bumped meanwhile
    /// is dropped. `claims` is emptied.
    pub(crate) fn bump_claimed(
        &self,
        claims: &mut Vec<(u32, u64)>,
        p: &Persister,
        layout: &LaneLayout,
        lanes: &LaneSet,
    ) {
        self.bump_claimed_with(claims, lanes, |lane, generation| {
            pmem_pool::lane::write_generation(p, layout, lane, generation);
        });
    }

    /// [`bump_claimed`](Self::bump_claimed) with the store of the bump
    /// (`generation + 1` into lane's word) left to `store` (for
    /// `tests/loom_park.rs`).
    pub fn bump_claimed_with(
        &self,
        claims: &mut Vec<(u32, u64)>,
        lanes: &LaneSet,
        mut store: impl FnMut(u32, u64),
    ) {
        for (lane, st) in claims.drain(..) {
            let s = &self.parked[lane as usize];
            let bumping = (st & !PARK_TAG) | PARK_BUMPING;
            if s.state
                .compare_exchange(st, bumping, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            // This thread now acts as the lane's holder (the lane is still
            // held; no one else may bump it).
            let generation = self.generation_published(lane);
            self.mark(lane);
            store(lane, generation);
            self.set_generation(lane, generation.wrapping_add(1));
            s.state
                .store((st & !PARK_TAG) | PARK_IDLE, Ordering::Release);
            lanes.release(lane);
        }
    }

    /// Lane `lane`'s generation (the caller holds the lane; the lane set's
    /// hand-over orders this with the previous holder's
    /// [`set_generation`](Self::set_generation)).
    pub fn generation(&self, lane: u32) -> u64 {
        self.generations[lane as usize].load(Ordering::Relaxed)
    }

    /// Records the generation the holder of `lane` just stored into the
    /// lane's word in the pool. Called after that store, with `Release`: a
    /// [`tidy`](Self::tidy) that sees this value and then writes the word
    /// back writes back at least this value.
    pub fn set_generation(&self, lane: u32, generation: u64) {
        self.generations[lane as usize].store(generation, Ordering::Release);
    }

    /// Records that `lane`'s generation word is about to be stored without
    /// being made durable. Called by the holder of the lane before the
    /// store: a flush that comes in between writes back nothing new, but
    /// the mark stays, and any transaction that depends on this one's
    /// changes acquires their locks after the store.
    pub fn mark(&self, lane: u32) {
        let (word, bit) = self.mask_bit(lane);
        // The C++ model orders the lane's SeqCst acquisition before this
        // SeqCst load (see `tidy`); loom models SeqCst accesses as
        // acquire/release only and needs the fence to see that.
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        // A mark stays while its lane is in use: after the lane's first
        // commit this is a load, not a locked instruction.
        if word.load(Ordering::SeqCst) & bit == 0 {
            note_word(&self.mask_words, lane);
            word.fetch_or(bit, Ordering::SeqCst);
        }
    }

    /// Unmarks the lanes no one holds, after making their bumps durable,
    /// so that drains stop flushing their words: a burst of threads would
    /// otherwise leave every later drain, for as long as the pool is open,
    /// flushing the word of every lane the burst used. `write_back` flushes
    /// and drains the generation words of the lanes it is given (it starts
    /// with [`Persister::order_flushes_after_loads`]: the generations were
    /// just loaded); if it fails, nothing is unmarked. The blocks those
    /// lanes' transactions freed, waiting for their bumps, go back to
    /// `heap` once written back (a thread that freed objects and then
    /// stopped using the pool would otherwise keep them out of the heap's
    /// hands until its lane was taken again, the heap was full, or the
    /// pool closed).
    ///
    /// A holder skips marking when it finds its bit set, so an unmark that
    /// races with a commit on the lane must not win. After clearing a bit
    /// this looks at the lane again and sets the bit back if the lane is
    /// held, or if its generation moved since it was written back. The
    /// holder takes its lane and then loads the bit; this clears the bit
    /// and then loads the lane's flag; all four `SeqCst`, so at least one
    /// sees the other: the holder finds the bit clear and sets it, or this
    /// finds the lane held or, if the holder already gave it back, the
    /// generation it published before doing so.
    pub fn tidy(
        &self,
        lanes: &LaneSet,
        heap: Option<&Heap>,
        write_back: impl FnOnce(&[u32]) -> pmem_pool::Result<()>,
    ) -> pmem_pool::Result<()> {
        let idle_lanes: Vec<u32> = self
            .marked()
            .map(|l| l as u32)
            .filter(|&l| !lanes.is_busy(l))
            .collect();
        if idle_lanes.is_empty() {
            return Ok(());
        }
        // Taken before the generations are loaded: each ticket was
        // deferred after its transaction published its bump, so the
        // write-back below covers that bump or a later one (as in
        // `settle_all`).
        let mut freed: Vec<(u32, Vec<FreeTicket>)> = Vec::new();
        if self.deferred_count.load(Ordering::Acquire) > 0 {
            for &l in &idle_lanes {
                let t = std::mem::take(&mut *lock(&self.deferred[l as usize]));
                if !t.is_empty() {
                    freed.push((l, t));
                }
            }
        }
        let idle: Vec<(u32, u64)> = idle_lanes
            .iter()
            .map(|&l| (l, self.generation_published(l)))
            .collect();
        if let Err(e) = write_back(&idle_lanes) {
            // Not durable: the blocks wait for their lanes again.
            for (l, t) in freed {
                lock(&self.deferred[l as usize]).extend(t);
            }
            return Err(e);
        }
        for (_, mut t) in freed {
            self.release(&mut t, heap);
        }
        for (lane, g) in idle {
            let (word, bit) = self.mask_bit(lane);
            word.fetch_and(!bit, Ordering::SeqCst);
            // As in `mark`, for loom's sake only.
            #[cfg(loom)]
            fence(Ordering::SeqCst);
            if lanes.is_busy(lane) || self.generation_published(lane) != g {
                word.fetch_or(bit, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// The mask word holding `lane`'s mark, and the mark's bit in it.
    fn mask_bit(&self, lane: u32) -> (&AtomicU64, u64) {
        bit_of(&self.mask, lane)
    }

    /// Lane `lane`'s generation as its holder last published it, read by
    /// someone else than the holder (its stores into the pool word happen
    /// before).
    fn generation_published(&self, lane: u32) -> u64 {
        self.generations[lane as usize].load(Ordering::Acquire)
    }

    /// Whether `lane` is marked (for tests and loom models).
    #[cfg(any(test, loom))]
    pub fn is_marked(&self, lane: u32) -> bool {
        self.marked().any(|l| l == lane as usize)
    }

    /// The lanes marked so far, in increasing order.
    fn marked(&self) -> impl Iterator<Item = usize> + '_ {
        set_bits(&self.mask, &self.mask_words)
    }

    /// Whether any lane's bump may be unfenced (a mark stays set while its
    /// lane is in use, so this is true after the first commit).
    pub(crate) fn any(&self) -> bool {
        self.marked().next().is_some() || self.any_parked()
    }

    /// Flushes the generation word of every lane with an unfenced bump (no
    /// fence: the caller drains next). Flushing is coherent across cores,
    /// so the bump stored by another thread is written back by this one.
    /// `skip`: a lane whose word the caller knows is durable (its own,
    /// settled earlier in the same transaction: flushing it again would
    /// evict the line the commit is about to store into).
    ///
    /// It first flushes the applied lines of every parked lane the caller
    /// `want`s and claims the lane into `claims` (lane, state), for
    /// [`bump_claimed`](Self::bump_claimed) once the caller's drain has
    /// returned; the lines go into `claimed_lines`. A lane someone is
    /// bumping right now is waited for (a few stores), so that its word,
    /// stored, is flushed below.
    ///
    /// `flush_other` tells whether to flush the word of a marked lane that
    /// is not the caller's own (`skip` and `mine`): a transaction that
    /// knows which lanes its changes depend on flushes only theirs.
    ///
    /// Returns whether this thread should [`tidy`](Self::tidy) once its
    /// transaction is over: a lane no one holds, other than `skip` and the
    /// two in `mine` (the lanes the calling thread takes turns on), is
    /// marked, and the thread has not tidied within its last
    /// [`TIDY_EVERY`] drains that found one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn flush_pending(
        &self,
        p: &Persister,
        layout: &LaneLayout,
        skip: Option<u32>,
        mine: (u32, u32),
        lanes: &LaneSet,
        claims: &mut Vec<(u32, u64)>,
        claimed_lines: &mut Vec<u64>,
        want: impl FnMut(&ParkedInfo<'_>) -> bool,
        flush_other: impl Fn(u32) -> bool,
    ) -> bool {
        if self.any_parked() {
            let mut ordered = false;
            self.claim_parked(claims, want, |l| {
                if !ordered {
                    // The lines were written by the parking thread, seen
                    // through `claim_parked`'s load of its state.
                    p.order_flushes_after_loads();
                    ordered = true;
                }
                p.flush_word(l as usize);
                claimed_lines.push(l);
            });
        }
        let skip = skip.unwrap_or(u32::MAX);
        let is_own = |lane: u32| lane == mine.0 || lane == mine.1 || lane == skip;
        // The flush loop counts the marks that are not the caller's own;
        // which of those lanes are idle is asked below, and rarely.
        let (mut marked, mut own) = (0u32, 0u32);
        for lane in self.marked() {
            let lane = lane as u32;
            marked += 1;
            let is_own = is_own(lane);
            own += u32::from(is_own);
            if lane != skip && (is_own || flush_other(lane)) {
                p.flush_word(layout.generation_off(lane));
            }
        }
        let others = marked > own;
        // While others' marks stay, whether their lanes are idle is asked
        // only when the wait is over: the holder of a lane writes its busy
        // flag's line at every transaction, and a read of it at every
        // drain by another core costs two threads on disjoint data a tenth
        // of their throughput. A drain that finds only its own marks
        // leaves the wait as it is: with two threads, that is what the
        // other's drain finds right after this one's tidy unmarked its
        // lane, and ending the wait there would tidy again at the next
        // idle moment, a fence every few transactions.
        TIDY_WAIT
            .try_with(|w| match (others, w.get()) {
                (false, _) => false,
                (true, 0) => {
                    let idle = self
                        .marked()
                        .any(|l| !is_own(l as u32) && !lanes.is_busy(l as u32));
                    w.set(if idle { TIDY_EVERY } else { TIDY_RECHECK });
                    idle
                }
                (true, n) => {
                    w.set(n - 1);
                    false
                }
            })
            .unwrap_or(false)
    }

    /// Called by the holder of `lane` after a drain that followed
    /// [`flush_pending`](Self::flush_pending): its bump is durable, so the
    /// frees that waited for it go back to `heap`.
    ///
    /// The lane's mark stays set (a later drain flushes a word that is
    /// already durable, which costs little): clearing it would take a
    /// locked instruction right after the fence, and a locked instruction
    /// waits for every flush in flight, turning the fence's latency, which
    /// would otherwise overlap the caller's next work, into a stall. Only
    /// [`tidy`](Self::tidy), when many lanes are marked, clears marks.
    #[inline]
    pub(crate) fn settled(&self, lane: u32, heap: Option<&Heap>) {
        if self.deferred_count.load(Ordering::Acquire) > 0 {
            self.release_deferred(lane, heap);
        }
    }

    /// The part of [`settled`](Self::settled) that runs when blocks wait.
    #[inline(never)]
    fn release_deferred(&self, lane: u32, heap: Option<&Heap>) {
        self.release(&mut lock(&self.deferred[lane as usize]), heap);
    }

    /// Keeps `tickets` (blocks freed by the transaction that just stored
    /// `lane`'s bump) until that bump is durable.
    /// `tickets` is drained (its capacity stays with the caller).
    pub(crate) fn defer(&self, lane: u32, tickets: &mut Vec<FreeTicket>) {
        if tickets.is_empty() {
            return;
        }
        self.deferred_count
            .fetch_add(tickets.len(), Ordering::Release);
        lock(&self.deferred[lane as usize]).extend(tickets.drain(..));
    }

    /// Whether freed blocks are waiting (worth [`settle_all`] when the heap
    /// is full).
    pub(crate) fn has_deferred(&self) -> bool {
        self.deferred_count.load(Ordering::Acquire) > 0
    }

    /// Makes every stored bump durable and gives every waiting block back:
    /// for a full heap, and at close. Parked lanes cost a second fence:
    /// their bumps are stored after the first.
    pub(crate) fn settle_all(
        &self,
        p: &Persister,
        layout: &LaneLayout,
        heap: Option<&Heap>,
        lanes: &LaneSet,
    ) -> pmem_pool::Result<()> {
        // Take the tickets first: each was deferred after its lane's bump
        // was stored, or after its lane was parked, so the flushes below
        // write that bump (or a later one) back.
        let mut tickets: Vec<FreeTicket> = self
            .deferred
            .iter()
            .flat_map(|d| std::mem::take(&mut *lock(d)))
            .collect();
        let mut r = self.drain_and_bump(p, layout, lanes);
        if matches!(r, Ok(true)) || (r.is_ok() && self.parked_count() > 0) {
            r = self.drain_and_bump(p, layout, lanes);
        }
        // Not durable: the blocks stay out of the heap's hands.
        self.release(&mut tickets, heap.filter(|_| r.is_ok()));
        r.map(|_| ())
    }

    /// One drain that flushes every pending bump and parked line, then
    /// stores the bumps of the parked lanes it claimed. Returns whether it
    /// stored any (they are durable only after another drain).
    fn drain_and_bump(
        &self,
        p: &Persister,
        layout: &LaneLayout,
        lanes: &LaneSet,
    ) -> pmem_pool::Result<bool> {
        let mut claims = Vec::new();
        let none = (u32::MAX, u32::MAX);
        let mut lines = Vec::new();
        self.flush_pending(
            p,
            layout,
            None,
            none,
            lanes,
            &mut claims,
            &mut lines,
            |_| true,
            |_| true,
        );
        p.drain()?;
        let bumped = !claims.is_empty();
        self.bump_claimed(&mut claims, p, layout, lanes);
        Ok(bumped)
    }

    /// Settles the parked lanes (one drain that flushes their lines, then
    /// their bumps stored and the lanes released): for a writer that finds
    /// every lane held, and for a view that waits for every lane.
    pub(crate) fn unpark_all(
        &self,
        p: &Persister,
        layout: &LaneLayout,
        lanes: &LaneSet,
    ) -> pmem_pool::Result<()> {
        if self.parked_count() == 0 {
            return Ok(());
        }
        self.drain_and_bump(p, layout, lanes).map(|_| ())
    }

    /// Gives `tickets` back to `heap` (or forgets them without one),
    /// draining the list, and counts them out.
    fn release(&self, tickets: &mut Vec<FreeTicket>, heap: Option<&Heap>) {
        if tickets.is_empty() {
            return;
        }
        self.deferred_count
            .fetch_sub(tickets.len(), Ordering::AcqRel);
        match heap {
            Some(h) => h.release_frees(tickets),
            None => tickets.clear(),
        }
    }
}

/// The word of `mask` holding `lane`'s bit, and the bit.
fn bit_of(mask: &[AtomicU64], lane: u32) -> (&AtomicU64, u64) {
    (&mask[lane as usize / 64], 1u64 << (lane % 64))
}

/// Notes in `words` (a mask's summary: a bit per word of the mask) that
/// `lane`'s word is about to get a bit. Called before the bit is set, so
/// that whoever sees the bit, having synchronized with its setter, sees
/// the note too; the note is never taken back.
fn note_word(words: &AtomicU64, lane: u32) {
    let w = lane as usize / 64;
    if w < 64 {
        let b = 1u64 << w;
        if words.load(Ordering::SeqCst) & b == 0 {
            words.fetch_or(b, Ordering::SeqCst);
        }
    }
}

/// The lanes whose bits are set in `mask`, in increasing order (each
/// word loaded when the walk reaches it): only the words `words` notes,
/// or every word when the mask has more than 64.
fn set_bits<'a>(mask: &'a [AtomicU64], words: &AtomicU64) -> SetBits<'a> {
    let all = mask.len() > 64;
    SetBits {
        mask,
        words: if all { 0 } else { words.load(Ordering::SeqCst) },
        all,
        next: 0,
        word: 0,
        bits: 0,
    }
}

/// [`set_bits`]' iterator: a plain loop over the words, which every drain
/// runs (a `flat_map` of per-word iterators cost twice the instructions).
struct SetBits<'a> {
    mask: &'a [AtomicU64],
    /// The words still to load (a bit per word), unless `all`.
    words: u64,
    /// Whether every word is loaded in turn (`next`), not only `words`'.
    all: bool,
    /// The next word to load, when `all`.
    next: usize,
    /// The word `bits` came from.
    word: usize,
    /// The bits of `word` not returned yet.
    bits: u64,
}

impl Iterator for SetBits<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.bits == 0 {
            let w = if self.all {
                self.next += 1;
                self.next - 1
            } else if self.words != 0 {
                let w = self.words.trailing_zeros() as usize;
                self.words &= self.words - 1;
                w
            } else {
                return None;
            };
            self.bits = self.mask.get(w)?.load(Ordering::Acquire);
            self.word = w;
        }
        let lane = self.word * 64 + self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(lane)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Lanes 0..4 marked with a bump each (generation 7 -> 8).
    fn four_marked() -> Invalidation {
        let inval = Invalidation::new(4, |_| 7);
        for l in 0..4 {
            inval.mark(l);
            inval.set_generation(l, 8);
        }
        inval
    }

    #[test]
    fn marks_and_parkings_are_found_in_every_word() {
        // 300 lanes: five words, of which marks go into three; 4200
        // lanes: more words than the summary has bits, every word walked.
        for (lanes, picked) in [
            (300u32, vec![1u32, 130, 299]),
            (4200, vec![5, 64, 4100, 4199]),
        ] {
            let inval = Invalidation::new(lanes, |_| 0);
            assert!(!inval.any() && !inval.any_parked());
            for &l in &picked {
                inval.mark(l);
            }
            let marked: Vec<u32> = inval.marked().map(|l| l as u32).collect();
            assert_eq!(marked, picked, "{lanes} lanes");
            assert!(inval.any());
            for &l in &picked {
                inval.park(l, &[64 * u64::from(l)], &[]);
            }
            assert!(inval.any_parked());
            assert_eq!(inval.parked_count(), picked.len() as u32);
            let mut lines = Vec::new();
            inval.claim_parked(&mut Vec::new(), |_| true, |l| lines.push(l / 64));
            assert_eq!(
                lines,
                picked.iter().map(|&l| u64::from(l)).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn tidy_writes_back_and_unmarks_only_the_lanes_no_one_holds() {
        let inval = four_marked();
        let lanes = LaneSet::new(4);
        assert_eq!(lanes.acquire(1), Some(1));
        let mut written = Vec::new();
        inval
            .tidy(&lanes, None, |ls| {
                written.extend_from_slice(ls);
                Ok(())
            })
            .unwrap();
        assert_eq!(written, [0, 2, 3], "the idle lanes' words are written back");
        assert!(!inval.is_marked(0) && !inval.is_marked(2) && !inval.is_marked(3));
        assert!(inval.is_marked(1), "a held lane stays marked");
        assert!(inval.any());

        // The holder's next commit finds its mark set; the others' next
        // commits mark their lanes again.
        inval.mark(3);
        assert!(inval.is_marked(3));
        lanes.release(1);
        inval.tidy(&lanes, None, |_| Ok(())).unwrap();
        assert!(!inval.is_marked(1) && !inval.is_marked(3));
        assert!(!inval.any(), "nothing left to flush");
    }

    #[test]
    fn more_parked_lanes_than_watches_all_go_stale() {
        // 32 lanes parked by other threads, found by every look in the
        // same order; a lane found stale is claimed and found no more.
        let mut stale_at = [None; 32];
        for look in 1..=100u32 {
            let mut looked = false;
            for lane in 0..32u32 {
                if stale_at[lane as usize].is_some() {
                    continue;
                }
                let info = ParkedInfo {
                    lane,
                    parking: 5,
                    owner: 99,
                    lines: &[],
                    fresh: &[],
                };
                if stale(&info, &mut looked) {
                    stale_at[lane as usize] = Some(look);
                }
            }
        }
        assert!(
            stale_at.iter().all(|s| s.is_some_and(|l| l >= STALE_AFTER)),
            "every lane goes stale, none before {STALE_AFTER} looks: {stale_at:?}"
        );
        // Watched WATCHES at a time: four rounds of STALE_AFTER looks,
        // each after the first one look later (an entry is freed by the
        // first look after the one that claimed its lane).
        let rounds = (32 / WATCHES) as u32;
        assert_eq!(
            stale_at.iter().flatten().max(),
            Some(&(STALE_AFTER + (rounds - 1) * (STALE_AFTER + 1)))
        );

        // A new parking of a watched lane starts its count again.
        let info = |parking| ParkedInfo {
            lane: 40,
            parking,
            owner: 99,
            lines: &[],
            fresh: &[],
        };
        assert!(!stale(&info(1), &mut false));
        assert!(!stale(&info(2), &mut false));
    }

    #[test]
    fn a_failed_write_back_unmarks_nothing() {
        let inval = four_marked();
        let lanes = LaneSet::new(4);
        let r = inval.tidy(&lanes, None, |_| {
            Err(pmem_pool::Error::Msync(std::io::Error::from_raw_os_error(
                5,
            )))
        });
        assert!(r.is_err());
        assert!((0..4).all(|l| inval.is_marked(l)));
    }
}
