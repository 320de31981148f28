//! Lazy log invalidation: a transaction's generation bump is stored at
//! commit, but flushed and fenced by the next drain of any transaction.
//!
//! A transaction's commit record carries a checksum of its data, so data
//! and record share one fence and recovery keeps the transaction whenever
//! the record is valid and the data matches. What must never happen is a
//! later change to the same bytes reaching the media while the record is
//! still valid: recovery would see a mismatch and roll a finished
//! transaction back. Every later change is preceded by a drain that also
//! persists the generation words of all lanes whose bump is not yet fenced:
//! - a snapshotted write: the snapshot's drain (fence 1) precedes it;
//! - a write without snapshot to non-fresh bytes (`NO_SNAPSHOT`): `Tx::add`
//!   drains first when any bump is pending;
//! - a redo change (heap metadata, `alloc_into`'s destination): the commit
//!   record's drain precedes the apply;
//! - a block this transaction freed, written by the next owner as a fresh
//!   block without any drain: the block goes back to the heap only after
//!   this lane's bump is durable ([`Invalidation::defer`]).
//!
//! FORMAT.md ("Commit protocol") has the whole argument.

use pmem_alloc::{FreeTicket, Heap};
use pmem_pool::Persister;
use pmem_pool::lane::LaneLayout;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Which lanes may have a stored but unfenced generation bump, and the
/// frees that wait for it.
pub(crate) struct Invalidation {
    /// One bit per lane, set at its first lazy bump and never cleared
    /// (see [`settled`](Self::settled)).
    mask: Box<[AtomicU64]>,
    /// Per lane: freed blocks to give back once the lane's bump is durable.
    deferred: Box<[Mutex<Vec<FreeTicket>>]>,
    /// Tickets in all `deferred` lists (a hint: checked without locks).
    deferred_count: AtomicUsize,
    /// Each lane's current generation, as last stored: read by the lane's
    /// next holder instead of the generation word, whose line the last
    /// flush may have evicted (clwb does on some CPUs).
    generations: Box<[AtomicU64]>,
}

impl Invalidation {
    /// `generation(lane)` reads lane `lane`'s generation word from the
    /// pool (recovery is done).
    pub(crate) fn new(lanes: u32, generation: impl Fn(u32) -> u64) -> Self {
        let words = (lanes as usize).div_ceil(64);
        Invalidation {
            mask: (0..words).map(|_| AtomicU64::new(0)).collect(),
            deferred: (0..lanes).map(|_| Mutex::new(Vec::new())).collect(),
            deferred_count: AtomicUsize::new(0),
            generations: (0..lanes).map(|l| AtomicU64::new(generation(l))).collect(),
        }
    }

    /// Lane `lane`'s generation (the caller holds the lane; the lane set's
    /// hand-over orders this with the previous holder's
    /// [`set_generation`](Self::set_generation)).
    pub(crate) fn generation(&self, lane: u32) -> u64 {
        self.generations[lane as usize].load(Ordering::Relaxed)
    }

    /// Records the generation the holder of `lane` just stored.
    pub(crate) fn set_generation(&self, lane: u32, generation: u64) {
        self.generations[lane as usize].store(generation, Ordering::Relaxed);
    }

    /// Records that `lane`'s generation word is about to be stored without
    /// being made durable. Called by the holder of the lane before the
    /// store: a flush that comes in between writes back nothing new, but
    /// the mark stays, and any transaction that depends on this one's
    /// changes acquires their locks after the store.
    pub(crate) fn mark(&self, lane: u32) {
        let word = &self.mask[lane as usize / 64];
        let bit = 1u64 << (lane % 64);
        // Marks are never cleared: after the lane's first commit this is
        // a load, not a locked instruction.
        if word.load(Ordering::Relaxed) & bit == 0 {
            word.fetch_or(bit, Ordering::Release);
        }
    }

    /// Whether any lane's bump may be unfenced (marks stay set once a
    /// lane was used, so this is true after the first commit).
    pub(crate) fn any(&self) -> bool {
        self.mask.iter().any(|m| m.load(Ordering::Acquire) != 0)
    }

    /// Flushes the generation word of every lane with an unfenced bump (no
    /// fence: the caller drains next). Flushing is coherent across cores,
    /// so the bump stored by another thread is written back by this one.
    /// `skip`: a lane whose word the caller knows is durable (its own,
    /// settled earlier in the same transaction: flushing it again would
    /// evict the line the commit is about to store into).
    pub(crate) fn flush_pending(&self, p: &Persister, layout: &LaneLayout, skip: Option<u32>) {
        let skip = skip.map_or(usize::MAX, |l| l as usize);
        for (w, m) in self.mask.iter().enumerate() {
            let mut bits = m.load(Ordering::Acquire);
            while bits != 0 {
                let lane = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if lane != skip {
                    p.flush(layout.generation_off(lane as u32), 8);
                }
            }
        }
    }

    /// Called by the holder of `lane` after a drain that followed
    /// [`flush_pending`](Self::flush_pending): its bump is durable, so the
    /// frees that waited for it go back to `heap`.
    ///
    /// The lane's mark stays set (a later drain flushes a word that is
    /// already durable, which costs little): clearing it would take a
    /// locked instruction right after the fence, and a locked instruction
    /// waits for every flush in flight, turning the fence's latency, which
    /// would otherwise overlap the caller's next work, into a stall.
    pub(crate) fn settled(&self, lane: u32, heap: Option<&Heap>) {
        if self.deferred_count.load(Ordering::Acquire) > 0 {
            self.release(&mut lock(&self.deferred[lane as usize]), heap);
        }
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
    /// for a full heap, and at close.
    pub(crate) fn settle_all(
        &self,
        p: &Persister,
        layout: &LaneLayout,
        heap: Option<&Heap>,
    ) -> pmem_pool::Result<()> {
        // Take the tickets first: each was deferred after its lane's bump
        // was stored, so the flush below writes that bump (or a later one)
        // back.
        let mut tickets: Vec<FreeTicket> = self
            .deferred
            .iter()
            .flat_map(|d| std::mem::take(&mut *lock(d)))
            .collect();
        self.flush_pending(p, layout, None);
        let r = p.drain();
        // Not durable: the blocks stay out of the heap's hands.
        self.release(&mut tickets, heap.filter(|_| r.is_ok()));
        r
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
