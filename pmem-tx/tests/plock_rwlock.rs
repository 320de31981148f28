//! `PRwLock`: readers share it, a writer excludes readers and writers,
//! upgrades, release at the end of the transaction. Overlap and exclusion
//! are proven with barriers and flags, never with timing.

use pmem_tx::{Error, Mode, PPtr, PRwLock, Pool, PoolOptions};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

fn pool(dir: &tempfile::TempDir) -> (Pool, PPtr<PRwLock<u64>>) {
    let opts = PoolOptions::new().mode(Mode::Eadr).ignore_env(true);
    let p = Pool::create_with(dir.path().join("rw.pool"), "plock", 8 << 20, &opts).unwrap();
    let l = p.root::<PRwLock<u64>>().unwrap();
    (p, l)
}

#[test]
fn readers_share_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (p, l) = pool(&dir);
    // If readers excluded each other the second would time out; both must
    // be inside together to pass the barrier.
    p.set_lock_timeout(Duration::from_secs(60));
    let both_inside = Barrier::new(3);
    let inside = AtomicU32::new(0);
    std::thread::scope(|s| {
        let in_tx = s.spawn(|| {
            p.transaction(|tx| -> Result<(), Error> {
                let d = tx.read_lock(l)?;
                inside.fetch_add(1, Ordering::SeqCst);
                both_inside.wait();
                tx.read(d).map(|_| ())
            })
        });
        let guard = s.spawn(|| {
            let g = p.read_lock(l)?;
            inside.fetch_add(1, Ordering::SeqCst);
            both_inside.wait();
            p.read(g.ptr()).map(|_| ())
        });
        both_inside.wait();
        assert_eq!(inside.load(Ordering::SeqCst), 2, "two readers at once");
        in_tx.join().unwrap().unwrap();
        guard.join().unwrap().unwrap();
    });
    assert!(p.write_lock(l).is_ok(), "readers released");
}

#[test]
fn a_writer_excludes_readers_and_writers() {
    let dir = tempfile::tempdir().unwrap();
    let (p, l) = pool(&dir);
    let tried = Barrier::new(2);
    let holding = Barrier::new(2);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            p.transaction(|tx| -> Result<(), Error> {
                let d = tx.write_lock(l)?;
                tx.write(d, 1)?;
                holding.wait();
                // Keep it until the other thread has tried.
                tried.wait();
                Ok(())
            })
        });
        holding.wait();
        p.set_lock_timeout(Duration::from_millis(20));
        assert!(matches!(p.read_lock(l), Err(Error::Conflict { .. })));
        assert!(matches!(p.write_lock(l), Err(Error::Conflict { .. })));
        let r = p.transaction(|tx| tx.read_lock(l).map(|_| ()));
        assert!(matches!(r, Err(Error::Conflict { .. })), "{r:?}");
        tried.wait();
        writer.join().unwrap().unwrap();
    });
    let g = p.read_lock(l).unwrap();
    assert_eq!(p.read(g.ptr()).unwrap(), 1);
}

#[test]
fn a_blocked_reader_enters_only_after_the_writer_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (p, l) = pool(&dir);
    p.set_lock_timeout(Duration::from_secs(60));
    let released = AtomicBool::new(false);
    let w = p.write_lock(l).unwrap();
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let _g = p.read_lock(l).unwrap();
                    released.load(Ordering::SeqCst)
                })
            })
            .collect();
        released.store(true, Ordering::SeqCst);
        drop(w);
        for r in readers {
            assert!(
                r.join().unwrap(),
                "a reader entered while the writer held it"
            );
        }
    });
}

#[test]
fn upgrade_in_a_transaction_and_release_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (p, l) = pool(&dir);
    p.set_lock_timeout(Duration::from_millis(20));
    p.transaction(|tx| -> Result<(), Error> {
        let d = tx.read_lock(l)?;
        assert!(p.read_lock(l).is_ok(), "shared: another reader may enter");
        let d2 = tx.write_lock(l)?; // sole reader: upgrades
        assert_eq!(d, d2);
        assert!(matches!(p.read_lock(l), Err(Error::Conflict { .. })));
        tx.read_lock(l)?; // held exclusively: no-op
        tx.write(d, 9)
    })
    .unwrap();
    // An upgrade blocked by another reader fails with Conflict (and the
    // transaction rolls back, releasing its read lock).
    let other = p.read_lock(l).unwrap();
    let r = p.transaction(|tx| -> Result<(), Error> {
        let d = tx.read_lock(l)?;
        tx.write_lock(l)?;
        tx.write(d, 10)
    });
    assert!(matches!(r, Err(Error::Conflict { .. })), "{r:?}");
    drop(other);
    let g = p.write_lock(l).unwrap();
    assert_eq!(p.read(g.ptr()).unwrap(), 9);
}
