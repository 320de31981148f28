//! Read views (`Pool::view`): lock-free reads that keep every writer out.

use pmem_tx::{Error, PPtr, Pool};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

type Root = [u64; 8];

fn pool(dir: &tempfile::TempDir, name: &str) -> (Pool, PPtr<Root>) {
    let pool = Pool::create(dir.path().join(name), "view", 16 << 20).unwrap();
    let root = pool.root::<Root>().unwrap();
    pool.transaction(|tx| tx.write(root, [1, 2, 3, 4, 5, 6, 7, 8]))
        .unwrap();
    (pool, root)
}

#[test]
fn reads_committed_data_without_locks() {
    let dir = tempfile::tempdir().unwrap();
    let (pool, root) = pool(&dir, "a.pool");
    let node = pool
        .transaction(|tx| -> Result<PPtr<u64>, Error> { tx.alloc(99u64) })
        .unwrap();
    let view = pool.view().unwrap();
    let r: &Root = view.get(root).unwrap();
    assert_eq!(r[7], 8);
    assert_eq!(view.read(node).unwrap(), 99);
    let b = view.bytes(root.cast(), 16).unwrap();
    assert_eq!(b[..8], 1u64.to_ne_bytes());
    assert_eq!(b[8..], 2u64.to_ne_bytes());
    // Locked readers still work beside a view.
    assert_eq!(pool.read(node).unwrap(), 99);
    // A second view of the same pool on the same thread.
    let v2 = pool.view().unwrap();
    assert_eq!(v2.read(root.field::<u64>(8)).unwrap(), 2);
    drop((view, v2));
    // With every view gone, writers run again.
    pool.transaction(|tx| tx.write(node, 100)).unwrap();
    assert_eq!(pool.view().unwrap().read(node).unwrap(), 100);
    assert_eq!(pool.lanes_in_use(), 0);
}

#[test]
fn refuses_bad_pointers() {
    let dir = tempfile::tempdir().unwrap();
    let (pool, root) = pool(&dir, "b.pool");
    let (other, other_root) = pool_other(&dir);
    let view = pool.view().unwrap();
    assert!(matches!(view.get(PPtr::<u64>::null()), Err(Error::Null)));
    assert!(matches!(view.get(other_root), Err(Error::WrongPool { .. })));
    // Before the heap (the pool header) and past the end of the pool.
    let id_of = |p: PPtr<Root>| p.pool_id();
    let header = PPtr::<u64>::from_raw(id_of(root), 8);
    assert!(matches!(view.get(header), Err(Error::BadPointer { .. })));
    let past = PPtr::<u64>::from_raw(id_of(root), pool.raw().size() - 4);
    assert!(matches!(view.get(past), Err(Error::BadPointer { .. })));
    let wrap = PPtr::<Root>::from_raw(id_of(root), u64::MAX - 8);
    assert!(matches!(view.get(wrap), Err(Error::BadPointer { .. })));
    let odd = PPtr::<u64>::from_raw(id_of(root), root.offset() + 4);
    assert!(matches!(
        view.get(odd),
        Err(Error::BadPointer {
            reason: "misaligned for its type",
            ..
        })
    ));
    assert!(matches!(
        view.bytes(root.cast(), pool.raw().size()),
        Err(Error::BadPointer { .. })
    ));
    drop(other);
}

fn pool_other(dir: &tempfile::TempDir) -> (Pool, PPtr<Root>) {
    pool(dir, "other.pool")
}

#[test]
fn writing_while_holding_a_view_fails_at_once_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let (pool, root) = pool(&dir, "c.pool");
    let first: PPtr<u64> = root.cast();
    let view = pool.view().unwrap();
    let r = pool.transaction(|tx| tx.write(first, 42));
    assert!(matches!(r, Err(Error::ViewConflict { this_thread: true })));
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("drop the view before writing"), "{msg}");
    let slot = pool.root::<Root>().unwrap().field::<PPtr<u64>>(16);
    let r = pool.alloc_into(slot, 1, |v: &mut u64| *v = 5);
    assert!(matches!(r, Err(Error::ViewConflict { this_thread: true })));
    assert_eq!(view.read(first).unwrap(), 1);
    assert_eq!(pool.lanes_in_use(), 0);
    drop(view);
    pool.transaction(|tx| tx.write(first, 42)).unwrap();
    assert_eq!(pool.read(first).unwrap(), 42);
}

#[test]
fn a_view_inside_a_writing_transaction_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (pool, root) = pool(&dir, "d.pool");
    let first: PPtr<u64> = root.cast();
    // Only read so far: the view may open, and then the write fails.
    let r = pool.transaction(|tx| -> Result<(), Error> {
        assert_eq!(tx.read(first)?, 1);
        let view = tx.pool().view()?;
        assert_eq!(view.read(first)?, 1);
        tx.write(first, 7)
    });
    assert!(matches!(r, Err(Error::ViewConflict { this_thread: true })));
    // Written already: opening a view would wait for this very transaction.
    let r = pool.transaction(|tx| -> Result<(), Error> {
        tx.write(first, 8)?;
        tx.pool().view().map(drop)
    });
    assert!(matches!(r, Err(Error::ViewConflict { this_thread: true })));
    assert_eq!(pool.read(first).unwrap(), 1);
    assert_eq!(pool.lanes_in_use(), 0);
}

#[test]
fn writers_of_other_threads_wait_for_the_view() {
    let dir = tempfile::tempdir().unwrap();
    let (pool, root) = pool(&dir, "e.pool");
    let pool = Arc::new(pool);
    pool.set_lock_timeout(Duration::from_secs(30));
    let first: PPtr<u64> = root.cast();
    let view = pool.view().unwrap();
    let value: &u64 = view.get(first).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (pool, done) = (pool.clone(), done.clone());
        std::thread::spawn(move || {
            pool.transaction(|tx| tx.write(first, 77)).unwrap();
            done.store(true, Ordering::SeqCst);
        })
    };
    // However long the writer runs, it cannot write while the view lives.
    std::thread::sleep(Duration::from_millis(100));
    assert!(!done.load(Ordering::SeqCst), "a write ran under a view");
    assert_eq!(*value, 1);
    drop(view);
    writer.join().unwrap();
    assert_eq!(pool.read(first).unwrap(), 77);
}

#[test]
fn a_view_waits_for_running_transactions_and_writers_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let (pool, root) = pool(&dir, "f.pool");
    let pool = Arc::new(pool);
    let first: PPtr<u64> = root.cast();
    let (inside, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let writer = {
        let (pool, inside, release) = (pool.clone(), inside.clone(), release.clone());
        std::thread::spawn(move || {
            pool.transaction(|tx| -> Result<(), Error> {
                tx.write(first, 9)?;
                inside.wait();
                release.wait();
                Ok(())
            })
            .unwrap();
        })
    };
    inside.wait();
    // The writer holds a lane and will not end before `release`.
    pool.set_lock_timeout(Duration::from_millis(50));
    assert!(matches!(
        pool.view(),
        Err(Error::ViewConflict { this_thread: false })
    ));
    release.wait();
    writer.join().unwrap();
    let view = pool.view().unwrap();
    assert_eq!(view.read(first).unwrap(), 9);
    // A writer on another thread gives up at the lock timeout, rolled back.
    let r = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.transaction(|tx| tx.write(first, 10)))
            .join()
            .unwrap()
    };
    assert!(matches!(r, Err(Error::ViewConflict { this_thread: false })));
    assert_eq!(view.read(first).unwrap(), 9);
    drop(view);
    assert_eq!(pool.read(first).unwrap(), 9);
    assert_eq!(pool.lanes_in_use(), 0);
}

#[test]
fn many_readers_and_writers_never_overlap() {
    // Views on two threads, transactions on two others, all on one pool:
    // a view must never see a value change under it.
    let dir = tempfile::tempdir().unwrap();
    let (pool, root) = pool(&dir, "g.pool");
    let pool = Arc::new(pool);
    pool.set_lock_timeout(Duration::from_secs(30));
    let first: PPtr<u64> = root.cast();
    let mut ts = Vec::new();
    for t in 0..2u64 {
        let pool = pool.clone();
        ts.push(std::thread::spawn(move || {
            for i in 0..300 {
                pool.transaction(|tx| tx.write(first, t * 1000 + i))
                    .unwrap();
            }
        }));
    }
    for _ in 0..2 {
        let pool = pool.clone();
        ts.push(std::thread::spawn(move || {
            for _ in 0..300 {
                let view = pool.view().unwrap();
                let r: &u64 = view.get(first).unwrap();
                let seen = *r;
                for _ in 0..2000 {
                    // Volatile: a plain load through `&u64` may be hoisted.
                    // SAFETY: `r` is a valid reference for the view's life.
                    let now = unsafe { std::ptr::read_volatile(r) };
                    assert_eq!(now, seen, "a value changed under a view");
                }
            }
        }));
    }
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(pool.lanes_in_use(), 0);
}
