//! Transactions larger than their lane's inline log continue in overflow
//! blocks from the heap: a 64 MiB transaction commits and aborts, and the
//! blocks go back to the heap afterwards.

use pmem_tx::{Error, Mode, Pool, PoolOptions};

const BIG: usize = 64 << 20;

#[test]
fn a_64_mib_transaction_commits_and_aborts() {
    let dir = match std::path::Path::new("/dev/shm") {
        d if d.is_dir() => tempfile::tempdir_in(d).unwrap(),
        _ => tempfile::tempdir().unwrap(),
    };
    let opts = PoolOptions::new().mode(Mode::Msync).ignore_env(true);
    let p = Pool::create_with(dir.path().join("big.pool"), "overflow", 200 << 20, &opts).unwrap();
    let root = p.root::<[u8; BIG]>().unwrap().cast::<u8>();
    let used_before = p.check_heap().unwrap().used_bytes;

    p.transaction(|tx| -> Result<(), Error> {
        tx.bytes_mut(root, BIG as u64)?.fill(7);
        Ok(())
    })
    .unwrap();
    let all = |v: u8| {
        let b = p.read_bytes(root, BIG as u64).unwrap();
        b.iter().all(|&x| x == v)
    };
    assert!(all(7));
    assert_eq!(
        p.check_heap().unwrap().used_bytes,
        used_before,
        "overflow blocks went back to the heap"
    );

    let r: Result<(), Error> = p.transaction(|tx| {
        tx.bytes_mut(root, BIG as u64)?.fill(9);
        Err(Error::Aborted)
    });
    assert!(r.is_err());
    assert!(all(7), "the abort restored all 64 MiB");
    assert_eq!(p.lanes_in_use(), 0);
    let report = p.check_heap().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.used_bytes, used_before);
}

#[test]
fn many_small_snapshots_and_allocations_overflow_both_logs() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PoolOptions::new().mode(Mode::Msync).ignore_env(true);
    let p = Pool::create_with(dir.path().join("o.pool"), "overflow", 16 << 20, &opts).unwrap();
    let slots = p.root::<[pmem_tx::PPtr<u64>; 1000]>().unwrap();
    // 1000 allocations (1000 redo records: far beyond the 1 KiB redo log)
    // and 1000 pointer snapshots (far beyond the 3 KiB undo log).
    p.transaction(|tx| -> Result<(), Error> {
        for i in 0..1000 {
            let o = tx.alloc_typed(3, i as u64)?;
            tx.write(slots.index(i).unwrap(), o)?;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(p.objects(Some(3)).unwrap().len(), 1000);
    for i in [0usize, 499, 999] {
        let o = p.read(slots.index(i).unwrap()).unwrap();
        assert_eq!(p.read(o).unwrap(), i as u64);
    }
    // And all of it freed in one transaction.
    p.transaction(|tx| -> Result<(), Error> {
        for i in 0..1000 {
            let s = slots.index(i).unwrap();
            let o = tx.read(s)?;
            tx.free(o)?;
            tx.write(s, pmem_tx::PPtr::null())?;
        }
        Ok(())
    })
    .unwrap();
    assert!(p.objects(Some(3)).unwrap().is_empty());
    assert!(p.check_heap().unwrap().problems.is_empty());
}
