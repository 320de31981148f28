//! What freeing an object waits for: users of its first granule, and no
//! one else; and why that is enough (a freed block's data is not rewritten
//! while a guard into it lives).

use pmem_tx::{Error, PPtr, Pool};
use std::time::Duration;

type Big = [u64; 512];

fn setup(name: &str) -> (tempfile::TempDir, Pool, PPtr<PPtr<Big>>) {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create(dir.path().join(name), "free", 32 << 20).unwrap();
    let slot = pool.root::<PPtr<Big>>().unwrap();
    pool.alloc_into(slot, 1, |b: &mut Big| b.fill(7)).unwrap();
    (dir, pool, slot)
}

#[test]
fn a_guard_on_the_first_granule_makes_free_wait() {
    let (_dir, pool, slot) = setup("a.pool");
    pool.set_lock_timeout(Duration::from_millis(50));
    let big = pool.read(slot).unwrap();
    let head = pool.get(big.cast::<u64>()).unwrap();
    let r = pool.free_from(slot);
    assert!(matches!(r, Err(Error::Conflict { .. })), "{r:?}");
    assert_eq!(*head, 7);
    drop(head);
    pool.free_from(slot).unwrap();
    assert!(pool.read(slot).unwrap().is_null());
}

#[test]
fn a_guard_into_the_rest_keeps_its_bytes_until_dropped() {
    let (_dir, pool, slot) = setup("b.pool");
    pool.set_lock_timeout(Duration::from_millis(50));
    let big = pool.read(slot).unwrap();
    let tail: PPtr<u64> = big.field(8 * 300);
    let guard = pool.get(tail).unwrap();
    // Not waited for: the free commits at once.
    pool.free_from(slot).unwrap();
    // Allocations of the same size that fill their object must not take
    // the freed block while the guard reads it.
    for i in 0..64u64 {
        let p = pool.transaction(|tx| tx.alloc([i; 512])).unwrap();
        assert_ne!(p.offset(), big.offset(), "freed block reused under a guard");
        // SAFETY: `guard` is a live shared reference into the pool.
        assert_eq!(unsafe { std::ptr::read_volatile(&*guard) }, 7);
    }
    drop(guard);
    let report = pool.check_heap().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// The control for the test above: without a guard, the freed block is
/// taken again within the same allocations (so the test above would see
/// it if a guard did not keep it out).
#[test]
fn without_a_guard_the_freed_block_is_reused() {
    let (_dir, pool, slot) = setup("c.pool");
    let big = pool.read(slot).unwrap();
    pool.free_from(slot).unwrap();
    let reused = (0..64u64).any(|i| {
        let p = pool.transaction(|tx| tx.alloc([i; 512])).unwrap();
        p.offset() == big.offset()
    });
    assert!(reused);
}

/// A reader of the pointer itself makes `free_from` wait, then succeed.
/// (It used to read the pointer under a shared lock and upgrade that lock
/// to store the null: a short spin against the reader's shared hold, then
/// a conflict, however long the lock timeout.)
#[test]
fn a_reader_of_the_pointer_makes_free_from_wait_not_fail() {
    let (_dir, pool, slot) = setup("d.pool");
    pool.set_lock_timeout(Duration::from_secs(20));
    let reader = pool.get(slot).unwrap();
    std::thread::scope(|s| {
        let freer = s.spawn(|| pool.free_from(slot));
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !freer.is_finished(),
            "free_from did not wait for the reader"
        );
        assert!(!reader.is_null());
        drop(reader);
        let r = freer.join().unwrap();
        assert!(r.is_ok(), "{r:?}");
    });
    assert!(pool.read(slot).unwrap().is_null());
}
