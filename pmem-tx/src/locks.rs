//! The range lock table: how safe code is kept from racing on pool bytes.
//!
//! Pool memory is shared by every thread that holds the `Pool`, and a
//! `PPtr` can be copied anywhere, so the borrow checker alone cannot stop two
//! threads from writing (or one writing, one reading) the same bytes. Every
//! access from safe code therefore locks the bytes it touches in a table of
//! reader/writer stripe locks: the pool is cut into 256-byte granules, each
//! granule hashes to one of 65,536 stripes (`granule % STRIPES`, so a range
//! of fewer than 65,536 granules takes distinct stripes and a larger one
//! takes all of them). Transactions hold their locks until they end (strict
//! two-phase locking, which also gives them isolation); reads outside a
//! transaction hold them for the life of the guard or the copy.
//!
//! A stripe word is 0 (free), `n` (held shared by `n` readers) or
//! `EXCL | token` (held exclusively by the transaction whose lane is
//! `token - 1`). A transaction that holds a stripe shared and is its only
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
pub const GRANULE_SHIFT: u32 = 8;
/// Number of stripes.
pub const STRIPES: u64 = 1 << 16;
const EXCL: u64 = 1 << 63;

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

    fn word(&self, s: u32) -> &AtomicU64 {
        &self.words[s as usize]
    }

    fn try_shared(&self, s: u32) -> bool {
        let w = self.word(s);
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            if cur & EXCL != 0 {
                return false;
            }
            match w.compare_exchange_weak(cur, cur + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    fn try_exclusive(&self, s: u32, token: u64, upgrade: bool) -> bool {
        let from = u64::from(upgrade);
        self.word(s)
            .compare_exchange(from, EXCL | token, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Waits for `attempt` to succeed, up to the timeout.
    fn wait(&self, mut attempt: impl FnMut() -> bool) -> bool {
        for _ in 0..128 {
            if attempt() {
                return true;
            }
            std::hint::spin_loop();
        }
        let deadline =
            Instant::now() + Duration::from_nanos(self.timeout_ns.load(Ordering::Relaxed));
        loop {
            if attempt() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::yield_now();
        }
    }

    pub(crate) fn lock_shared(&self, s: u32) -> bool {
        self.try_shared(s) || self.wait(|| self.try_shared(s))
    }

    /// Takes stripe `s` exclusively. An upgrade (the caller holds it
    /// shared) only spins briefly: two readers that both wait to upgrade
    /// would wait for each other, so one of them must give up at once.
    pub(crate) fn lock_exclusive(&self, s: u32, token: u64, upgrade: bool) -> bool {
        if upgrade {
            return (0..1024).any(|_| {
                let ok = self.try_exclusive(s, token, true);
                if !ok {
                    std::hint::spin_loop();
                }
                ok
            });
        }
        self.try_exclusive(s, token, false) || self.wait(|| self.try_exclusive(s, token, false))
    }

    pub(crate) fn unlock(&self, s: u32, mode: Mode) {
        match mode {
            Mode::Shared => {
                self.word(s).fetch_sub(1, Ordering::Release);
            }
            Mode::Exclusive => self.word(s).store(0, Ordering::Release),
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
        assert_eq!(stripes(255, 2).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(stripes(256 * 3, 256).collect::<Vec<_>>(), vec![3]);
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
    }
}
