//! `tx.write` of small values through the redo log: every way of reading
//! them back in the same transaction sees them, and the fallbacks keep the
//! same results.

use pmem_tx::{Error, PPtr, Pool};

fn pool(name: &str) -> (tempfile::TempDir, Pool, PPtr<[u64; 64]>) {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create(dir.path().join(name), "deferred", 16 << 20).unwrap();
    let root = pool.root::<[u64; 64]>().unwrap();
    (dir, pool, root)
}

#[test]
fn every_read_sees_a_deferred_write() {
    let (_d, pool, root) = pool("a.pool");
    let w = |i| root.cast::<u64>().at(i);
    pool.transaction(|tx| -> Result<(), Error> {
        tx.write(w(0), 5)?;
        assert_eq!(tx.read(w(0))?, 5);
        tx.write(w(1), 6)?;
        // A guard over a range holding a deferred word.
        assert_eq!(tx.get(root)?[1], 6);
        tx.write(w(2), 7)?;
        *tx.get_mut(w(2))? += 1;
        tx.write(w(3), 9)?;
        tx.write(w(3), 10)?;
        tx.write(root.cast::<[u64; 2]>().at(2), [11, 12])?;
        assert_eq!(tx.read(root.cast::<[u64; 2]>().at(2))?, [11, 12]);
        Ok(())
    })
    .unwrap();
    let r = pool.read(root).unwrap();
    assert_eq!(r[..6], [5, 6, 8, 10, 11, 12]);
}

#[test]
fn aborted_deferred_writes_leave_nothing() {
    let (_d, pool, root) = pool("b.pool");
    let w = root.cast::<u64>().at(9);
    pool.transaction(|tx| tx.write(w, 1)).unwrap();
    let r = pool.transaction(|tx| -> Result<(), Error> {
        tx.write(w, 2)?;
        Err(Error::Aborted)
    });
    assert!(r.is_err());
    assert_eq!(pool.read(w).unwrap(), 1);
    // A panic as well.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = pool.transaction(|tx| -> Result<(), Error> {
            tx.write(w, 3)?;
            panic!("boom")
        });
    }));
    assert!(r.is_err());
    assert_eq!(pool.read(w).unwrap(), 1);
    assert_eq!(pool.lanes_in_use(), 0);
}

#[test]
fn many_small_writes_fall_back_and_all_commit() {
    let (_d, pool, root) = pool("c.pool");
    pool.transaction(|tx| -> Result<(), Error> {
        for i in 0..64u64 {
            tx.write(root.cast::<u64>().at(i), i * 3)?;
        }
        Ok(())
    })
    .unwrap();
    let r = pool.read(root).unwrap();
    assert!(r.iter().enumerate().all(|(i, &v)| v == i as u64 * 3));
}

#[test]
fn writes_into_a_freed_or_reallocated_object_behave() {
    let (_d, pool, root) = pool("d.pool");
    let slot: PPtr<PPtr<[u64; 8]>> = root.cast();
    pool.transaction(|tx| -> Result<(), Error> {
        let o = tx.alloc([0u64; 8])?;
        tx.write(slot, o)
    })
    .unwrap();
    let o = pool.read(slot).unwrap();
    // Written, then read through realloc's copy.
    let moved = pool
        .transaction(|tx| -> Result<PPtr<u8>, Error> {
            tx.write(o.cast::<u64>().at(3), 33)?;
            let n = tx.realloc(o.cast(), 128)?;
            tx.write(slot.cast::<PPtr<u8>>(), n)?;
            Ok(n)
        })
        .unwrap();
    assert_eq!(pool.read(moved.cast::<u64>().at(3)).unwrap(), 33);
    // Written, then freed: the write is dropped with the object.
    pool.transaction(|tx| -> Result<(), Error> {
        tx.write(moved.cast::<u64>().at(1), 44)?;
        tx.free(moved)?;
        tx.write(slot, PPtr::null())
    })
    .unwrap();
    assert!(pool.read(slot).unwrap().is_null());
    let report = pool.check_heap().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(pool.objects(Some(0)).unwrap().len(), 0);
}

#[test]
fn a_stale_write_into_a_free_block_does_not_reach_the_object_allocated_there() {
    let (_d, pool, root) = pool("e.pool");
    let slot: PPtr<PPtr<[u64; 8]>> = root.cast();
    pool.transaction(|tx| -> Result<(), Error> {
        let o = tx.alloc([1u64; 8])?;
        tx.write(slot, o)
    })
    .unwrap();
    let stale = pool.read(slot).unwrap();
    pool.free_from(slot).unwrap();
    // The freed block back in the heap (a free waits for its lane's
    // invalidation to be durable).
    pool.settle().unwrap();
    let fresh = pool
        .transaction(|tx| -> Result<Vec<PPtr<[u64; 8]>>, Error> {
            // Through the stale pointer, into the free block: deferred.
            tx.write(stale.cast::<u64>().at(2), 0xdead)?;
            // Allocate until the block comes back (the same thread takes
            // the same size class's freed blocks first).
            let mut got = Vec::new();
            for k in 0..64u64 {
                let p = tx.alloc_typed(3, [k; 8])?;
                got.push(p);
                if p == stale {
                    break;
                }
            }
            Ok(got)
        })
        .unwrap();
    let k = fresh
        .iter()
        .position(|&p| p == stale)
        .expect("the freed block was handed out again");
    // The object holds its value: the deferred word died with the free
    // block, and was not stored after the commit.
    assert_eq!(pool.read(stale).unwrap(), [k as u64; 8]);

    // The same with a zeroed allocation, which writes no value over it.
    pool.transaction(|tx| tx.free(stale)).unwrap();
    pool.settle().unwrap();
    let got = pool
        .transaction(|tx| -> Result<bool, Error> {
            tx.write(stale.cast::<u64>().at(5), 0xbeef)?;
            for _ in 0..64 {
                if tx.zalloc::<[u64; 8]>(3)? == stale {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .unwrap();
    assert!(got, "the freed block was handed out again");
    assert_eq!(pool.read(stale).unwrap(), [0; 8]);
}

#[test]
fn free_from_inside_a_transaction_frees_the_pointer_it_wrote() {
    let (_d, pool, root) = pool("f.pool");
    let slot: PPtr<PPtr<[u64; 8]>> = root.cast();
    pool.transaction(|tx| -> Result<(), Error> {
        let o = tx.alloc([1u64; 8])?;
        // Deferred: `free_from`, which joins this transaction, must read
        // this pointer, not the null still in place.
        tx.write(slot, o)?;
        pool.free_from(slot)?;
        assert!(tx.read(slot)?.is_null());
        Ok(())
    })
    .unwrap();
    assert!(pool.read(slot).unwrap().is_null());
    assert_eq!(pool.objects(Some(0)).unwrap().len(), 0);
    let report = pool.check_heap().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn replace_returns_the_old_value_and_commits_or_rolls_back_the_new() {
    let (_d, pool, root) = pool("replace.pool");
    let w = root.cast::<u64>().at(20);
    let pair = root.cast::<[u64; 2]>().at(11);
    // Larger than a deferred write: stored in place, snapshotted.
    let big = root.cast::<[u64; 16]>().at(2);
    pool.transaction(|tx| -> Result<(), Error> {
        assert_eq!(tx.replace(w, 1)?, 0);
        // A deferred write earlier in the transaction is what it replaces.
        tx.write(pair, [3, 4])?;
        assert_eq!(tx.replace(pair, [5, 6])?, [3, 4]);
        assert_eq!(tx.replace(w, 2)?, 1);
        assert_eq!(tx.replace(big, [7; 16])?, [0; 16]);
        assert_eq!(tx.read(w)?, 2);
        Ok(())
    })
    .unwrap();
    assert_eq!(pool.read(w).unwrap(), 2);
    assert_eq!(pool.read(pair).unwrap(), [5, 6]);
    assert_eq!(pool.read(big).unwrap(), [7; 16]);
    let r = pool.transaction(|tx| -> Result<(), Error> {
        assert_eq!(tx.replace(w, 9)?, 2);
        assert_eq!(tx.replace(big, [8; 16])?, [7; 16]);
        Err(Error::Aborted)
    });
    assert!(matches!(r, Err(Error::Aborted)));
    assert_eq!(pool.read(w).unwrap(), 2);
    assert_eq!(pool.read(big).unwrap(), [7; 16]);
    assert_eq!(pool.lanes_in_use(), 0);
}

#[test]
fn replace_locks_exclusively_before_it_reads() {
    let (_d, pool, root) = pool("replace-lock.pool");
    pool.set_lock_timeout(std::time::Duration::from_secs(30));
    let w = root.cast::<u64>().at(0);
    // Two threads increment one word. A read then a write would take the
    // word shared, then upgrade, and an upgrade that meets the other
    // thread's read gives up with a conflict; `replace` takes it
    // exclusively at once, so the other thread waits instead.
    const N: u64 = 2000;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..N {
                    pool.transaction(|tx| -> Result<(), Error> {
                        let old = tx.replace(w, u64::MAX)?;
                        tx.write(w, old + 1)
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(pool.read(w).unwrap(), 2 * N);
}
