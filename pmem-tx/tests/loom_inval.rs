//! loom model of lazy-invalidation marks (`invalidate.rs`, the real code):
//! `Invalidation::tidy` writes back the bumps of the lanes no one holds and
//! unmarks them, while holders commit on one of those lanes and, finding
//! its mark still set, skip setting it. Whatever the interleaving, a lane
//! whose stored bump is not durable must end marked: otherwise no drain
//! would write that bump back, and a later change to the bytes its commit
//! record covers could make recovery roll a committed transaction back.
//!
//! Pool memory is modelled by two words per lane: the generation word as
//! stored, and as written back. `write_back` copies the first into the
//! second, which is what a flush and a drain do. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p pmem-tx --release --test loom_inval`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use pmem_pool::lane_set::LaneSet;
use pmem_tx::Invalidation;

struct Media {
    stored: [AtomicU64; 2],
    durable: [AtomicU64; 2],
}

/// `holders` threads commit on lane 1 in turn while another tidies.
fn tidy_against_commits(holders: usize) {
    loom::model(move || {
        let inval = Arc::new(Invalidation::new(2, |_| 0));
        let lanes = Arc::new(LaneSet::new(2));
        let media = Arc::new(Media {
            stored: [AtomicU64::new(0), AtomicU64::new(0)],
            durable: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        // Lane 1 committed once; its bump is stored, not yet durable.
        inval.mark(1);
        media.stored[1].store(1, Ordering::Relaxed);
        inval.set_generation(1, 1);
        // The tidier holds lane 0, so that every holder takes lane 1.
        assert_eq!(lanes.acquire(0), Some(0));
        let hs: Vec<_> = (0..holders)
            .map(|_| {
                let (inval, lanes, media) = (inval.clone(), lanes.clone(), media.clone());
                loom::thread::spawn(move || {
                    // A commit's end, as `Tx::commit_durably` does it: mark,
                    // store the bump, publish it; then give the lane back.
                    assert_eq!(lanes.acquire(1), Some(1));
                    let g = inval.generation(1) + 1;
                    inval.mark(1);
                    media.stored[1].store(g, Ordering::Relaxed);
                    inval.set_generation(1, g);
                    lanes.release(1);
                })
            })
            .collect();
        inval
            .tidy(&lanes, None, |ls| {
                for &l in ls {
                    let l = l as usize;
                    let v = media.stored[l].load(Ordering::Relaxed);
                    media.durable[l].store(v, Ordering::Relaxed);
                }
                Ok(())
            })
            .unwrap();
        for h in hs {
            h.join().unwrap();
        }
        lanes.release(0);
        let stored = media.stored[1].load(Ordering::Relaxed);
        let durable = media.durable[1].load(Ordering::Relaxed);
        assert!(
            durable == stored || inval.is_marked(1),
            "lane 1's bump {stored} is not durable ({durable}) and no drain would flush it"
        );
    });
}

#[test]
fn tidy_keeps_the_mark_of_a_committing_lane() {
    tidy_against_commits(1);
}

#[test]
fn tidy_keeps_the_mark_of_lanes_committing_in_turn() {
    tidy_against_commits(2);
}
