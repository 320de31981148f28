//! loom models of the heap's volatile hand-offs, through the real code
//! (`pmem_alloc::sync` swaps in loom's primitives under `--cfg loom`):
//! arena assignment, reserve / cancel / free-after-commit / retire on a
//! run's block state under contention, and the list of runs with space
//! that a free puts a full run back on. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p pmem-alloc --release --test loom_arenas`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use pmem_alloc::arena::ArenaPicker;
use pmem_alloc::run::Blocks;
use pmem_alloc::sync::{Mutex, lock};

/// Two threads on a fresh picker of two arenas get different arenas, and
/// each keeps its own on later calls.
#[test]
fn arena_assignment_is_round_robin_and_sticky() {
    loom::model(|| {
        let picker = Arc::new(ArenaPicker::new(2));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let p = picker.clone();
                loom::thread::spawn(move || {
                    let a = p.pick();
                    assert_eq!(p.pick(), a, "arena changed");
                    a
                })
            })
            .collect();
        let mut got: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, vec![0, 1]);
    });
}

/// Three threads share a run of two blocks: one reserves and cancels, one
/// reserves, "commits", frees and hands the block back after the commit,
/// one retires the run if it finds it empty. No block is ever held twice,
/// nothing is reserved from a retired run, and at the end every block is
/// available again.
#[test]
fn reserve_cancel_free_and_retire_hand_off() {
    loom::model(|| {
        let run = Arc::new(Mutex::new(Blocks::new_all_free(2)));
        let held: Arc<Vec<AtomicUsize>> = Arc::new((0..2).map(|_| AtomicUsize::new(0)).collect());
        let hold = |held: &[AtomicUsize], i: u32| {
            assert_eq!(
                held[i as usize].fetch_add(1, Ordering::SeqCst),
                0,
                "block {i} handed out twice"
            );
        };
        let unhold = |held: &[AtomicUsize], i: u32| {
            held[i as usize].fetch_sub(1, Ordering::SeqCst);
        };
        let (r1, h1) = (run.clone(), held.clone());
        let canceller = loom::thread::spawn(move || {
            let got = lock(&r1).take();
            if let Some(i) = got {
                hold(&h1, i);
                unhold(&h1, i);
                assert!(lock(&r1).give(i), "cancel of a reserved block");
            }
        });
        let (r2, h2) = (run.clone(), held.clone());
        let freer = loom::thread::spawn(move || {
            let got = lock(&r2).take();
            if let Some(i) = got {
                hold(&h2, i);
                // Published; later freed: a second free is refused while
                // the first is in flight.
                assert!(lock(&r2).start_free(i));
                assert!(!lock(&r2).start_free(i));
                unhold(&h2, i);
                let mut b = lock(&r2);
                b.end_free(i);
                assert!(b.give(i));
            }
        });
        let r3 = run.clone();
        let retirer = loom::thread::spawn(move || {
            let mut b = lock(&r3);
            if b.is_empty() {
                b.retired = true;
            }
        });
        canceller.join().unwrap();
        freer.join().unwrap();
        retirer.join().unwrap();
        let mut b = lock(&run);
        assert!(b.is_empty(), "every block back");
        if b.retired {
            assert_eq!(b.take(), None, "reserved from a retired run");
        }
    });
}

/// The list of runs with space (`SpaceList`) under contention: a run of one
/// block, on the list, whose block the freer holds. The freer gives it
/// back (and pushes the run if it was off the list) while a reserver takes
/// from the list (popping the run if it finds it full) and cancels what it
/// got, and a retirer retires the run if it finds it empty. At the end the
/// run is on the list at most once, exactly when its `listed` flag says
/// so, and whenever it can still serve a block (available and not
/// retired).
#[test]
fn space_list_relists_a_run_once() {
    use pmem_alloc::run::SpaceList;
    loom::model(|| {
        let run = pmem_alloc::sync::Arc::new(Mutex::new(Blocks::new_all_free(1)));
        let held = {
            let mut b = lock(&run);
            b.listed = true;
            b.take().expect("one block")
        };
        let list = Arc::new(Mutex::new(SpaceList::default()));
        lock(&list).push(run.clone());

        let (l1, r1) = (list.clone(), run.clone());
        let freer = loom::thread::spawn(move || {
            let back = lock(&r1).give_back(held);
            if back.relist {
                lock(&l1).push(r1.clone());
            }
        });
        let (l2, r2) = (list.clone(), run.clone());
        let reserver = loom::thread::spawn(move || {
            let got = lock(&l2).take();
            if let Some((r, i)) = got {
                assert!(pmem_alloc::sync::Arc::ptr_eq(&r, &r2));
                let back = lock(&r).give_back(i);
                if back.relist {
                    lock(&l2).push(r);
                }
            }
        });
        let r3 = run.clone();
        let retirer = loom::thread::spawn(move || {
            let mut b = lock(&r3);
            if b.is_empty() {
                b.retired = true;
            }
        });
        freer.join().unwrap();
        reserver.join().unwrap();
        retirer.join().unwrap();

        let on = lock(&list).count_of(&run);
        let b = lock(&run);
        assert!(b.is_empty(), "the block is back");
        assert!(on <= 1, "the run is on the list {on} times");
        if !b.retired {
            assert_eq!(on, 1, "a run with space is off the list");
            assert!(b.listed);
        }
        assert_eq!(b.listed, on == 1, "listed flag and membership disagree");
    });
}
