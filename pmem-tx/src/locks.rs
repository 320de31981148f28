//! The range lock table: how safe code is kept from racing on pool bytes.
//!
//! Pool memory is shared by every thread that holds the `Pool`, and a
//! `PPtr` can be copied anywhere, so the borrow checker alone cannot stop two
//! threads from writing (or one writing, one reading) the same bytes. Every
//! access from safe code therefore locks the bytes it touches in a table of
//! reader/writer stripe locks: the pool is cut into 64-byte granules (a
//! cache line: objects sharing one contend in the hardware anyway), each
//! granule maps to one of 262,144 stripes (`granule % STRIPES`, so a range
//! of fewer than 262,144 granules (16 MiB) takes distinct stripes and a larger one
//! takes all of them). Transactions hold their locks until they end (strict
//! two-phase locking, which also gives them isolation); reads outside a
//! transaction hold them for the life of the guard or the copy.
//!
//! A stripe word holds, in its low 32 bits, 0 (free), `n` (held shared by
//! `n` readers) or, with the `EXCL` bit, `token` (held exclusively by the
//! transaction whose lane is `token - 1`). Bits 32 to 61 are the stripe's
//! *tag*, kept while the stripe is free or shared: the lane (+ 1) of the
//! last transaction that held it exclusively, which a transaction taking
//! the stripe exclusively reads to learn whose generation bump its drains
//! must make durable ([`Tag`]). Bit 62 is the `WAIT` bit: a thread that has to wait for a stripe
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
pub const STRIPES: u64 = 1 << 18;
const EXCL: u64 = 1 << 63;
const WAIT: u64 = 1 << 62;
const LOW: u64 = WAIT - 1;
/// The reader count or the exclusive holder's token.
const HOLD: u64 = (1 << 32) - 1;
const TAG_SHIFT: u32 = 32;

/// A stripe's tag (bits 32 to 61 of its word): which lane's generation bump
/// may still be unfenced for bytes of the stripe.
///
/// A transaction that commits in place leaves its commit record valid until
/// its lane's generation bump is durable, and no later change to its bytes
/// may reach the media before that (`invalidate.rs`). When it releases a
/// stripe it held exclusively, it leaves its lane in the stripe's tag: the
/// next transaction to take the stripe exclusively makes that lane's bump
/// durable at its drains, before it changes anything. A transaction that
/// cannot vouch that every bump its stripes depended on is durable leaves
/// [`Tag::UNKNOWN`], and the next one then flushes every pending bump, as a
/// transaction that changes heap metadata always does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tag(pub(crate) u32);

impl Tag {
    /// Never held exclusively since the pool was opened.
    pub(crate) const NONE: Tag = Tag(0);
    /// Any lane's bump may be pending.
    pub(crate) const UNKNOWN: Tag = Tag((1 << 30) - 1);

    /// The tag naming `lane`.
    #[cfg(test)]
    pub(crate) fn lane(lane: u32) -> Tag {
        Tag::token(u64::from(lane) + 1)
    }

    /// The tag naming the lane whose lock token is `token` (the lane + 1).
    pub(crate) fn token(token: u64) -> Tag {
        Tag(token.min(u64::from(Tag::UNKNOWN.0)) as u32)
    }

    fn of(word: u64) -> Tag {
        Tag(((word & LOW) >> TAG_SHIFT) as u32)
    }

    fn bits(self) -> u64 {
        u64::from(self.0) << TAG_SHIFT
    }
}

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
            // Zeroed by the allocator (fresh pages from the kernel for a
            // table this size): a page is faulted in when a stripe on it
            // is first locked, not all of them at open.
            words: bytemuck::allocation::zeroed_slice_box(STRIPES as usize),
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
            // set it again. The tag stays.
            let new = (cur & LOW) + 1;
            match w.compare_exchange_weak(cur, new, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    /// One attempt at an exclusive lock (from free, or from the caller's
    /// sole shared hold when `upgrade`); returns the stripe's tag if it
    /// got the lock. `token` must fit in 32 bits.
    fn try_exclusive(&self, s: u32, token: u64, upgrade: bool, waiter: bool) -> Option<Tag> {
        debug_assert!(token != 0 && token <= HOLD);
        let w = self.word(s);
        let cur = w.load(Ordering::Relaxed);
        let base = u64::from(upgrade);
        // An upgrader already holds the stripe: a queued waiter waits for
        // it anyway, so the flag does not stop it.
        let ok = cur & (EXCL | HOLD) == base && (cur & WAIT == 0 || waiter || upgrade);
        // Acquire: the tag and the bump it names were stored before the
        // releaser's unlock.
        (ok && w
            .compare_exchange(cur, EXCL | token, Ordering::Acquire, Ordering::Relaxed)
            .is_ok())
        .then(|| Tag::of(cur))
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

    /// One attempt at an exclusive lock from free, never waiting; the
    /// stripe's tag if it got it.
    pub(crate) fn try_lock_exclusive(&self, s: u32, token: u64) -> Option<Tag> {
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

    /// Takes stripe `s` exclusively; returns its tag, or `None` when it
    /// timed out. An upgrade (the caller holds it shared) only spins
    /// briefly: two readers that both wait to upgrade would wait for each
    /// other, so one of them must give up at once.
    pub(crate) fn lock_exclusive(&self, s: u32, token: u64, upgrade: bool) -> Option<Tag> {
        if upgrade {
            return (0..1024).find_map(|_| {
                let got = self.try_exclusive(s, token, true, false);
                if got.is_none() {
                    std::hint::spin_loop();
                }
                got
            });
        }
        if let Some(t) = self.try_exclusive(s, token, false, false) {
            return Some(t);
        }
        let mut tag = None;
        self.wait(s, |w| {
            tag = self.try_exclusive(s, token, false, w);
            tag.is_some()
        });
        tag
    }

    /// Gives up a shared hold of stripe `s` (its tag stays).
    pub(crate) fn unlock_shared(&self, s: u32) {
        self.word(s).fetch_sub(1, Ordering::Release);
    }

    /// Gives up stripe `s`, held exclusively with `token`, leaving `tag`.
    pub(crate) fn unlock_exclusive(&self, s: u32, token: u64, tag: Tag) {
        // The word is `EXCL | token`, plus a waiter's flag that must stay
        // (it is still queued): flipping exactly those bits leaves the
        // flag and the tag. Release: the tag's bump is stored before.
        let prev = self
            .word(s)
            .fetch_xor(EXCL | token | tag.bits(), Ordering::Release);
        debug_assert_eq!(
            prev & !WAIT,
            EXCL | token,
            "stripe {s} not held with token {token}"
        );
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
        assert!(
            t.lock_exclusive(5, 1, true).is_none(),
            "two readers: no upgrade"
        );
        t.unlock_shared(5);
        assert_eq!(
            t.lock_exclusive(5, 1, true),
            Some(Tag::NONE),
            "sole reader upgrades"
        );
        assert!(!t.lock_shared(5));
        assert!(t.lock_exclusive(5, 2, false).is_none());
        t.unlock_exclusive(5, 1, Tag::lane(0));
        assert_eq!(t.lock_exclusive(5, 2, false), Some(Tag::lane(0)));
        t.unlock_exclusive(5, 2, Tag::lane(1));
    }

    #[test]
    fn a_waiter_queues_newcomers_behind_it() {
        let t = RangeLocks::new(Duration::from_millis(1));
        assert!(t.lock_exclusive(7, 1, false).is_some());
        // A waiter times out but leaves its flag...
        assert!(t.lock_exclusive(7, 2, false).is_none());
        t.unlock_exclusive(7, 1, Tag::lane(0));
        // ...so a newcomer's first attempt defers to it,
        assert!(t.try_exclusive(7, 3, false, false).is_none());
        assert!(!t.try_shared(7, false));
        // while a waiter gets in and clears it.
        assert_eq!(t.try_exclusive(7, 3, false, true), Some(Tag::lane(0)));
        t.unlock_exclusive(7, 3, Tag::lane(2));
        assert!(t.try_shared(7, false));
        t.unlock_shared(7);
        // A stale flag costs a newcomer one queued attempt, not a timeout.
        assert_eq!(t.lock_exclusive(7, 4, false), Some(Tag::lane(2)));
    }

    #[test]
    fn a_tag_survives_readers_and_waiters_and_names_the_last_writer() {
        let t = RangeLocks::new(Duration::from_millis(1));
        assert_eq!(t.try_lock_exclusive(9, 5), Some(Tag::NONE));
        t.unlock_exclusive(9, 5, Tag::lane(4));
        // Readers come and go: the tag stays, and excludes no one.
        assert!(t.lock_shared(9));
        assert!(t.lock_shared(9));
        assert!(t.try_lock_exclusive(9, 7).is_none(), "readers hold it");
        assert_eq!(
            t.lock_exclusive(9, 7, true),
            None,
            "two readers: no upgrade"
        );
        t.unlock_shared(9);
        assert_eq!(
            t.lock_exclusive(9, 7, true),
            Some(Tag::lane(4)),
            "the sole reader upgrades"
        );
        // A waiter's flag set while a writer holds it outlives the unlock,
        // and so does the new tag.
        assert!(
            t.lock_exclusive(9, 8, false).is_none(),
            "times out, flag left"
        );
        t.unlock_exclusive(9, 7, Tag::UNKNOWN);
        assert!(
            t.try_exclusive(9, 8, false, false).is_none(),
            "flag defers it"
        );
        assert_eq!(t.try_exclusive(9, 8, false, true), Some(Tag::UNKNOWN));
        t.unlock_exclusive(9, 8, Tag::lane(7));
        assert_eq!(t.word(9).load(Ordering::Relaxed), Tag::lane(7).bits());
        // Lanes too large for the field read as unknown.
        assert_eq!(Tag::lane(u32::MAX), Tag::UNKNOWN);
        assert_eq!(Tag::lane((1 << 30) - 2), Tag::UNKNOWN);
        assert_eq!(Tag::lane((1 << 30) - 3), Tag((1 << 30) - 2));
    }
}
