//! Crash simulation of a block allocated and freed in one transaction,
//! then allocated again by the next one. The first transaction's commit
//! record checksums the block (it was fresh when the record was written);
//! the block must not be written by anyone before that record is retired,
//! or a crash could make recovery roll the committed transaction back.

mod common;

use common::{Harness, Rng};
use pmem_tx::{Error, PPtr, Pool};

const SLOTS: usize = 8;
const TYPE: u64 = 5;
type Obj = [u64; 8];
/// (slot objects, objects of TYPE, the root's counter word)
type State = (Vec<Option<Obj>>, usize, u64);

fn observe(pool: &Pool) -> State {
    let (slots, n) = common::slot_objects::<Obj, SLOTS>(pool, TYPE);
    (slots, n, pool.read(counter(pool)).unwrap())
}

/// A root word after the slots, changed (snapshotted) by the transactions
/// that allocate and free.
fn counter(pool: &Pool) -> PPtr<u64> {
    common::root_slots::<Obj, SLOTS>(pool)
        .cast::<u64>()
        .at(2 * SLOTS as u64 + 8)
}

#[test]
fn a_block_freed_in_its_own_transaction_is_not_reused_too_early() {
    let mut h = Harness::with(observe, |_| {});
    let mut rng = Rng(77);
    for t in 0..24u64 {
        if t % 2 == 0 {
            // Snapshot a root word, allocate a block, free it again.
            let v = rng.next();
            h.step(
                format!("tx {t}: counter, alloc+free"),
                move |pool, _| {
                    pool.transaction(|tx| -> Result<(), Error> {
                        *tx.get_mut(counter(pool))? = v;
                        let p = tx.alloc_typed(TYPE, [v; 8])?;
                        tx.free(p)
                    })
                    .unwrap();
                    true
                },
                move |m| m.2 = v,
            );
        } else {
            // Allocate (likely the same block) and publish it with a
            // deferred write: no fence before the commit's.
            let i = rng.below(SLOTS as u64) as usize;
            if h.model.0[i].is_some() {
                continue;
            }
            let value = [t, rng.next(), t * 3, !t, 1, 2, 3, 4];
            h.step(
                format!("tx {t}: alloc into slot {i}"),
                move |pool, _| {
                    let slot = common::root_slots::<Obj, SLOTS>(pool)
                        .cast::<PPtr<Obj>>()
                        .at(i as u64);
                    pool.transaction(|tx| -> Result<(), Error> {
                        let p = tx.alloc_typed(TYPE, value)?;
                        tx.write(slot, p)
                    })
                    .unwrap();
                    true
                },
                move |m| common::model_set(&mut m.0, &mut m.1, i, Some(value)),
            );
        }
    }
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(64);
    println!(
        "crash_alloc_free_same_tx: {steps} transactions, {points} drain points, {images} crash images recovered and checked"
    );
    assert!(points >= steps);
}
