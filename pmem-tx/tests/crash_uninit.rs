//! Crash simulation of `Pool::alloc_uninit_into` (no data written, only
//! the allocation header flushed) mixed with `free_from`, for small and
//! page-sized objects. After every crash image: the heap is consistent,
//! each slot is null or points to an allocated object of the right type
//! and size, exactly as before or after the interrupted operation, and
//! nothing leaked.

mod common;

use common::{Harness, Rng};
use pmem_tx::{PPtr, Pool};

const SLOTS: usize = 8;
const TYPE: u64 = 5;
type Big = [u8; 4096];
/// (which slots hold an object, objects of TYPE in the heap)
type State = (Vec<bool>, usize);

fn observe(pool: &Pool) -> State {
    let s = pool.read(common::root_slots::<Big, SLOTS>(pool)).unwrap();
    let held = s
        .iter()
        .map(|p| {
            if p.is_null() {
                return false;
            }
            let info = pool.alloc_info(*p).unwrap();
            assert_eq!((info.type_num, info.size), (TYPE, 4096));
            true
        })
        .collect();
    (held, pool.objects(Some(TYPE)).unwrap().len())
}

#[test]
fn uninit_alloc_and_free_survive_every_crash() {
    let mut h = Harness::with_size(8 << 20, observe, |_| {});
    let mut rng = Rng(99);
    for t in 0..40 {
        let i = rng.below(SLOTS as u64) as usize;
        let held = h.model.0[i];
        h.step(
            format!("op {t}: slot {i} {}", if held { "free" } else { "alloc" }),
            move |pool, _| {
                let dest = common::root_slots::<Big, SLOTS>(pool)
                    .cast::<PPtr<Big>>()
                    .at(i as u64);
                if held {
                    pool.free_from(dest).unwrap();
                } else {
                    pool.alloc_uninit_into(dest, TYPE).unwrap();
                }
                true
            },
            move |m| {
                m.0[i] = !held;
                if held {
                    m.1 -= 1;
                } else {
                    m.1 += 1;
                }
            },
        );
    }
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(32);
    println!(
        "crash_uninit: {steps} operations, {points} drain points, {images} crash images recovered and checked"
    );
    // One drain per operation at least: the commit record (the heap apply
    // is fenced by the next operation's drain).
    assert!(points >= steps);
}
