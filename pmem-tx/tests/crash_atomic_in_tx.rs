//! Crash simulation of the atomic publishers called inside a running
//! transaction, which they join: `alloc_into` and `free_from` on a slot
//! the transaction has also snapshotted or written itself, mixed with
//! snapshotted writes of other slots. After every crash image the slots
//! and the object count are exactly as before or as after the interrupted
//! transaction, and reads inside the transaction see its own stores.

mod common;

use common::{Harness, Rng};
use pmem_tx::{Error, PPtr, Pool};

const SLOTS: usize = 16;
const TYPE: u64 = 1;
type Obj = [u64; 4];
type State = (Vec<Option<Obj>>, usize);

fn observe(pool: &Pool) -> State {
    common::slot_objects::<Obj, SLOTS>(pool, TYPE)
}

/// How the transaction touches the slot before the atomic call.
#[derive(Clone, Copy, Debug)]
enum Before {
    Nothing,
    /// `add_range` of the slot (a snapshot).
    Snapshot,
    /// `tx.read` of the slot.
    Read,
}

#[test]
fn atomic_calls_joining_a_transaction_survive_every_crash() {
    let mut h = Harness::with(observe, |_| {});
    let mut rng = Rng(4242);
    for t in 0..40u64 {
        let i = rng.below(SLOTS as u64) as usize;
        let other = (i + 1 + rng.below(SLOTS as u64 - 1) as usize) % SLOTS;
        let occupied = h.model.0[i].is_some();
        let other_occupied = h.model.0[other].is_some();
        let before = match rng.below(3) {
            0 => Before::Nothing,
            1 => Before::Snapshot,
            _ => Before::Read,
        };
        let value = [t, t * 5, rng.next(), !t];
        let bump = rng.next();
        let read_back = rng.below(2) == 0;
        h.step(
            format!("tx {t}: slot {i} ({before:?}, read back {read_back}), other {other}"),
            move |pool, _| {
                let slots = common::root_slots::<Obj, SLOTS>(pool).cast::<PPtr<Obj>>();
                let dest = slots.at(i as u64);
                pool.transaction(|tx| -> Result<(), Error> {
                    match before {
                        Before::Nothing => {}
                        Before::Snapshot => tx.add_range(dest)?,
                        Before::Read => {
                            tx.read(dest)?;
                        }
                    }
                    // A snapshotted change elsewhere in the same commit.
                    if other_occupied {
                        let o = tx.read(slots.at(other as u64))?;
                        tx.get_mut(o)?[3] ^= bump;
                    }
                    if occupied {
                        pool.free_from(dest)?;
                        if read_back {
                            assert!(tx.read(dest)?.is_null(), "free_from's null is read back");
                        }
                    } else {
                        let p = pool.alloc_into(dest, TYPE, |o| *o = value)?;
                        if read_back {
                            assert_eq!(tx.read(dest)?, p, "alloc_into's pointer is read back");
                        }
                    }
                    Ok(())
                })
                .unwrap();
                true
            },
            move |m| {
                if let Some(o) = m.0[other].as_mut() {
                    o[3] ^= bump;
                }
                common::model_set(&mut m.0, &mut m.1, i, (!occupied).then_some(value));
            },
        );
    }
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(32);
    println!(
        "crash_atomic_in_tx: {steps} transactions, {points} drain points, {images} crash images recovered and checked"
    );
    assert!(points >= 2 * steps);
}
