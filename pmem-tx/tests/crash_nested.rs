//! Crash simulation, workload 3: nested transactions. The inner one's
//! changes commit with the outer one; an inner failure aborts the whole.

mod common;

use common::{Harness, Rng};
use pmem_tx::Error;

#[test]
fn nested_transactions_are_one_unit_under_every_crash() {
    let mut h = Harness::new();
    let mut rng = Rng(99);
    for t in 0..24 {
        let (oa, la) = rng.range();
        let (ob, lb) = rng.range();
        let (va, vb) = (rng.next() as u8, rng.next() as u8);
        let inner_fails = rng.below(3) == 0;
        let via_pool = rng.below(2) == 0;
        h.step(
            format!("tx {t}: inner fails {inner_fails}"),
            move |pool, root| {
                let r: Result<(), Error> = pool.transaction(|tx| {
                    tx.bytes_mut(root.cast::<u8>().at(oa as u64), la as u64)?
                        .fill(va);
                    let body = |inner: &mut pmem_tx::Tx<'_>| -> Result<(), Error> {
                        inner
                            .bytes_mut(root.cast::<u8>().at(ob as u64), lb as u64)?
                            .fill(vb);
                        if inner_fails {
                            Err(Error::Aborted)
                        } else {
                            Ok(())
                        }
                    };
                    let inner = if via_pool {
                        pool.transaction(body)
                    } else {
                        tx.transaction(body)
                    };
                    // Swallow the inner error: the outer is doomed anyway.
                    let _ = inner;
                    Ok(())
                });
                assert_eq!(r.is_ok(), !inner_fails);
                r.is_ok()
            },
            move |m| {
                m[oa..oa + la].fill(va);
                m[ob..ob + lb].fill(vb);
            },
        );
    }
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(64);
    println!(
        "crash_nested: {steps} transactions, {points} drain points, {images} crash images recovered and checked"
    );
    assert!(points > 2 * steps);
}
