//! Crash simulation of transactions whose undo logs overflow the lane
//! (4 KiB lanes, several 1..4 KiB snapshots per transaction): recovery must
//! follow the log into the overflow blocks, in every crash image.

mod common;

use common::{Harness, Rng, root_bytes};
use pmem_tx::Error;

#[test]
fn overflowing_undo_logs_survive_every_crash() {
    let mut h = Harness::with_lanes(8 << 20, (4, 4096), root_bytes, |_| {});
    let mut rng = Rng(31337);
    for t in 0..20 {
        let n = 2 + rng.below(3) as usize;
        let ranges: Vec<(usize, usize, u8)> = (0..n)
            .map(|_| {
                let len = 1024 + rng.below(3072) as usize;
                let off = rng.below((common::ROOT - len) as u64) as usize;
                (off, len, rng.next() as u8)
            })
            .collect();
        let rs = ranges.clone();
        h.step(
            format!("tx {t}: {n} ranges"),
            move |pool, root| {
                pool.transaction(|tx| -> Result<(), Error> {
                    for &(o, l, v) in &rs {
                        tx.bytes_mut(root.cast::<u8>().at(o as u64), l as u64)?
                            .fill(v);
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
    let (points, images) = h.check_crashes(32);
    println!(
        "crash_overflow: {steps} transactions, {points} drain points, {images} crash images recovered and checked"
    );
    assert!(points > 3 * steps);
}
