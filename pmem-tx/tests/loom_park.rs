//! loom model of parked lanes (`invalidate.rs`, the real code): a
//! transaction without snapshots applies its redo changes without
//! flushing them and parks its lane; the next drain of any thread flushes
//! the parked lines, and after its fence stores the lane's generation bump
//! and releases the lane. Whatever the interleaving:
//! - a bump is stored only once the changes of the parking it retires are
//!   durable (otherwise a crash would find the log retired and the
//!   committed changes lost);
//! - each parking is bumped exactly once, by one of the threads that
//!   claimed it (a claim taken on one parking never bumps the next one);
//! - the lane is released again, so the pool never runs out of lanes.
//!
//! Pool memory is modelled by the applied word (as stored, and as
//! durable) and the lane's generation word. A claimer's "drain" copies the
//! stored word of every line it flushed into the durable one, which is
//! what a flush and a fence do. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p pmem-tx --release --test loom_park`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use pmem_pool::lane_set::LaneSet;
use pmem_tx::Invalidation;

/// The line the parked transactions apply their change to.
const LINE: u64 = 4096;

#[derive(Default)]
struct Media {
    /// The applied word, as stored (parking `k` stores `k`).
    data: AtomicU64,
    /// The applied word, as durable.
    data_durable: AtomicU64,
    /// The lane's generation word, as stored.
    generation: AtomicU64,
    /// Bumps stored so far.
    bumps: AtomicU64,
}

struct World {
    inval: Invalidation,
    lanes: LaneSet,
    media: Media,
}

impl World {
    fn new() -> Arc<World> {
        Arc::new(World {
            inval: Invalidation::new(1, |_| 0),
            lanes: LaneSet::new(1),
            media: Media::default(),
        })
    }

    /// One drain of a transaction: flush the parked lines, fence, bump the
    /// claimed lanes.
    fn drain(&self) {
        let mut claims = Vec::new();
        let mut flushed = Vec::new();
        self.inval
            .claim_parked(&mut claims, |_| true, |l| flushed.push(l));
        for l in flushed {
            assert_eq!(l, LINE);
            let v = self.media.data.load(Ordering::Relaxed);
            self.media.data_durable.fetch_max(v, Ordering::Relaxed);
        }
        self.inval
            .bump_claimed_with(&mut claims, &self.lanes, |lane, generation| {
                assert_eq!(lane, 0);
                // Parking `g + 1` (generation `g`) stored `g + 1`.
                let durable = self.media.data_durable.load(Ordering::Relaxed);
                assert!(
                    durable > generation,
                    "bump of generation {generation} stored while only change {durable} is durable"
                );
                self.media
                    .generation
                    .store(generation + 1, Ordering::Relaxed);
                self.media.bumps.fetch_add(1, Ordering::Relaxed);
            });
    }

    /// A committed transaction without snapshots on the lane: take it (as
    /// `Tx::ensure_lane` does: if it is held, drain, then wait for it),
    /// apply its change unflushed, park.
    fn commit_parked(&self, k: u64) {
        if self.lanes.try_acquire(0).is_none() {
            self.drain();
            assert_eq!(self.lanes.acquire(0), Some(0));
        }
        assert_eq!(self.inval.generation(0), k - 1, "the lane's previous bump");
        self.media.data.store(k, Ordering::Relaxed);
        self.inval.park(0, &[LINE], &[]);
    }
}

/// One parking, `claimers` threads draining at once, then the main thread.
fn claimers_race(claimers: usize) {
    loom::model(move || {
        let w = World::new();
        let parker = {
            let w = w.clone();
            loom::thread::spawn(move || w.commit_parked(1))
        };
        let cs: Vec<_> = (0..claimers)
            .map(|_| {
                let w = w.clone();
                loom::thread::spawn(move || w.drain())
            })
            .collect();
        parker.join().unwrap();
        for c in cs {
            c.join().unwrap();
        }
        w.drain();
        assert_eq!(w.media.bumps.load(Ordering::Relaxed), 1);
        assert_eq!(w.media.generation.load(Ordering::Relaxed), 1);
        assert_eq!(w.inval.generation(0), 1);
        assert_eq!(w.inval.parked_count(), 0);
        assert!(!w.lanes.is_busy(0), "the parked lane was never released");
        assert!(w.inval.is_marked(0), "the stored bump is left to no drain");
    });
}

#[test]
fn two_claimers_bump_a_parked_lane_once_after_its_apply() {
    claimers_race(2);
}

/// Two parkings in turn on the one lane while another thread drains: its
/// claim of the first must not bump the second.
#[test]
fn a_claim_of_one_parking_never_bumps_the_next() {
    loom::model(|| {
        let w = World::new();
        let parker = {
            let w = w.clone();
            loom::thread::spawn(move || {
                w.commit_parked(1);
                w.commit_parked(2);
            })
        };
        let claimer = {
            let w = w.clone();
            loom::thread::spawn(move || w.drain())
        };
        parker.join().unwrap();
        claimer.join().unwrap();
        w.drain();
        assert_eq!(w.media.bumps.load(Ordering::Relaxed), 2);
        assert_eq!(w.media.generation.load(Ordering::Relaxed), 2);
        assert_eq!(w.inval.parked_count(), 0);
        assert!(!w.lanes.is_busy(0));
    });
}
