//! The transaction contract on a real pool file: commit, abort, panic,
//! nesting, reopen, typed-pointer checks.

use pmem_tx::{Error, Mode, PPtr, Pool, PoolOptions};

/// A temporary directory on tmpfs when there is one (msync is then cheap,
/// and a loaded disk cannot stretch transactions past the lock timeout).
fn tmpdir() -> tempfile::TempDir {
    match std::path::Path::new("/dev/shm") {
        shm if shm.is_dir() => tempfile::tempdir_in(shm).unwrap(),
        _ => tempfile::tempdir().unwrap(),
    }
}

fn pool(dir: &tempfile::TempDir, mode: Mode) -> Pool {
    let opts = PoolOptions::new().mode(mode).ignore_env(true);
    Pool::create_with(dir.path().join("t.pool"), "basics", 8 << 20, &opts).unwrap()
}

#[test]
fn commit_is_visible_and_survives_reopen() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    let root = p.root::<[u64; 8]>().unwrap();
    p.transaction(|tx| -> Result<(), Error> {
        let mut r = tx.get_mut(root)?;
        r[0] = 1;
        r[7] = 7;
        Ok(())
    })
    .unwrap();
    assert_eq!(p.read(root).unwrap()[7], 7);
    p.close().unwrap();
    let p = Pool::open(dir.path().join("t.pool"), "basics").unwrap();
    let again = p.root::<[u64; 8]>().unwrap();
    assert_eq!(again, root, "root stays where it was");
    assert_eq!(p.read(again).unwrap(), [1, 0, 0, 0, 0, 0, 0, 7]);
    assert!(p.recovered().is_empty());
}

#[test]
fn err_abort_and_panic_roll_back() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    let root = p.root::<[u64; 4]>().unwrap();
    p.transaction(|tx| tx.write(root, [1, 2, 3, 4])).unwrap();

    let r: Result<(), Error> = p.transaction(|tx| {
        tx.write(root, [9; 4])?;
        Err(Error::Aborted)
    });
    assert!(matches!(r, Err(Error::Aborted)));
    assert_eq!(p.read(root).unwrap(), [1, 2, 3, 4]);

    let r: Result<(), Error> = p.transaction(|tx| {
        tx.write(root, [8; 4])?;
        tx.abort();
        Ok(())
    });
    assert!(matches!(r, Err(Error::Aborted)));
    assert_eq!(p.read(root).unwrap(), [1, 2, 3, 4]);

    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = p.transaction(|tx| -> Result<(), Error> {
            tx.write(root, [7; 4])?;
            panic!("boom");
        });
    }));
    assert!(caught.is_err(), "the panic resumes");
    assert_eq!(p.read(root).unwrap(), [1, 2, 3, 4]);
    assert_eq!(p.lanes_in_use(), 0, "lanes come back after a panic");
}

#[test]
fn nested_transactions_join_and_inner_failure_aborts_all() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    let root = p.root::<[u64; 2]>().unwrap();
    let a = root.cast::<u64>();
    let b = a.at(1);
    p.transaction(|tx| -> Result<(), Error> {
        tx.write(a, 1)?;
        p.transaction(|inner| {
            assert_eq!(inner.depth(), 1);
            inner.write(b, 2)
        })?;
        Ok(())
    })
    .unwrap();
    assert_eq!(p.read(root).unwrap(), [1, 2]);

    let r: Result<(), Error> = p.transaction(|tx| {
        tx.write(a, 10)?;
        let inner: Result<(), Error> = tx.transaction(|inner| {
            inner.write(b, 20)?;
            Err(Error::Aborted)
        });
        assert!(inner.is_err());
        // The outer closure swallows the error, but the whole is doomed.
        Ok(())
    });
    assert!(matches!(r, Err(Error::Aborted)));
    assert_eq!(p.read(root).unwrap(), [1, 2]);
}

#[test]
fn transactions_on_several_pools_nest_and_interleave() {
    // More pools than a thread keeps transaction states for, so that
    // states are dropped and made again between transactions.
    let dirs: Vec<_> = (0..6).map(|_| tmpdir()).collect();
    let pools: Vec<Pool> = dirs.iter().map(|d| pool(d, Mode::Msync)).collect();
    let roots: Vec<PPtr<[u64; 2]>> = pools.iter().map(|p| p.root().unwrap()).collect();
    for round in 1..=3u64 {
        for (k, (p, &root)) in pools.iter().zip(&roots).enumerate() {
            let (q, &qroot) = (&pools[(k + 1) % 6], &roots[(k + 1) % 6]);
            // A transaction on `p` that runs one on `q` inside it: each
            // commits on its own pool. Inside that, a call on `p` joins
            // the outer transaction (depth 1), not a new one.
            p.transaction(|tx| -> Result<(), Error> {
                tx.write(root.cast::<u64>(), round * 10 + k as u64)?;
                q.transaction(|qtx| -> Result<(), Error> {
                    assert_eq!(qtx.depth(), 0, "another pool: its own transaction");
                    qtx.write(qroot.cast::<u64>().at(1), round)?;
                    p.transaction(|again| {
                        assert_eq!(again.depth(), 1, "same pool: joins the outer one");
                        again.write(root.cast::<u64>().at(1), round)
                    })
                })?;
                // A failing transaction on `q` inside `p`'s leaves `p`'s.
                let failed: Result<(), Error> = q.transaction(|qtx| {
                    qtx.write(qroot.cast::<u64>(), 999)?;
                    Err(Error::Aborted)
                });
                assert!(failed.is_err());
                Ok(())
            })
            .unwrap();
        }
        for (k, p) in pools.iter().enumerate() {
            assert_eq!(
                p.read(roots[k]).unwrap(),
                [round * 10 + k as u64, round],
                "pool {k} after round {round}"
            );
            assert_eq!(p.lanes_in_use(), 0);
        }
    }
    // A panic inside a nested transaction on another pool rolls both
    // back, and both pools take transactions again afterwards.
    let (a, b) = (&pools[0], &pools[1]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a.transaction(|tx| -> Result<(), Error> {
            tx.write(roots[0].cast::<u64>(), 1)?;
            b.transaction(|btx| -> Result<(), Error> {
                btx.write(roots[1].cast::<u64>(), 1)?;
                panic!("inside two transactions")
            })
        })
    }));
    assert!(r.is_err());
    assert_eq!(a.read(roots[0]).unwrap(), [30, 3]);
    assert_eq!(b.read(roots[1]).unwrap(), [31, 3]);
    for (p, &root) in [(a, &roots[0]), (b, &roots[1])] {
        p.transaction(|tx| tx.write(root.cast::<u64>(), 7)).unwrap();
        assert_eq!(p.read(root).unwrap()[0], 7);
        assert_eq!(p.lanes_in_use(), 0);
    }
}

#[test]
fn nested_call_while_a_reference_is_alive_is_refused() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    let root = p.root::<u64>().unwrap();
    let r: Result<(), Error> = p.transaction(|tx| {
        let _guard = tx.get_mut(root)?;
        let inner: Result<(), Error> = p.transaction(|inner| inner.write(root, 5));
        assert!(matches!(inner, Err(Error::BorrowedAcrossNested)));
        Ok(())
    });
    assert!(r.is_ok());
}

#[test]
fn bad_pointers_are_typed_errors() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    let root = p.root::<[u64; 4]>().unwrap();
    assert!(matches!(p.read(PPtr::<u64>::null()), Err(Error::Null)));
    let foreign = PPtr::<u64>::from_raw(p.id() ^ 2, root.offset());
    assert!(matches!(p.read(foreign), Err(Error::WrongPool { .. })));
    let misaligned = PPtr::<u64>::from_raw(p.id(), root.offset() + 1);
    assert!(matches!(p.read(misaligned), Err(Error::BadPointer { .. })));
    let header = PPtr::<u64>::from_raw(p.id(), 0x100);
    assert!(matches!(p.read(header), Err(Error::BadPointer { .. })));
    let past_end = PPtr::<u64>::from_raw(p.id(), (8 << 20) - 4);
    assert!(matches!(p.read(past_end), Err(Error::BadPointer { .. })));
    assert!(matches!(
        p.root::<[u64; 5]>(),
        Err(Error::RootSize {
            stored: 32,
            requested: 40
        })
    ));
}

#[test]
fn a_pref_blocks_writers_until_dropped() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    p.set_lock_timeout(std::time::Duration::from_millis(20));
    let root = p.root::<u64>().unwrap();
    let g = p.get(root).unwrap();
    let r = p.transaction(|tx| tx.write(root, 1));
    assert!(matches!(r, Err(Error::Conflict { .. })));
    drop(g);
    p.transaction(|tx| tx.write(root, 1)).unwrap();
    assert_eq!(p.read(root).unwrap(), 1);
}

#[test]
fn threads_on_disjoint_data_run_and_commit() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    p.set_lock_timeout(std::time::Duration::from_secs(30));
    let root = p.root::<[[u64; 32]; 4]>().unwrap();
    std::thread::scope(|s| {
        for t in 0..4usize {
            let p = &p;
            s.spawn(move || {
                let mine = root.index(t).unwrap();
                for i in 0..500u64 {
                    p.transaction(|tx| -> Result<(), Error> {
                        let mut m = tx.get_mut(mine)?;
                        m[0] += 1;
                        m[31] = i;
                        Ok(())
                    })
                    .unwrap();
                }
            });
        }
    });
    for t in 0..4 {
        let v = p.read(root.index(t).unwrap()).unwrap();
        assert_eq!((v[0], v[31]), (500, 499));
    }
}

#[test]
fn threads_on_shared_data_are_isolated() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    p.set_lock_timeout(std::time::Duration::from_secs(10));
    let counter = p.root::<u64>().unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            let p = &p;
            s.spawn(move || {
                for _ in 0..300 {
                    // Write lock first: these never conflict, they queue.
                    p.transaction(|tx| -> Result<(), Error> {
                        let mut c = tx.get_mut(counter)?;
                        *c += 1;
                        Ok(())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(p.read(counter).unwrap(), 900, "no lost update");
}

#[test]
fn read_then_write_races_end_in_conflict_never_in_a_lost_update() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    p.set_lock_timeout(std::time::Duration::from_secs(10));
    let counter = p.root::<u64>().unwrap();
    let committed = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (p, committed) = (&p, &committed);
            s.spawn(move || {
                for _ in 0..500 {
                    let r = p.transaction(|tx| -> Result<(), Error> {
                        let v = tx.read(counter)?;
                        std::thread::yield_now();
                        tx.write(counter, v + 1)
                    });
                    match r {
                        Ok(()) => {
                            committed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(Error::Conflict { .. }) => {}
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            });
        }
    });
    let n = committed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n > 0);
    assert_eq!(p.read(counter).unwrap(), n, "every commit counted once");
    assert_eq!(p.lanes_in_use(), 0);
}

#[test]
fn a_transaction_larger_than_its_lane_overflows_into_the_heap() {
    let dir = tmpdir();
    // Default lanes: 4 KiB, about 3 KiB of undo log.
    let p = pool(&dir, Mode::Msync);
    let root = p.root::<[u8; 8192]>().unwrap();
    let used = p.check_heap().unwrap().used_bytes;
    p.transaction(|tx| tx.write(root, [1u8; 8192])).unwrap();
    assert_eq!(p.read(root).unwrap(), [1u8; 8192]);
    // Several snapshots that overflow together roll back whole.
    let r: Result<(), Error> = p.transaction(|tx| {
        for k in 0..8u64 {
            let part = root.cast::<[u8; 1024]>().at(k);
            tx.write(part, [2u8; 1024])?;
        }
        Err(Error::Aborted)
    });
    assert!(matches!(r, Err(Error::Aborted)));
    assert_eq!(p.read(root).unwrap(), [1u8; 8192], "rolled back whole");
    assert_eq!(p.lanes_in_use(), 0);
    assert_eq!(
        p.check_heap().unwrap().used_bytes,
        used,
        "overflow blocks were given back"
    );
}

#[test]
fn reading_bytes_the_transaction_wrote_keeps_them_locked_exclusively() {
    // Regression: a shared request on a stripe held exclusively used to
    // downgrade the record, and the release then leaked the exclusive lock.
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    p.set_lock_timeout(std::time::Duration::from_millis(50));
    let root = p.root::<[u64; 4]>().unwrap();
    p.transaction(|tx| -> Result<(), Error> {
        tx.write(root, [1, 2, 3, 4])?;
        assert_eq!(tx.read(root)?, [1, 2, 3, 4]);
        Ok(())
    })
    .unwrap();
    // Another thread can take the bytes at once: nothing leaked.
    std::thread::scope(|s| {
        s.spawn(|| {
            p.transaction(|tx| tx.write(root, [5; 4])).unwrap();
        });
    });
    assert_eq!(p.read(root).unwrap(), [5; 4]);
}

#[test]
fn pointers_into_heap_metadata_are_refused() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    let root = p.root::<[u64; 4]>().unwrap();
    // The allocation header just before the root, and the heap header.
    let header = PPtr::<[u64; 2]>::from_raw(p.id(), root.offset() - 16);
    assert!(matches!(p.read(header), Err(Error::BadPointer { .. })));
    let heap_start = PPtr::<u64>::from_raw(p.id(), p.raw().header().heap_offset);
    assert!(matches!(p.read(heap_start), Err(Error::BadPointer { .. })));
    let r = p.transaction(|tx| tx.write(header, [0, 0]));
    assert!(matches!(r, Err(Error::BadPointer { .. })));
    // Past the end of the root's block.
    let beyond = root.cast::<[u8; 4096]>();
    assert!(matches!(p.read(beyond), Err(Error::BadPointer { .. })));
    assert!(p.check_heap().unwrap().problems.is_empty());
}

#[test]
fn a_read_only_pool_reads_but_refuses_writes() {
    let dir = tmpdir();
    let path = dir.path().join("t.pool");
    {
        let p = pool(&dir, Mode::Msync);
        let root = p.root::<u64>().unwrap();
        p.transaction(|tx| tx.write(root, 9)).unwrap();
        p.close().unwrap();
    }
    let opts = PoolOptions::new().read_only(true).ignore_env(true);
    let p = Pool::open_with(&path, Some("basics"), &opts).unwrap();
    let root = p.root::<u64>().unwrap();
    assert_eq!(p.read(root).unwrap(), 9);
    let r = p.transaction(|tx| tx.write(root, 10));
    assert!(
        matches!(r, Err(Error::Pool(pmem_tx::pool_error::ReadOnly))),
        "{r:?}"
    );
    assert_eq!(p.read(root).unwrap(), 9);
}

#[test]
fn a_full_pool_aborts_the_transaction_and_leaks_nothing() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    let slots = p.root::<[PPtr<u8>; 512]>().unwrap();
    let mut kept = 0usize;
    // Fill with 64 KiB objects, one per transaction, until the pool is full.
    let err = loop {
        let r = p.transaction(|tx| -> Result<(), Error> {
            let o = tx.alloc_bytes(64 * 1024, 9)?;
            tx.write(slots.index(kept).unwrap(), o)
        });
        match r {
            Ok(()) => kept += 1,
            Err(e) => break e,
        }
        assert!(kept < 512, "an 8 MiB pool cannot hold 512 x 64 KiB");
    };
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Alloc(pmem_tx::AllocError::OutOfSpace { .. })),
        "{err:?}"
    );
    assert!(msg.contains("full"), "{msg}");
    assert!(kept > 50, "only {kept} objects fit");
    // The failed transaction left nothing: no object, a consistent heap.
    assert_eq!(p.objects(Some(9)).unwrap().len(), kept);
    assert!(p.check_heap().unwrap().problems.is_empty());
    assert_eq!(p.lanes_in_use(), 0);
    // A transaction that allocates several objects and runs out midway
    // rolls back the ones it had.
    p.transaction(|tx| -> Result<(), Error> {
        let o = tx.read(slots.index(0).unwrap())?;
        tx.free(o)?;
        tx.write(slots.index(0).unwrap(), PPtr::null())
    })
    .unwrap();
    let r: Result<(), Error> = p.transaction(|tx| {
        for i in 0..8 {
            let o = tx.alloc_bytes(64 * 1024, 9)?;
            tx.write(slots.index(i).unwrap(), o)?;
        }
        Ok(())
    });
    assert!(r.is_err());
    assert_eq!(p.objects(Some(9)).unwrap().len(), kept - 1);
    assert!(p.read(slots.index(0).unwrap()).unwrap().is_null());
    // After freeing, allocation works again.
    p.transaction(|tx| -> Result<(), Error> {
        let o = tx.alloc_bytes(64 * 1024, 9)?;
        tx.write(slots.index(0).unwrap(), o)
    })
    .unwrap();
    assert_eq!(p.objects(Some(9)).unwrap().len(), kept);
}

#[test]
fn realloc_and_free_of_an_object_allocated_in_the_same_transaction() {
    let dir = tmpdir();
    let p = pool(&dir, Mode::Msync);
    let slot = p.root::<PPtr<u8>>().unwrap();
    p.transaction(|tx| -> Result<(), Error> {
        let a = tx.alloc_bytes(100, 4)?;
        tx.bytes_mut(a, 100)?.fill(6);
        let b = tx.realloc(a, 300)?;
        let c = tx.alloc_bytes(50, 4)?;
        tx.free(c)?;
        tx.write(slot, b)
    })
    .unwrap();
    let b = p.read(slot).unwrap();
    let info = p.alloc_info(b).unwrap();
    assert_eq!((info.size, info.type_num), (300, 4));
    let bytes = p.read_bytes(b, 300).unwrap();
    assert!(bytes[..100].iter().all(|&x| x == 6));
    assert!(
        bytes[100..].iter().all(|&x| x == 0),
        "realloc zero-fills the tail"
    );
    assert_eq!(
        p.objects(Some(4)).unwrap().len(),
        1,
        "a and c left nothing behind"
    );
    assert!(p.check_heap().unwrap().problems.is_empty());
}
