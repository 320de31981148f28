//! Crash simulation of atomic (non-transactional) allocation and free:
//! `alloc_into` constructs an object and publishes it into a root slot;
//! `free_from` frees it and nulls the slot. After every crash image: the
//! heap is consistent, every slot is either as before or as after the
//! interrupted operation, and no object is leaked (objects of the workload
//! type = non-null slots).

mod common;

use common::{Harness, Rng};
use pmem_tx::{PPtr, Pool};

const SLOTS: usize = 48;
const TYPE: u64 = 1;
type Obj = [u64; 4];
/// (slot contents, objects of TYPE in the heap)
type State = (Vec<Option<Obj>>, usize);

fn observe(pool: &Pool) -> State {
    common::slot_objects::<Obj, SLOTS>(pool, TYPE)
}

#[test]
fn atomic_alloc_and_free_survive_every_crash() {
    let mut h = Harness::with(observe, |_| {});
    let mut rng = Rng(2024);
    for t in 0..60u64 {
        let i = rng.below(SLOTS as u64) as usize;
        let occupied = h.model.0[i].is_some();
        let value = [t, t * 3, rng.next(), !t];
        h.step(
            format!(
                "op {t}: slot {i} {}",
                if occupied { "free" } else { "alloc" }
            ),
            move |pool, _| {
                let dest = common::root_slots::<Obj, SLOTS>(pool)
                    .cast::<PPtr<Obj>>()
                    .at(i as u64);
                if occupied {
                    pool.free_from(dest).unwrap();
                } else {
                    let p = pool.alloc_into(dest, TYPE, |o| *o = value).unwrap();
                    assert_eq!(pool.read(dest).unwrap(), p);
                }
                true
            },
            move |m| {
                common::model_set(&mut m.0, &mut m.1, i, (!occupied).then_some(value));
            },
        );
    }
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(32);
    println!(
        "crash_atomic_alloc: {steps} operations, {points} drain points, {images} crash images recovered and checked"
    );
    // One drain per operation: the commit record with its data (the heap
    // apply is flushed and fenced by the next operation's drain, which
    // then bumps the parked lane).
    assert!(points >= steps);
}
