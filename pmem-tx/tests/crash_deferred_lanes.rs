//! Crash simulation of deferred writes across lanes: each transaction
//! runs on a new thread, so consecutive transactions take different lanes
//! while the earlier ones' lanes are still parked (their redo applied but
//! not flushed) or their generation bumps stored but not fenced. They all
//! write the same few words, with `tx.write` (deferred), `tx.replace`, and
//! now and then a snapshot of a whole slot, so each one overwrites words
//! of transactions whose logs may still be valid when it commits, and
//! recovery must replay those logs in commit order. After recovery from
//! any crash image the words equal the model exactly before or after the
//! interrupted transaction.
//!
//! It guards the commit order of redo-only transactions, which a change
//! to spare them the shared counter would touch (BENCHMARKS-HISTORY.md,
//! "Where we stood", eleventh session). A throwaway change that gave a
//! commit with no heap change and no claimed lane the number 0 instead of
//! the counter's next passed every other crash test, and failed this one
//! at its second transaction.

mod common;

use common::word_acts::{self, WordAct as Act};
use common::{Harness, Rng};
use pmem_tx::Error;
use std::sync::Mutex;

/// Three cache lines: consecutive transactions overlap on most words.
const WORDS: u64 = 24;

#[test]
fn deferred_writes_across_lanes_survive_every_crash() {
    let mut h = Harness::new();
    // Every transaction leaves its lane parked for a later thread's drain
    // to claim, so more logs stay live at once than with one thread.
    h.max_live_logs = 16;
    let mut rng = Rng(2411);
    let lanes = Mutex::new(Vec::new());
    for t in 0..100u64 {
        let n = 1 + rng.below(3);
        let acts: Vec<Act> = (0..n)
            .map(|_| match rng.below(8) {
                0..=3 => Act::Word(rng.below(WORDS), rng.next()),
                4 | 5 => Act::Pair(rng.below(WORDS / 2) * 2, rng.next()),
                6 => Act::Replace(rng.below(WORDS), rng.next()),
                _ => Act::Slot(rng.below(WORDS / 8), rng.next() as u8),
            })
            .collect();
        let run = acts.clone();
        let lanes = &lanes;
        h.step(
            format!("tx {t}: {acts:?}"),
            move |pool, root| {
                std::thread::scope(|sc| {
                    sc.spawn(|| {
                        pool.transaction(|tx| -> Result<(), Error> {
                            word_acts::run(tx, root, &run)?;
                            lanes.lock().unwrap().push(tx.lane());
                            Ok(())
                        })
                        .unwrap();
                    });
                });
                true
            },
            move |m| word_acts::apply(m, &acts),
        );
    }
    let lanes = lanes.into_inner().unwrap();
    let switches = lanes.windows(2).filter(|w| w[0] != w[1]).count();
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(32);
    println!(
        "crash_deferred_lanes: {steps} transactions, {switches} lane switches, {points} drain points, {images} crash images recovered and checked"
    );
    assert!(switches >= 10, "transactions did not move between lanes");
    // At least one drain per transaction: a transaction of deferred words
    // only fences its commit record and parks its lane.
    assert!(
        points >= steps,
        "{points} drain points for {steps} transactions"
    );
}
