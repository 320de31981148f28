//! Crash simulation, workload 1: transactions that update N random ranges
//! (8..4096 bytes) of the root. After recovery from any crash image the
//! root equals the model exactly before or after the interrupted
//! transaction.

mod common;

use common::{Harness, Rng};
use pmem_tx::Error;

#[test]
fn random_range_updates_survive_every_crash() {
    let mut h = Harness::new();
    let mut rng = Rng(42);
    for t in 0..40 {
        let n = 1 + rng.below(4) as usize;
        let ranges: Vec<(usize, usize, u8)> = (0..n)
            .map(|_| {
                let (o, l) = rng.range();
                (o, l, rng.next() as u8)
            })
            .collect();
        let rs = ranges.clone();
        h.step(
            format!("tx {t}: {n} ranges"),
            move |pool, root| {
                pool.transaction(|tx| -> Result<(), Error> {
                    for &(o, l, v) in &rs {
                        let p = root.cast::<u8>().at(o as u64);
                        tx.bytes_mut(p, l as u64)?.fill(v);
                    }
                    Ok(())
                })
                .unwrap();
                true
            },
            move |m| {
                for (o, l, v) in ranges {
                    m[o..o + l].fill(v);
                }
            },
        );
    }
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(64);
    println!(
        "crash_ranges: {steps} transactions, {points} drain points, {images} crash images recovered and checked"
    );
    assert!(
        points > 3 * steps,
        "each transaction drains at least 3 times"
    );
}
