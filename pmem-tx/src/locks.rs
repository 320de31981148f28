//! The range lock table: how safe code is kept from racing on pool bytes.
//!
//! Pool memory is shared by every thread that holds the `Pool`, and a
//! `PPtr` can be copied anywhere, so the borrow checker alone cannot stop two
//! threads from writing (or one writing, one reading) the same bytes. Every
//! access from safe code therefore locks the bytes it touches in a table of
//! reader/writer stripe locks: the pool is cut into 64-byte granules (a
//! cache line: objects sharing one contend in the hardware anyway), each
//! granule maps to one of 131,072 stripes (`granule % STRIPES`, so a range
//! of fewer than 131,072 granules takes distinct stripes and a larger one
//! takes all of them). Transactions hold their locks until they end (strict
//! two-phase locking, which also gives them isolation); reads outside a
//! transaction hold them for the life of the guard or the copy.
//!
//! A stripe word is 0 (free), `n` (held shared by `n` readers) or
//! `EXCL | token` (held exclusively by the transaction whose lane is
//! `token - 1`), plus a `WAIT` bit: a thread that has to wait for a stripe
//! sets it, and newcomers that see it queue up behind instead of taking the
//! stripe, so a thread that commits and immediately relocks the same bytes
//! cannot starve a waiter. A transaction that holds a stripe shared and is its only
//! reader may upgrade it; an upgrade that finds other readers gives up
//! after a short spin (two readers waiting to upgrade would deadlock), so
//! read-then-write of shared data should take the write lock first
//! (`get_mut`). Waiting is otherwise a short spin, then yielding, up to the
//! pool's lock timeout, after which the caller gets `Error::Conflict` and
//! its transaction rolls back: this also breaks deadlocks between
//! transactions that lock in opposite orders.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// log2 of the granule size.
pub const GRANULE_SHIFT: u32 = 6;
/// Number of stripes.
pub const STRIPES: u64 = 1 << 17;
const EXCL: u64 = 1 << 63;
const WAIT: u64 = 1 << 62;
const LOW: u64 = WAIT - 1;

/// Lock mode held on a stripe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

/// The stripes covering `off..off+len` (nothing for `len == 0`).
pub(crate) fn stripes(off: u64, len: u64) -> impl Iterator<Item = u32> {
    let (first, n) = if len == 0 {
        (0, 0)
    } else {
        let g0 = off >> GRANULE_SHIFT;
        let g1 = (off + len - 1) >> GRANULE_SHIFT;
        let n = g1 - g0 + 1;
        if n >= STRIPES { (0, STRIPES) } else { (g0, n) }
    };
    (0..n).map(move |k| ((first + k) % STRIPES) as u32)
}

/// The table.
pub(crate) struct RangeLocks {
    words: Box<[AtomicU64]>,
    timeout_ns: AtomicU64,
}

impl RangeLocks {
    pub(crate) fn new(timeout: Duration) -> Self {
        RangeLocks {
            words: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            timeout_ns: AtomicU64::new(timeout.as_nanos() as u64),
        }
    }

    pub(crate) fn set_timeout(&self, t: Duration) {
        self.timeout_ns
            .store(t.as_nanos() as u64, Ordering::Relaxed);
    }

    /// How long a lock waits before giving up.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_nanos(self.timeout_ns.load(Ordering::Relaxed))
    }

    fn word(&self, s: u32) -> &AtomicU64 {
        &self.words[s as usize]
    }

    /// One attempt at a shared lock; `waiter` callers may pass a `WAIT`.
    fn try_shared(&self, s: u32, waiter: bool) -> bool {
        let w = self.word(s);
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            if cur & EXCL != 0 || (cur & WAIT != 0 && !waiter) {
                return false;
            }
            // A waiter that gets in clears the flag; others still waiting
            // set it again.
            let new = (cur & LOW) + 1;
            match w.compare_exchange_weak(cur, new, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    /// One attempt at an exclusive lock (from free, or from the caller's
    /// sole shared hold when `upgrade`).
    fn try_exclusive(&self, s: u32, token: u64, upgrade: bool, waiter: bool) -> bool {
        let w = self.word(s);
        let cur = w.load(Ordering::Relaxed);
        let base = u64::from(upgrade);
        // An upgrader already holds the stripe: a queued waiter waits for
        // it anyway, so the flag does not stop it.
        let ok = cur & !WAIT == base && (cur & WAIT == 0 || waiter || upgrade);
        ok && w
            .compare_exchange(cur, EXCL | token, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Queues behind stripe `s` and retries `attempt` (as a waiter) up to
    /// the timeout.
    fn wait(&self, s: u32, mut attempt: impl FnMut(bool) -> bool) -> bool {
        backoff(64, self.timeout(), |queued| {
            if queued {
                self.word(s).fetch_or(WAIT, Ordering::Relaxed);
            }
            attempt(queued)
        })
    }

    /// One attempt at an exclusive lock from free, never waiting.
    pub(crate) fn try_lock_exclusive(&self, s: u32, token: u64) -> bool {
        self.try_exclusive(s, token, false, false)
    }

    /// The stripe word of the granule holding `off`, as a pointer (for a
    /// prefetch: `pool.rs` starts loading it so that its miss overlaps
    /// the data's).
    pub(crate) fn word_ptr(&self, off: u64) -> *const u64 {
        self.words[((off >> GRANULE_SHIFT) % STRIPES) as usize].as_ptr()
    }

    pub(crate) fn lock_shared(&self, s: u32) -> bool {
        self.try_shared(s, false) || self.wait(s, |w| self.try_shared(s, w))
    }

    /// Takes stripe `s` exclusively. An upgrade (the caller holds it
    /// shared) only spins briefly: two readers that both wait to upgrade
    /// would wait for each other, so one of them must give up at once.
    pub(crate) fn lock_exclusive(&self, s: u32, token: u64, upgrade: bool) -> bool {
        if upgrade {
            return (0..1024).any(|_| {
                let ok = self.try_exclusive(s, token, true, false);
                if !ok {
                    std::hint::spin_loop();
                }
                ok
            });
        }
        self.try_exclusive(s, token, false, false)
            || self.wait(s, |w| self.try_exclusive(s, token, false, w))
    }

    pub(crate) fn unlock(&self, s: u32, mode: Mode) {
        match mode {
            Mode::Shared => {
                self.word(s).fetch_sub(1, Ordering::Release);
            }
            // Keep a waiter's flag: it is still queued.
            Mode::Exclusive => {
                self.word(s).fetch_and(WAIT, Ordering::Release);
            }
        }
    }
}

/// The pool's way of waiting: `spins` calls of `attempt(false)` with a
/// spin hint between them, then calls of `attempt(true)` with a yield (the
/// first 15 rounds) or a growing sleep (up to 200 µs) between them, until
/// one returns true or `timeout` has passed since the spinning ended.
/// Returns whether one did.
pub(crate) fn backoff(
    spins: u32,
    timeout: Duration,
    mut attempt: impl FnMut(bool) -> bool,
) -> bool {
    for _ in 0..spins {
        if attempt(false) {
            return true;
        }
        std::hint::spin_loop();
    }
    let deadline = Instant::now() + timeout;
    let mut round = 0u32;
    loop {
        if attempt(true) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        round += 1;
        if round < 16 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(u64::from(round.min(200))));
        }
    }
}

/// Multiplicative hasher for stripe indexes (the default SipHash is
/// needlessly slow for a set of small integers).
#[derive(Default)]
pub(crate) struct StripeHasher(u64);

impl Hasher for StripeHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The stripes one transaction holds.
pub(crate) type Held = HashMap<u32, Mode, BuildHasherDefault<StripeHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_cover_granules_and_wrap_to_all() {
        assert_eq!(stripes(0, 0).count(), 0);
        assert_eq!(stripes(0, 1).collect::<Vec<_>>(), vec![0]);
        assert_eq!(stripes(63, 2).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(stripes(64 * 3, 64).collect::<Vec<_>>(), vec![3]);
        let all: Vec<u32> = stripes(12345, 1 << 30).collect();
        assert_eq!(all.len() as u64, STRIPES);
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len() as u64, STRIPES, "no stripe twice");
    }

    #[test]
    fn shared_excludes_exclusive_and_upgrade_needs_sole_reader() {
        let t = RangeLocks::new(Duration::from_millis(1));
        assert!(t.lock_shared(5));
        assert!(t.lock_shared(5));
        assert!(!t.lock_exclusive(5, 1, true), "two readers: no upgrade");
        t.unlock(5, Mode::Shared);
        assert!(t.lock_exclusive(5, 1, true), "sole reader upgrades");
        assert!(!t.lock_shared(5));
        assert!(!t.lock_exclusive(5, 2, false));
        t.unlock(5, Mode::Exclusive);
        assert!(t.lock_exclusive(5, 2, false));
        t.unlock(5, Mode::Exclusive);
    }

    #[test]
    fn a_waiter_queues_newcomers_behind_it() {
        let t = RangeLocks::new(Duration::from_millis(1));
        assert!(t.lock_exclusive(7, 1, false));
        // A waiter times out but leaves its flag...
        assert!(!t.lock_exclusive(7, 2, false));
        t.unlock(7, Mode::Exclusive);
        // ...so a newcomer's first attempt defers to it,
        assert!(!t.try_exclusive(7, 3, false, false));
        assert!(!t.try_shared(7, false));
        // while a waiter gets in and clears it.
        assert!(t.try_exclusive(7, 3, false, true));
        t.unlock(7, Mode::Exclusive);
        assert!(t.try_shared(7, false));
        t.unlock(7, Mode::Shared);
        // A stale flag costs a newcomer one queued attempt, not a timeout.
        assert!(t.lock_exclusive(7, 4, false));
    }
}
