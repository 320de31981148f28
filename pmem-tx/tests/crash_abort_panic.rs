//! Crash simulation, workload 2: transactions that end in an error, an
//! explicit abort or a panic after changing ranges, mixed with committed
//! ones. A rolled-back transaction leaves the model unchanged, in the live
//! pool and after every crash, including crashes during the rollback.

mod common;

use common::{Harness, Rng};
use pmem_tx::Error;

#[test]
fn aborts_and_panics_roll_back_under_every_crash() {
    // The workload's own panics are expected: keep them out of the log.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"workload panic") {
            default_hook(info);
        }
    }));
    let mut h = Harness::new();
    let mut rng = Rng(7);
    for t in 0..32 {
        let ending = rng.below(4); // 0 commit, 1 Err, 2 abort(), 3 panic
        let n = 1 + rng.below(3) as usize;
        let ranges: Vec<(usize, usize, u8)> = (0..n)
            .map(|_| {
                let (o, l) = rng.range();
                (o, l, rng.next() as u8)
            })
            .collect();
        let rs = ranges.clone();
        h.step(
            format!("tx {t}: ending {ending}"),
            move |pool, root| {
                let run = || {
                    pool.transaction(|tx| -> Result<(), Error> {
                        for &(o, l, v) in &rs {
                            tx.bytes_mut(root.cast::<u8>().at(o as u64), l as u64)?
                                .fill(v);
                        }
                        match ending {
                            1 => Err(Error::Aborted),
                            2 => {
                                tx.abort();
                                Ok(())
                            }
                            3 => panic!("workload panic"),
                            _ => Ok(()),
                        }
                    })
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
                match ending {
                    0 => {
                        r.unwrap().unwrap();
                        true
                    }
                    3 => {
                        assert!(r.is_err(), "panic resumed");
                        false
                    }
                    _ => {
                        assert!(matches!(r.unwrap(), Err(Error::Aborted)));
                        false
                    }
                }
            },
            move |m| {
                for (o, l, v) in ranges {
                    m[o..o + l].fill(v);
                }
            },
        );
        assert_eq!(h.pool().lanes_in_use(), 0);
    }
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(64);
    println!(
        "crash_abort_panic: {steps} transactions, {points} drain points, {images} crash images recovered and checked"
    );
    assert!(points > 2 * steps);
}
