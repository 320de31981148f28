//! loom model of the persistent-lock table (`plock/table.rs`, through its
//! primitive shim, so the real code is checked): mutual exclusion of a
//! `PMutex`, readers/writer exclusion of a `PRwLock`, and no lost wake-up
//! (a waiter nobody wakes is a deadlock loom reports; loom's
//! `wait_timeout` never times out). Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p pmem-tx --release --test loom_plock`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, Ordering};
use pmem_tx::{LockMode, LockTable};
use std::time::Duration;

/// Effectively infinite: loom's condvar never times out anyway.
const FOREVER: Duration = Duration::from_secs(3600);
const KEY: u64 = 0x1000;

fn mutex(threads: usize) {
    loom::model(move || {
        let t = Arc::new(LockTable::with_shards(1, FOREVER));
        let inside = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let (t, inside) = (t.clone(), inside.clone());
                loom::thread::spawn(move || {
                    assert!(t.lock(KEY, LockMode::Exclusive));
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    inside.fetch_sub(1, Ordering::SeqCst);
                    t.unlock(KEY, LockMode::Exclusive);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(t.is_free(KEY), "entry left behind");
    });
}

#[test]
fn mutex_two_threads() {
    mutex(2);
}

#[test]
fn mutex_three_threads() {
    mutex(3);
}

/// Two keys in one shard share its condvar: a release of one must not
/// starve a waiter of the other.
#[test]
fn two_keys_one_shard() {
    loom::model(|| {
        let t = Arc::new(LockTable::with_shards(1, FOREVER));
        let hs: Vec<_> = [KEY, KEY, KEY + 64]
            .into_iter()
            .map(|k| {
                let t = t.clone();
                loom::thread::spawn(move || {
                    assert!(t.lock(k, LockMode::Exclusive));
                    t.unlock(k, LockMode::Exclusive);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(t.is_free(KEY) && t.is_free(KEY + 64));
    });
}

/// One writer, two readers: the writer is alone when inside, readers
/// never see a writer, and everyone gets in (writer preference must not
/// strand a reader).
#[test]
fn rwlock_writer_and_two_readers() {
    loom::model(|| {
        let t = Arc::new(LockTable::with_shards(1, FOREVER));
        // Bit 16: a writer inside; low bits: readers inside.
        let state = Arc::new(AtomicU32::new(0));
        const W: u32 = 1 << 16;
        let mut hs = Vec::new();
        {
            let (t, state) = (t.clone(), state.clone());
            hs.push(loom::thread::spawn(move || {
                assert!(t.lock(KEY, LockMode::Exclusive));
                assert_eq!(state.fetch_add(W, Ordering::SeqCst), 0, "writer not alone");
                state.fetch_sub(W, Ordering::SeqCst);
                t.unlock(KEY, LockMode::Exclusive);
            }));
        }
        for _ in 0..2 {
            let (t, state) = (t.clone(), state.clone());
            hs.push(loom::thread::spawn(move || {
                assert!(t.lock(KEY, LockMode::Shared));
                assert_eq!(
                    state.fetch_add(1, Ordering::SeqCst) & W,
                    0,
                    "reader saw a writer"
                );
                state.fetch_sub(1, Ordering::SeqCst);
                t.unlock(KEY, LockMode::Shared);
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
        assert!(t.is_free(KEY));
    });
}

/// A reader upgrading while another reader leaves: the upgrader must be
/// woken by that release.
#[test]
fn upgrade_is_woken_by_the_last_other_reader() {
    loom::model(|| {
        let t = Arc::new(LockTable::with_shards(1, FOREVER));
        assert!(t.lock(KEY, LockMode::Shared));
        assert!(t.lock(KEY, LockMode::Shared));
        let other = {
            let t = t.clone();
            loom::thread::spawn(move || t.unlock(KEY, LockMode::Shared))
        };
        assert!(t.upgrade(KEY));
        other.join().unwrap();
        t.unlock(KEY, LockMode::Exclusive);
        assert!(t.is_free(KEY));
    });
}
