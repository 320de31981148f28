//! Crash simulation of transactional allocation, free and realloc mixed
//! with updates of existing objects and of the root, and with scratch
//! blocks allocated and freed within one transaction, some transactions
//! aborting. After every crash image: the heap is consistent, the state is
//! exactly before or after the interrupted transaction, nothing leaked.

mod common;

use common::{Harness, Rng};
use pmem_tx::{Error, PPtr, Pool};

const SLOTS: usize = 32;
const TYPE: u64 = 7;
/// (contents of each slot's object, objects of TYPE in the heap)
type State = (Vec<Option<Vec<u8>>>, usize);

fn observe(pool: &Pool) -> State {
    let s = pool.read(common::root_slots::<u8, SLOTS>(pool)).unwrap();
    let contents = s
        .iter()
        .map(|p| {
            (!p.is_null()).then(|| {
                let info = pool.alloc_info(*p).unwrap();
                assert_eq!(info.type_num, TYPE);
                pool.read_bytes(*p, info.size).unwrap()
            })
        })
        .collect();
    (contents, pool.objects(Some(TYPE)).unwrap().len())
}

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        slot: usize,
        size: u64,
        fill: u8,
    },
    Free {
        slot: usize,
    },
    Realloc {
        slot: usize,
        size: u64,
    },
    Update {
        slot: usize,
        at: u64,
        len: u64,
        fill: u8,
    },
    /// A block allocated, written and freed again in the same transaction
    /// (it goes back to the heap at once; no slot changes).
    Scratch {
        size: u64,
        fill: u8,
    },
}

fn size(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0 => 64 * 1024 + rng.below(200 * 1024), // large runs / huge spans
        1..=3 => 200 + rng.below(3000),
        _ => 1 + rng.below(160),
    }
}

#[test]
fn transactional_alloc_free_realloc_survive_every_crash() {
    let mut h = Harness::with_size(12 << 20, observe, |_| {});
    let mut rng = Rng(77);
    for t in 0..40 {
        // Plan 1..3 operations on distinct slots against the model.
        let mut ops = Vec::new();
        let mut used = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let slot = rng.below(SLOTS as u64) as usize;
            if used.contains(&slot) {
                continue;
            }
            used.push(slot);
            ops.push(match &h.model.0[slot] {
                None => Op::Alloc {
                    slot,
                    size: size(&mut rng),
                    fill: rng.next() as u8,
                },
                Some(v) => match rng.below(3) {
                    0 => Op::Free { slot },
                    1 => Op::Realloc {
                        slot,
                        size: size(&mut rng),
                    },
                    _ => {
                        let at = rng.below(v.len() as u64);
                        let len = 1 + rng.below(v.len() as u64 - at);
                        Op::Update {
                            slot,
                            at,
                            len,
                            fill: rng.next() as u8,
                        }
                    }
                },
            });
        }
        if rng.below(3) == 0 {
            let at = rng.below(ops.len() as u64 + 1) as usize;
            ops.insert(
                at,
                Op::Scratch {
                    size: size(&mut rng),
                    fill: rng.next() as u8,
                },
            );
        }
        let abort = rng.below(5) == 0;
        let planned = ops.clone();
        h.step(
            format!("tx {t}: {ops:?} abort {abort}"),
            move |pool, _| {
                let s = common::root_slots::<u8, SLOTS>(pool).cast::<PPtr<u8>>();
                let r: Result<(), Error> = pool.transaction(|tx| {
                    for op in &planned {
                        match *op {
                            Op::Alloc { slot, size, fill } => {
                                let p = tx.alloc_bytes(size, TYPE)?;
                                tx.bytes_mut(p, size)?.fill(fill);
                                tx.write(s.at(slot as u64), p)?;
                            }
                            Op::Free { slot } => {
                                let p = tx.read(s.at(slot as u64))?;
                                tx.free(p)?;
                                tx.write(s.at(slot as u64), PPtr::null())?;
                            }
                            Op::Realloc { slot, size } => {
                                let p = tx.read(s.at(slot as u64))?;
                                let q = tx.realloc(p, size)?;
                                tx.write(s.at(slot as u64), q)?;
                            }
                            Op::Update {
                                slot,
                                at,
                                len,
                                fill,
                            } => {
                                let p = tx.read(s.at(slot as u64))?;
                                tx.bytes_mut(p.at(at), len)?.fill(fill);
                            }
                            Op::Scratch { size, fill } => {
                                let p = tx.alloc_bytes(size, TYPE)?;
                                tx.bytes_mut(p, size)?.fill(fill);
                                tx.free(p)?;
                            }
                        }
                    }
                    if abort { Err(Error::Aborted) } else { Ok(()) }
                });
                assert_eq!(r.is_ok(), !abort, "{r:?}");
                !abort
            },
            move |m| {
                for op in ops {
                    match op {
                        Op::Alloc { slot, size, fill } => {
                            common::model_set(
                                &mut m.0,
                                &mut m.1,
                                slot,
                                Some(vec![fill; size as usize]),
                            );
                        }
                        Op::Free { slot } => common::model_set(&mut m.0, &mut m.1, slot, None),
                        Op::Realloc { slot, size } => {
                            let v = m.0[slot].as_mut().unwrap();
                            v.resize(size as usize, 0);
                        }
                        Op::Update {
                            slot,
                            at,
                            len,
                            fill,
                        } => {
                            let v = m.0[slot].as_mut().unwrap();
                            v[at as usize..(at + len) as usize].fill(fill);
                        }
                        Op::Scratch { .. } => {}
                    }
                }
            },
        );
    }
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(16);
    println!(
        "crash_tx_alloc: {steps} transactions, {points} drain points, {images} crash images recovered and checked"
    );
    assert!(points > 2 * steps);
}
