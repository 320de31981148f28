//! `PMutex` through transactions and guards: mutual exclusion, release at
//! the end of the transaction (commit, error, panic, nesting), re-locking,
//! timeout, pointer checks.

use pmem_tx::bytemuck::{Pod, Zeroable};
use pmem_tx::{Error, Mode, PMutex, PPtr, Pool, PoolOptions};
use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Root {
    m: PMutex<u64>,
    other: PMutex<[u64; 2]>,
}

type Fixture = (Pool, PPtr<PMutex<u64>>, PPtr<PMutex<[u64; 2]>>);

fn pool(dir: &tempfile::TempDir) -> Fixture {
    let opts = PoolOptions::new().mode(Mode::Eadr).ignore_env(true);
    let p = Pool::create_with(dir.path().join("m.pool"), "plock", 8 << 20, &opts).unwrap();
    let root = p.root::<Root>().unwrap();
    let m = root.field(offset_of!(Root, m));
    let o = root.field(offset_of!(Root, other));
    (p, m, o)
}

/// Whether another thread can take `m` right now (no waiting involved).
fn free(p: &Pool, m: PPtr<PMutex<u64>>) -> bool {
    std::thread::scope(|s| s.spawn(|| p.try_lock(m).unwrap().is_some()).join().unwrap())
}

#[test]
fn four_threads_increment_under_the_mutex() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m, _) = pool(&dir);
    // Generous: the two cores are shared; correctness does not depend on it.
    p.set_lock_timeout(Duration::from_secs(60));
    const N: u64 = 200;
    let inside = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..N {
                    p.transaction(|tx| -> Result<(), Error> {
                        let c = tx.lock(m)?;
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        // Read, then write: without the mutex two readers
                        // would fail to upgrade (Conflict).
                        let v = tx.read(c)?;
                        std::thread::yield_now();
                        tx.write(c, v + 1)?;
                        inside.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .unwrap();
                }
            });
        }
    });
    let g = p.lock(m).unwrap();
    assert_eq!(p.read(g.ptr()).unwrap(), 4 * N);
}

#[test]
fn released_on_commit_err_abort_and_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m, _) = pool(&dir);
    p.transaction(|tx| -> Result<(), Error> {
        let c = tx.lock(m)?;
        assert!(!free(&p, m), "held inside the transaction");
        tx.write(c, 5)
    })
    .unwrap();
    assert!(free(&p, m), "released at commit");

    let r: Result<(), Error> = p.transaction(|tx| {
        let c = tx.lock(m)?;
        tx.write(c, 6)?;
        Err(Error::Aborted)
    });
    assert!(matches!(r, Err(Error::Aborted)));
    assert!(free(&p, m), "released on Err");

    let r: Result<(), Error> = p.transaction(|tx| {
        tx.lock(m)?;
        tx.abort();
        Ok(())
    });
    assert!(r.is_err());
    assert!(free(&p, m), "released on abort");

    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = p.transaction(|tx| -> Result<(), Error> {
            let c = tx.lock(m)?;
            tx.write(c, 7)?;
            panic!("boom");
        });
    }));
    assert!(caught.is_err());
    assert!(free(&p, m), "released on panic");
    let g = p.lock(m).unwrap();
    assert_eq!(p.read(g.ptr()).unwrap(), 5, "the failed ones rolled back");
}

#[test]
fn nested_transactions_release_only_at_the_outer_end() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m, o) = pool(&dir);
    p.transaction(|tx| -> Result<(), Error> {
        tx.transaction(|inner| -> Result<(), Error> {
            let c = inner.lock(m)?;
            inner.write(c, 1)
        })?;
        assert!(!free(&p, m), "still held after the nested one ended");
        // Nested through Pool::transaction too, re-locking: a no-op.
        p.transaction(|inner| -> Result<(), Error> {
            inner.lock(m)?;
            inner.lock(o)?;
            Ok(())
        })?;
        assert!(!free(&p, m));
        assert!(p.try_lock(o)?.is_none(), "the nested lock is held too");
        Ok(())
    })
    .unwrap();
    assert!(free(&p, m));
    assert!(p.try_lock(o).unwrap().is_some());
}

#[test]
fn relock_in_the_same_transaction_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m, _) = pool(&dir);
    p.set_lock_timeout(Duration::from_secs(60));
    p.transaction(|tx| -> Result<(), Error> {
        let a = tx.lock(m)?;
        let b = tx.lock(m)?;
        assert_eq!(a, b);
        tx.write(b, 3)
    })
    .unwrap();
    assert!(free(&p, m), "one unlock per lock, none left over");
    assert_eq!(p.read(p.lock(m).unwrap().ptr()).unwrap(), 3);
}

#[test]
fn timeout_gives_conflict_and_the_holder_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m, _) = pool(&dir);
    p.set_lock_timeout(Duration::from_millis(20));
    let g = p.lock(m).unwrap();
    // Same thread or another: the table does not know threads.
    let r = p.transaction(|tx| tx.lock(m).map(|_| ()));
    assert!(
        matches!(r, Err(Error::Conflict { offset }) if offset == m.offset()),
        "{r:?}"
    );
    let r = std::thread::scope(|s| s.spawn(|| p.lock(m).map(|_| ())).join().unwrap());
    assert!(matches!(r, Err(Error::Conflict { .. })), "{r:?}");
    assert!(p.try_lock(m).unwrap().is_none());
    drop(g);
    assert!(p.try_lock(m).unwrap().is_some());
}

#[test]
fn a_waiting_transaction_gets_the_mutex_when_the_guard_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m, _) = pool(&dir);
    p.set_lock_timeout(Duration::from_secs(60));
    let released = std::sync::atomic::AtomicBool::new(false);
    let g = p.lock(m).unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            p.transaction(|tx| -> Result<bool, Error> {
                tx.lock(m)?;
                Ok(released.load(Ordering::SeqCst))
            })
        });
        released.store(true, Ordering::SeqCst);
        drop(g);
        assert!(t.join().unwrap().unwrap(), "entered only after the release");
    });
}

#[test]
fn bad_pointers_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m, _) = pool(&dir);
    let null = PPtr::<PMutex<u64>>::null();
    assert!(matches!(p.lock(null), Err(Error::Null)));
    let foreign = PPtr::<PMutex<u64>>::from_raw(p.id() ^ 2, m.offset());
    assert!(matches!(p.lock(foreign), Err(Error::WrongPool { .. })));
    let misaligned = PPtr::<PMutex<u64>>::from_raw(p.id(), m.offset() + 4);
    assert!(matches!(
        p.transaction(|tx| tx.lock(misaligned).map(|_| ())),
        Err(Error::BadPointer { .. })
    ));
    let outside = PPtr::<PMutex<u64>>::from_raw(p.id(), 8);
    assert!(matches!(p.lock(outside), Err(Error::BadPointer { .. })));
    assert!(free(&p, m), "nothing was locked by the failures");
}

#[test]
fn layout_is_a_64_byte_header_then_the_data() {
    assert_eq!(size_of::<PMutex<u64>>(), 72);
    assert_eq!(PMutex::<u64>::DATA_OFFSET, 64);
    let v = PMutex::new(0x1122_3344_5566_7788u64);
    let bytes = pmem_tx::bytemuck::bytes_of(&v);
    assert!(bytes[..64].iter().all(|&b| b == 0), "header reserved, zero");
    assert_eq!(bytes[64..], 0x1122_3344_5566_7788u64.to_ne_bytes());
    assert_eq!(v.into_inner(), 0x1122_3344_5566_7788);
}
