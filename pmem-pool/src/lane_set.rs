//! The volatile set of free lanes: which lane a transaction writes its logs
//! to. Each lane is held by at most one transaction at a time.
//!
//! Acquisition first tries the caller's preferred lane (threads keep using
//! the same lane, so its lines stay in their core's cache), then scans the
//! others, then sleeps until a lane is released. Lost wake-ups are excluded
//! by a Dekker-style handshake: a releaser clears the busy flag and then
//! reads the waiter count; a waiter raises the count under the mutex and
//! then re-reads the busy flags; both with `SeqCst`, so at least one of them
//! sees the other. Each side puts a `SeqCst` fence between its write and
//! its read (loom models `SeqCst` accesses as acquire/release only, and
//! found the lost wake-up without the fences). `tests/loom_lanes.rs` checks this with loom.
//!
//! The set is also the gate between writers and read views
//! (`pmem_tx::Pool::view`): a view lets its holder read pool bytes without
//! any lock, so while one is open no transaction may hold a lane (every
//! write to pool memory happens under a lane). A view raises `views` and
//! then waits until every busy flag is clear; a writer takes a lane and then
//! checks `views`, giving the lane back if it is raised. Both sides write
//! and then read with `SeqCst`, so at least one sees the other (the same
//! Dekker handshake as above). `tests/loom_lanes.rs` models it too.
//!
//! Each flag has a cache line of its own: two threads on neighbouring lanes
//! would otherwise pass one line back and forth on every transaction.

use crate::sync::{AtomicBool, AtomicUsize, Condvar, Mutex, Ordering, fence, lock};

/// A value alone on its cache line.
#[derive(Debug)]
#[repr(align(64))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The lanes of one open pool.
#[derive(Debug)]
pub struct LaneSet {
    busy: Box<[Line<AtomicBool>]>,
    views: Line<AtomicUsize>,
    waiters: AtomicUsize,
    mutex: Mutex<()>,
    freed: Condvar,
}

impl LaneSet {
    /// `count` lanes, all free.
    pub fn new(count: u32) -> Self {
        LaneSet {
            busy: (0..count).map(|_| Line(AtomicBool::new(false))).collect(),
            views: Line(AtomicUsize::new(0)),
            waiters: AtomicUsize::new(0),
            mutex: Mutex::new(()),
            freed: Condvar::new(),
        }
    }

    /// Number of lanes.
    pub fn len(&self) -> u32 {
        self.busy.len() as u32
    }

    /// Whether the set has no lanes (never for a real pool).
    pub fn is_empty(&self) -> bool {
        self.busy.is_empty()
    }

    /// Takes a free lane without waiting, trying `hint` first.
    pub fn try_acquire(&self, hint: u32) -> Option<u32> {
        let n = self.busy.len();
        if n == 0 {
            return None;
        }
        // Walks `start, start + 1, ..., n - 1, 0, ..., start - 1` without
        // a division per step (a transaction takes a lane every time; the
        // hint is almost always in range, so its `%` is skipped too).
        let start = if (hint as usize) < n {
            hint as usize
        } else {
            hint as usize % n
        };
        (start..n).chain(0..start).find_map(|i| {
            self.busy[i]
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .ok()
                .map(|_| i as u32)
        })
    }

    /// Takes a free lane, trying `hint` first, sleeping while all are busy.
    /// Returns `None` only if the set has no lanes.
    pub fn acquire(&self, hint: u32) -> Option<u32> {
        if self.busy.is_empty() {
            return None;
        }
        if let Some(i) = self.try_acquire(hint) {
            return Some(i);
        }
        let mut g = lock(&self.mutex);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        loop {
            if let Some(i) = self.try_acquire(hint) {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return Some(i);
            }
            g = self.freed.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Gives lane `i` back. Releasing a lane that is not held is a bug of
    /// the caller and is ignored (debug builds assert).
    pub fn release(&self, i: u32) {
        let Some(flag) = self.busy.get(i as usize) else {
            debug_assert!(false, "release of lane {i} out of range");
            return;
        };
        let was = flag.swap(false, Ordering::SeqCst);
        debug_assert!(was, "release of free lane {i}");
        // A waiter counts itself and then tries the flags, all `SeqCst`:
        // if this load misses its count, the count comes after this swap
        // in the single total order, so its try sees the flag clear. The
        // C++ model orders a SeqCst RMW before a later SeqCst load of
        // another location without a fence (on x86 the swap is a full
        // barrier already); loom models SeqCst accesses as
        // acquire/release only and needs the fence to see that.
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.mutex);
            self.freed.notify_one();
        }
    }

    /// Whether a read view is open. A writer calls this right after taking
    /// a lane and gives the lane back if it returns true: the lane's
    /// `SeqCst` acquisition comes first, so a view opened concurrently
    /// either is seen here or sees the lane busy in [`idle`](Self::idle).
    pub fn views_open(&self) -> bool {
        // The C++ model already orders a SeqCst RMW before a later SeqCst
        // load of another location; loom models SeqCst accesses as
        // acquire/release only and needs the fence to see that.
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        self.views.load(Ordering::SeqCst) > 0
    }

    /// Registers a read view. From now on writers back off; the view may
    /// read once [`idle`](Self::idle) has returned true.
    pub fn open_view(&self) {
        self.views.fetch_add(1, Ordering::SeqCst);
        #[cfg(loom)]
        fence(Ordering::SeqCst);
    }

    /// Unregisters a view opened with [`open_view`](Self::open_view).
    pub fn close_view(&self) {
        let was = self.views.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(was > 0, "close_view without open_view");
    }

    /// Whether no lane is held.
    pub fn idle(&self) -> bool {
        self.busy.iter().all(|b| !b.load(Ordering::SeqCst))
    }

    /// Whether lane `i` is held right now (`SeqCst`: a caller that clears
    /// state the holder checks after taking the lane relies on the
    /// Dekker-style order of the two; see `pmem-tx`'s `invalidate.rs`).
    /// False for a lane out of range.
    pub fn is_busy(&self, i: u32) -> bool {
        self.busy
            .get(i as usize)
            .is_some_and(|b| b.load(Ordering::SeqCst))
    }

    /// How many lanes are held right now (for `pmem info` and tests).
    pub fn in_use(&self) -> u32 {
        self.busy
            .iter()
            .filter(|b| b.load(Ordering::SeqCst))
            .count() as u32
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn hint_is_taken_first_then_others() {
        let s = LaneSet::new(4);
        assert_eq!(s.try_acquire(2), Some(2));
        assert_eq!(s.try_acquire(2), Some(3));
        assert_eq!(s.try_acquire(2), Some(0));
        assert_eq!(s.try_acquire(2), Some(1));
        assert_eq!(s.try_acquire(2), None);
        assert_eq!(s.in_use(), 4);
        s.release(0);
        assert_eq!(s.try_acquire(3), Some(0));
    }

    #[test]
    fn empty_set_never_blocks() {
        let s = LaneSet::new(0);
        assert_eq!(s.acquire(0), None);
        assert!(s.is_empty());
    }

    #[test]
    fn sleepers_wake_when_a_lane_is_released() {
        let s = Arc::new(LaneSet::new(1));
        let held = s.acquire(0).unwrap();
        let t = {
            let s = s.clone();
            std::thread::spawn(move || {
                let i = s.acquire(0).unwrap();
                s.release(i);
                i
            })
        };
        // Whether or not the thread is already asleep, the release below
        // must let it through (the test would hang otherwise).
        s.release(held);
        assert_eq!(t.join().unwrap(), 0);
        assert_eq!(s.in_use(), 0);
    }

    #[test]
    fn many_threads_never_share_a_lane() {
        let s = Arc::new(LaneSet::new(3));
        let owners: Arc<Vec<std::sync::atomic::AtomicUsize>> = Arc::new(
            (0..3)
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect(),
        );
        let ts: Vec<_> = (0..6)
            .map(|t| {
                let (s, owners) = (s.clone(), owners.clone());
                std::thread::spawn(move || {
                    for k in 0..2000u32 {
                        let i = s.acquire(t + k).unwrap() as usize;
                        let prev = owners[i].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        assert_eq!(prev, 0, "lane {i} handed out twice");
                        owners[i].fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        s.release(i as u32);
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(s.in_use(), 0);
    }
}
