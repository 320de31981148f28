//! The volatile lock table behind `PMutex` / `PRwLock`.
//!
//! Keys are pool offsets (of the `PMutex`/`PRwLock` object). The table is
//! cut into shards, each a `Mutex<HashMap<key, State>>` with one `Condvar`
//! its waiters sleep on. An entry exists only while the lock is held or
//! waited for, so the table stays as small as the number of locks in use.
//!
//! Every state change happens under the shard mutex, and a waiter registers
//! itself (`waiters += 1`) before it sleeps with `Condvar::wait_timeout`,
//! which releases the mutex atomically: a release that happens after the
//! registration sees `waiters > 0` and notifies, so no wake-up is lost.
//! A shard's condvar is shared by its keys, so a release wakes every waiter
//! of the shard (`notify_all`); each re-checks its own key.
//!
//! Writers are preferred: once a writer waits, new readers wait too, so a
//! stream of readers cannot starve it. A writer that gives up (timeout)
//! withdraws and wakes the readers it was holding back.
#![forbid(unsafe_code)]

use super::primitive::{Condvar, Mutex, lock, wait_timeout};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Default number of shards.
pub const SHARDS: usize = 64;

/// How a persistent lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Shared (a `PRwLock` reader).
    Shared,
    /// Exclusive (a `PMutex`, or a `PRwLock` writer).
    Exclusive,
}

#[derive(Default, Debug)]
struct State {
    /// Readers holding the lock.
    readers: u32,
    /// Whether a writer holds it.
    writer: bool,
    /// Writers (and upgraders) waiting: readers do not enter meanwhile.
    writers_waiting: u32,
    /// Threads sleeping on this key (readers and writers).
    waiters: u32,
}

impl State {
    fn unused(&self) -> bool {
        self.readers == 0 && !self.writer && self.waiters == 0
    }
}

struct Shard {
    map: Mutex<HashMap<u64, State>>,
    cv: Condvar,
}

/// The table: one per open pool, created empty at open, so no lock taken
/// by an earlier process (or an earlier open) survives.
pub struct LockTable {
    shards: Box<[Shard]>,
    timeout_ns: AtomicU64,
}

/// What a waiter needs to acquire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Shared,
    Exclusive,
    /// Exclusive, holding one shared already.
    Upgrade,
}

impl LockTable {
    /// An empty table of [`SHARDS`] shards.
    pub fn new(timeout: Duration) -> Self {
        Self::with_shards(SHARDS, timeout)
    }

    /// An empty table of `n` shards (at least 1); loom models use 1.
    pub fn with_shards(n: usize, timeout: Duration) -> Self {
        LockTable {
            shards: (0..n.max(1))
                .map(|_| Shard {
                    map: Mutex::new(HashMap::new()),
                    cv: Condvar::new(),
                })
                .collect(),
            timeout_ns: AtomicU64::new(nanos(timeout)),
        }
    }

    /// Sets how long [`lock`](Self::lock) waits before giving up.
    pub fn set_timeout(&self, t: Duration) {
        // The timeout is configuration, not synchronisation: Relaxed.
        self.timeout_ns.store(nanos(t), Ordering::Relaxed);
    }

    fn shard(&self, key: u64) -> &Shard {
        // Fibonacci hashing; the top bits are the best mixed.
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        &self.shards[(h % self.shards.len() as u64) as usize]
    }

    /// Takes the lock `key` in `mode`, waiting up to the timeout. Returns
    /// whether it was taken.
    pub fn lock(&self, key: u64, mode: LockMode) -> bool {
        let want = match mode {
            LockMode::Shared => Want::Shared,
            LockMode::Exclusive => Want::Exclusive,
        };
        self.acquire(key, want, true)
    }

    /// Takes the lock `key` in `mode` only if that needs no wait.
    pub fn try_lock(&self, key: u64, mode: LockMode) -> bool {
        let want = match mode {
            LockMode::Shared => Want::Shared,
            LockMode::Exclusive => Want::Exclusive,
        };
        self.acquire(key, want, false)
    }

    /// Turns one shared hold of `key` (the caller's) into the exclusive
    /// hold, waiting up to the timeout for the other readers to leave.
    /// On failure the caller still holds its shared lock. Two readers that
    /// both upgrade wait for each other until one times out.
    pub fn upgrade(&self, key: u64) -> bool {
        self.acquire(key, Want::Upgrade, true)
    }

    fn acquire(&self, key: u64, want: Want, block: bool) -> bool {
        let shard = self.shard(key);
        let mut map = lock(&shard.map);
        let mut deadline: Option<Instant> = None;
        let mut waiting = false;
        loop {
            let st = map.entry(key).or_default();
            let ok = match want {
                Want::Shared => !st.writer && st.writers_waiting == 0,
                Want::Exclusive => !st.writer && st.readers == 0,
                Want::Upgrade => !st.writer && st.readers == 1,
            };
            if ok {
                if waiting {
                    st.waiters -= 1;
                }
                match want {
                    Want::Shared => st.readers += 1,
                    Want::Exclusive | Want::Upgrade => {
                        if waiting {
                            st.writers_waiting -= 1;
                        }
                        st.readers = 0;
                        st.writer = true;
                    }
                }
                return true;
            }
            let now = Instant::now();
            let end = *deadline.get_or_insert_with(|| {
                now + Duration::from_nanos(self.timeout_ns.load(Ordering::Relaxed))
            });
            if !block || now >= end {
                let mut wake = false;
                if waiting {
                    st.waiters -= 1;
                    if want != Want::Shared {
                        st.writers_waiting -= 1;
                        // Readers held back by this writer may go now.
                        wake = st.writers_waiting == 0 && st.waiters > 0;
                    }
                }
                if st.unused() {
                    map.remove(&key);
                }
                drop(map);
                if wake {
                    shard.cv.notify_all();
                }
                return false;
            }
            if !waiting {
                waiting = true;
                st.waiters += 1;
                if want != Want::Shared {
                    st.writers_waiting += 1;
                }
            }
            map = wait_timeout(&shard.cv, map, end - now);
        }
    }

    /// Releases one hold of `key` in `mode`. Releasing a lock that is not
    /// held is a bug of the caller; it is ignored (debug builds assert).
    pub fn unlock(&self, key: u64, mode: LockMode) {
        let shard = self.shard(key);
        let mut map = lock(&shard.map);
        let Some(st) = map.get_mut(&key) else {
            debug_assert!(false, "persistent lock {key:#x} released but not held");
            return;
        };
        match mode {
            LockMode::Shared => {
                debug_assert!(st.readers > 0 && !st.writer);
                st.readers = st.readers.saturating_sub(1);
            }
            LockMode::Exclusive => {
                debug_assert!(st.writer);
                st.writer = false;
            }
        }
        // With no reader left a writer may enter; with one left an
        // upgrader may.
        let wake = st.waiters > 0 && st.readers <= 1;
        if st.unused() {
            map.remove(&key);
        }
        drop(map);
        if wake {
            shard.cv.notify_all();
        }
    }

    /// Whether nobody holds or waits for `key` (for tests).
    #[cfg(any(test, loom))]
    pub fn is_free(&self, key: u64) -> bool {
        !lock(&self.shard(key).map).contains_key(&key)
    }
}

fn nanos(t: Duration) -> u64 {
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}

impl std::fmt::Debug for LockTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockTable")
            .field("shards", &self.shards.len())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(5);

    #[test]
    fn exclusive_excludes_and_entries_go_away() {
        let t = LockTable::new(T);
        assert!(t.lock(64, LockMode::Exclusive));
        assert!(!t.lock(64, LockMode::Exclusive), "times out");
        assert!(!t.lock(64, LockMode::Shared), "times out");
        assert!(t.try_lock(128, LockMode::Exclusive), "other key is free");
        t.unlock(64, LockMode::Exclusive);
        t.unlock(128, LockMode::Exclusive);
        assert!(t.is_free(64) && t.is_free(128), "no entry left behind");
    }

    #[test]
    fn readers_share_upgrade_needs_sole_reader() {
        let t = LockTable::with_shards(1, T);
        assert!(t.lock(8, LockMode::Shared));
        assert!(t.lock(8, LockMode::Shared));
        assert!(!t.try_lock(8, LockMode::Exclusive));
        assert!(!t.upgrade(8), "another reader is inside");
        t.unlock(8, LockMode::Shared);
        assert!(t.upgrade(8));
        assert!(!t.try_lock(8, LockMode::Shared));
        t.unlock(8, LockMode::Exclusive);
        assert!(t.is_free(8));
    }

    #[test]
    fn waiting_writer_holds_back_new_readers_until_it_gives_up() {
        let t = std::sync::Arc::new(LockTable::with_shards(1, Duration::from_secs(30)));
        assert!(t.lock(8, LockMode::Shared));
        let t2 = t.clone();
        let w = std::thread::spawn(move || t2.lock(8, LockMode::Exclusive));
        // Wait (without a timing assumption) until the writer is registered.
        while lock(&t.shards[0].map)
            .get(&8)
            .is_none_or(|s| s.writers_waiting == 0)
        {
            std::thread::yield_now();
        }
        assert!(!t.try_lock(8, LockMode::Shared), "writer preferred");
        t.unlock(8, LockMode::Shared);
        assert!(w.join().unwrap(), "writer got in once the reader left");
        t.unlock(8, LockMode::Exclusive);
        assert!(t.is_free(8));
    }
}
