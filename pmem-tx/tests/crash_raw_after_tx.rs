//! Crash simulation of bytes written outside transactions, through the
//! raw pool (`Pool::raw`, as libpmemobj's `pmemobj_memcpy_persist`), into
//! an object a transaction has just allocated and published.
//! The allocating transaction's commit record checksums the object until
//! its lane's retirement is durable; `Pool::settle` makes it so. After
//! every crash image the allocation is kept, and the word written is
//! either old or new.

mod common;

use common::{Harness, Rng};
use pmem_tx::{PPtr, Pool};

const SLOTS: usize = 8;
const TYPE: u64 = 3;
type Obj = [u64; 4];
type State = (Vec<Option<Obj>>, usize);

fn observe(pool: &Pool) -> State {
    common::slot_objects::<Obj, SLOTS>(pool, TYPE)
}

#[test]
fn raw_writes_after_settle_never_roll_an_allocation_back() {
    let mut h = Harness::with(observe, |_| {});
    let mut rng = Rng(31);
    for i in 0..SLOTS {
        let word = rng.below(4) as usize;
        let v = rng.next();
        let init = [i as u64; 4];
        let mut after = init;
        after[word] = v;
        h.step(
            format!("slot {i}: allocate in a transaction, settle"),
            move |pool, _| {
                let dest = common::root_slots::<Obj, SLOTS>(pool)
                    .cast::<PPtr<Obj>>()
                    .at(i as u64);
                // The pointer is stored under a snapshot, which a crash
                // would restore if it rolled the transaction back.
                pool.transaction(|tx| -> Result<(), pmem_tx::Error> {
                    let p = tx.alloc_typed(TYPE, init)?;
                    *tx.get_mut(dest)? = p;
                    Ok(())
                })
                .unwrap();
                pool.settle().unwrap();
                true
            },
            move |m| common::model_set(&mut m.0, &mut m.1, i, Some(init)),
        );
        h.step(
            format!("slot {i}: raw write of word {word}"),
            move |pool, _| {
                let dest = common::root_slots::<Obj, SLOTS>(pool)
                    .cast::<PPtr<Obj>>()
                    .at(i as u64);
                let p = pool.read(dest).unwrap();
                let off = (p.offset() + 8 * word as u64) as usize;
                let persister = pool.raw().persister();
                // SAFETY: `off` is an 8-aligned word of the object just
                // allocated, which no guard or transaction uses.
                unsafe { persister.memcpy_persist(off, &v.to_le_bytes()).unwrap() };
                true
            },
            move |m| m.0[i] = Some(after),
        );
    }
    let (points, images) = h.check_crashes(64);
    println!(
        "crash_raw_after_tx: {points} drain points, {images} crash images recovered and checked"
    );
    assert!(points >= 3 * SLOTS);
}
