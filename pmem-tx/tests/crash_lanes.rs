//! Crash simulation of lazy log invalidation across lanes: each operation
//! runs on a new thread, so consecutive operations use different lanes
//! while the previous one's generation bump is not fenced yet. Operations
//! reuse a handful of objects (updates, transactional and atomic allocation
//! and free, atomic calls joining a transaction that snapshotted their
//! slot, scratch blocks freed by the transaction that allocated them), so
//! a later transaction keeps changing bytes an earlier one's commit record
//! checksums, and reuses blocks an earlier one freed. After
//! every crash image: the heap is consistent, the state is exactly before
//! or after the interrupted operation, nothing leaked.

mod common;

use common::{Harness, Rng};
use pmem_tx::{Error, PPtr, Pool};
use std::sync::Mutex;

const SLOTS: usize = 6;
const TYPE: u64 = 9;
type Obj = [u64; 5];
/// (contents of each slot's object, objects of TYPE in the heap)
type State = (Vec<Option<Obj>>, usize);

fn observe(pool: &Pool) -> State {
    common::slot_objects::<Obj, SLOTS>(pool, TYPE)
}

#[derive(Clone, Copy, Debug)]
enum Op {
    TxAlloc(usize, u64),
    TxFree(usize),
    UpdateFree(usize),
    AtomicAlloc(usize, u64),
    AtomicFree(usize),
    Update(usize, u64),
    /// `Update`, plus a block of the same size allocated, written and
    /// freed again in the same transaction: it goes back to the heap at
    /// once, and the next operation's allocation may take it.
    UpdateScratch(usize, u64),
    /// An atomic alloc or free joining a transaction that snapshotted the
    /// slot first.
    SnapshotThenAtomic(usize, u64),
}

#[test]
fn lazy_invalidation_survives_every_crash_across_lanes() {
    let mut h = Harness::with_size(8 << 20, observe, |_| {});
    // Each operation's thread leaves its lane parked; a later thread
    // claims it when it touches the same bytes or has passed over it in 8
    // drains (`invalidate::stale`), so more logs stay live at once.
    h.max_live_logs = 16;
    let mut rng = Rng(4242);
    let lanes = Mutex::new(Vec::new());
    for t in 0..80u64 {
        let slot = rng.below(SLOTS as u64) as usize;
        let v = rng.next();
        let op = match (h.model.0[slot].is_some(), rng.below(4)) {
            (_, 3) if v.is_multiple_of(3) => Op::SnapshotThenAtomic(slot, v),
            (false, 0) => Op::AtomicAlloc(slot, v),
            (false, _) => Op::TxAlloc(slot, v),
            (true, 0) => Op::AtomicFree(slot),
            (true, 1) if v.is_multiple_of(2) => Op::TxFree(slot),
            (true, 1) => Op::UpdateFree(slot),
            (true, 2) => Op::UpdateScratch(slot, v),
            (true, _) => Op::Update(slot, v),
        };
        let occupied = h.model.0[slot].is_some();
        let lanes = &lanes;
        h.step(
            format!("op {t}: {op:?}"),
            move |pool, _| {
                std::thread::scope(|sc| {
                    sc.spawn(|| {
                        let s = common::root_slots::<Obj, SLOTS>(pool).cast::<PPtr<Obj>>();
                        let at = |i: usize| s.at(i as u64);
                        let lane = |tx: &pmem_tx::Tx<'_>| lanes.lock().unwrap().push(tx.lane());
                        match op {
                            Op::AtomicAlloc(i, v) => {
                                pool.alloc_into(at(i), TYPE, |o| *o = [v; 5]).unwrap();
                            }
                            Op::AtomicFree(i) => pool.free_from(at(i)).unwrap(),
                            Op::TxAlloc(i, v) => pool
                                .transaction(|tx| -> Result<(), Error> {
                                    let o = tx.alloc_typed(TYPE, [v; 5])?;
                                    tx.write(at(i), o)?;
                                    lane(tx);
                                    Ok(())
                                })
                                .unwrap(),
                            Op::TxFree(i) => pool
                                .transaction(|tx| -> Result<(), Error> {
                                    let o = tx.read(at(i))?;
                                    tx.free(o)?;
                                    tx.write(at(i), PPtr::null())?;
                                    lane(tx);
                                    Ok(())
                                })
                                .unwrap(),
                            // The freed block's bytes are in this
                            // transaction's checksum: its next owner must
                            // not write them before this commit is stale.
                            Op::UpdateFree(i) => pool
                                .transaction(|tx| -> Result<(), Error> {
                                    let o = tx.read(at(i))?;
                                    tx.write(o, [7; 5])?;
                                    tx.free(o)?;
                                    tx.write(at(i), PPtr::null())?;
                                    lane(tx);
                                    Ok(())
                                })
                                .unwrap(),
                            Op::Update(i, v) | Op::UpdateScratch(i, v) => pool
                                .transaction(|tx| -> Result<(), Error> {
                                    let o = tx.read(at(i))?;
                                    let mut m = tx.get_mut(o)?;
                                    m[0] = v;
                                    m[4] = v ^ 1;
                                    drop(m);
                                    if let Op::UpdateScratch(..) = op {
                                        let p = tx.alloc_typed(TYPE, [!v; 5])?;
                                        tx.free(p)?;
                                    }
                                    lane(tx);
                                    Ok(())
                                })
                                .unwrap(),
                            Op::SnapshotThenAtomic(i, v) => pool
                                .transaction(|tx| -> Result<(), Error> {
                                    tx.add_range(at(i))?;
                                    if occupied {
                                        pool.free_from(at(i))?;
                                    } else {
                                        pool.alloc_into(at(i), TYPE, |o| *o = [v; 5])?;
                                    }
                                    lane(tx);
                                    Ok(())
                                })
                                .unwrap(),
                        }
                    });
                });
                true
            },
            move |m| match op {
                Op::TxAlloc(i, v) | Op::AtomicAlloc(i, v) => {
                    common::model_set(&mut m.0, &mut m.1, i, Some([v; 5]))
                }
                Op::TxFree(i) | Op::AtomicFree(i) | Op::UpdateFree(i) => {
                    common::model_set(&mut m.0, &mut m.1, i, None)
                }
                Op::SnapshotThenAtomic(i, v) => {
                    common::model_set(&mut m.0, &mut m.1, i, (!occupied).then_some([v; 5]));
                }
                Op::Update(i, v) | Op::UpdateScratch(i, v) => {
                    let o = m.0[i].as_mut().unwrap();
                    o[0] = v;
                    o[4] = v ^ 1;
                }
            },
        );
    }
    let lanes = lanes.into_inner().unwrap();
    let switches = lanes.windows(2).filter(|w| w[0] != w[1]).count();
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(32);
    println!(
        "crash_lanes: {steps} operations, {switches} lane switches, {points} drain points, {images} crash images recovered and checked"
    );
    assert!(switches >= 10, "operations did not move between lanes");
    // At least one drain per operation (a redo-only one parks its lane
    // instead of fencing its apply).
    assert!(points >= steps);
}
