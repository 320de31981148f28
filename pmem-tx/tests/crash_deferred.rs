//! Crash simulation of deferred writes: `tx.write` of a small value goes
//! to the redo log and is stored after the commit record. Transactions mix
//! such writes (and `tx.replace`, which reads then defers) with reads of
//! the same words (which store them in place first, the undo way),
//! snapshotted writes of whole 64-byte slots, and aborts. After recovery
//! from any crash image the root equals the model exactly before or after
//! the interrupted transaction.

mod common;

use common::word_acts::{self, WordAct as Act};
use common::{Harness, Rng};
use pmem_tx::Error;

const WORDS: u64 = 1024; // the first 8 KiB of the root

#[test]
fn deferred_writes_survive_every_crash() {
    let mut h = Harness::new();
    let mut rng = Rng(7);
    for t in 0..120u64 {
        let n = 1 + rng.below(5);
        let acts: Vec<Act> = (0..n)
            .map(|_| match rng.below(9) {
                0..=2 => Act::Word(rng.below(WORDS), rng.next()),
                3 | 4 => Act::Pair(rng.below(WORDS / 2) * 2, rng.next()),
                5 | 6 => Act::Read(rng.below(WORDS)),
                7 => Act::Replace(rng.below(WORDS), rng.next()),
                _ => Act::Slot(rng.below(WORDS / 8), rng.next() as u8),
            })
            .collect();
        let abort = rng.below(6) == 0;
        let run = acts.clone();
        h.step(
            format!("tx {t}: {acts:?}{}", if abort { ", aborted" } else { "" }),
            move |pool, root| {
                let r = pool.transaction(|tx| -> Result<(), Error> {
                    word_acts::run(tx, root, &run)?;
                    if abort {
                        return Err(Error::Aborted);
                    }
                    Ok(())
                });
                assert_eq!(r.is_err(), abort, "{r:?}");
                true
            },
            move |m| {
                if !abort {
                    word_acts::apply(m, &acts);
                }
            },
        );
    }
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(16);
    println!(
        "crash_deferred: {steps} transactions, {points} drain points, {images} crash images recovered and checked"
    );
    // At least one drain per transaction (a transaction of deferred words
    // only parks its lane instead of fencing its apply; the next one's
    // drain fences it).
    assert!(
        points >= steps,
        "{points} drain points for {steps} transactions"
    );
}
