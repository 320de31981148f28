//! The simulated persistence domain (feature `sim`): the engine of every
//! crash test.
//!
//! A [`SimDomain`] sits beside a live mapping and keeps a second copy of the
//! pool, the *persisted image*: what the media would hold if the machine lost
//! power now and no dirty cache line had been evicted. It models x86:
//!
//! - a store lands in the live mapping (the *volatile image*) at once;
//! - [`flush`](SimDomain::flush) records the 64-byte lines it covers as
//!   pending for the calling thread (like `clwb`, it starts a write-back);
//! - [`drain`](SimDomain::drain) (like `sfence`) copies the calling thread's
//!   pending lines from the live mapping into the persisted image: those
//!   lines are now durable. A flush by thread A is not completed by a drain
//!   of thread B;
//! - the CPU may evict any dirty line at any time, so at a crash every line
//!   whose volatile content differs from the persisted one may or may not
//!   have reached the media. The unit is the whole line (8-byte aligned
//!   stores inside a line are failure-atomic on real hardware; treating the
//!   line as the unit is coarser but never claims a torn 8-byte store).
//!
//! Crash tests record a [`CrashTrace`] ([`start_trace`](SimDomain::start_trace)
//! / [`take_trace`](SimDomain::take_trace)): at every drain point it keeps the
//! lines that differ between the volatile and the persisted image (with their
//! volatile content) and which of them this drain persists, as diffs. The
//! trace then rebuilds every possible post-crash image in one reused buffer.
//!
//! The domain also counts flushes, lines, fences and bytes
//! ([`counters`](SimDomain::counters)), which is how the fence budget of
//! DESIGN.md is measured, and answers "did this transaction forget a flush?"
//! with [`is_fully_persisted`](SimDomain::is_fully_persisted).
//!
//! # Safety
//! The domain holds the base address and length of a mapping that outlives
//! it (the contract of [`SimDomain::new`]). It reads the live mapping only
//! through raw pointers (`memcmp`, `copy_nonoverlapping`), never through a
//! Rust reference, so it never aliases a `&mut` the caller holds.
//!
//! Reads of the live mapping happen in `drain` (the lines the calling thread
//! flushed, which that thread wrote, so no other thread may be writing them
//! under the `memcpy_nodrain` contract) and, for whole-pool scans, in a traced
//! `drain`, [`take_trace`](SimDomain::take_trace),
//! [`dirty_lines`](SimDomain::dirty_lines) and
//! [`is_fully_persisted`](SimDomain::is_fully_persisted). A whole-pool scan
//! reads bytes other threads might be writing: call those only when no other
//! thread writes the pool (crash tests trace a single writer thread, which is
//! the thread that drains; the checks run when the workload is quiescent).
//! The domain's own state (persisted image, pending lines, counters, trace)
//! is behind a `Mutex`.

mod trace;

pub use trace::{CrashImage, CrashOptions, CrashTrace, PointInfo, Selection};

use crate::persist::CACHE_LINE;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::{self, ThreadId};

/// Lines compared at once by `memcmp` before looking at single lines (4 KiB):
/// most of a pool is clean, so the scan is a few large `memcmp`s.
const SCAN_CHUNK_LINES: usize = 64;

/// What the domain has counted since it was built or since
/// [`SimDomain::reset_counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Calls to `flush` (including those made by `memcpy_nodrain` and
    /// `memset_nodrain`) with a non-empty range.
    pub flush_calls: u64,
    /// Lines covered by those flushes, counted once per flush (a line flushed
    /// twice counts twice, as two `clwb`s would execute).
    pub flushed_lines: u64,
    /// Calls to `drain`: one `sfence` each.
    pub fences: u64,
    /// Bytes copied into the persisted image by drains (each pending line
    /// once per drain, however often it was flushed).
    pub persisted_bytes: u64,
}

/// Passed to the drain hook at the start of every drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainPoint {
    /// Number of `drain` calls before this one since the domain was built
    /// (the first is 0), counting any a hook aborted. Not reset by
    /// [`SimDomain::reset_counters`].
    pub seq: u64,
    /// The thread that drains.
    pub thread: ThreadId,
}

/// A hook called at the start of every drain, before anything is persisted.
pub type DrainHook = Box<dyn FnMut(DrainPoint) + Send>;

thread_local! {
    static TRACE_NEXT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes the next `SimDomain` created on this thread start tracing at
/// once, before the code that created it writes anything: how a test
/// traces the pool's own create and open (whose persister does not exist
/// before they run).
pub fn trace_next_domain() {
    TRACE_NEXT.with(|t| t.set(true));
}

/// A simulated persistence domain beside a live mapping. See the module docs.
pub struct SimDomain {
    base: *mut u8,
    len: usize,
    inner: Mutex<Inner>,
    hook: Mutex<Option<DrainHook>>,
    has_hook: AtomicBool,
    /// Sequence number of the next drain (see [`DrainPoint::seq`]).
    seq: AtomicU64,
}

struct Inner {
    persisted: Vec<u8>,
    /// Flushed line ranges per thread, not yet drained (unsorted, may
    /// overlap). The vectors are kept to reuse their allocation.
    pending: HashMap<ThreadId, Vec<Range<usize>>>,
    counters: SimCounters,
    trace: Option<trace::Recorder>,
}

// SAFETY: `base` points into a shared mapping that outlives the domain (see
// `new`); the domain only reads it through raw pointers, and all its own
// state is behind mutexes and atomics, so it may move to another thread.
unsafe impl Send for SimDomain {}
// SAFETY: every method takes `&self` and synchronises through `inner`/`hook`;
// the rules for reading the live mapping from several threads are in the
// module docs (per-thread drains read only lines their thread flushed).
unsafe impl Sync for SimDomain {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock (a drain hook that "crashes" the
    // workload, a failing assertion) leaves the state consistent: every
    // update below is completed before anything that can panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimDomain {
    /// Builds a domain over `base..base+len`, snapshotting its current
    /// content as the initial persisted image.
    ///
    /// # Safety
    /// `base..base+len` must be readable for the whole life of the domain
    /// (a live mapping or a buffer that outlives it), and no other thread may
    /// write it during this call.
    pub unsafe fn new(base: *mut u8, len: usize) -> Self {
        let mut persisted = vec![0u8; len];
        // SAFETY: the caller guarantees base..base+len is readable and not
        // written concurrently; `persisted` is a fresh buffer of `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(base, persisted.as_mut_ptr(), len) };
        let d = SimDomain {
            base,
            len,
            inner: Mutex::new(Inner {
                persisted,
                pending: HashMap::new(),
                counters: SimCounters::default(),
                trace: None,
            }),
            hook: Mutex::new(None),
            has_hook: AtomicBool::new(false),
            seq: AtomicU64::new(0),
        };
        if TRACE_NEXT.with(|t| t.replace(false)) {
            d.start_trace();
        }
        d
    }

    /// Length of the simulated pool in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length domain.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of cache lines (the last one may be partial).
    pub fn lines(&self) -> usize {
        self.len.div_ceil(CACHE_LINE)
    }

    /// Marks the lines overlapping `off..off+len` (pool offsets) as pending
    /// for the calling thread: durable after this thread's next
    /// [`drain`](Self::drain). Parts outside the pool are ignored.
    pub fn flush(&self, off: usize, len: usize) {
        let end = off.saturating_add(len).min(self.len);
        if off >= end {
            return;
        }
        let lines = off / CACHE_LINE..end.div_ceil(CACHE_LINE);
        let tid = thread::current().id();
        let mut g = lock(&self.inner);
        g.counters.flush_calls += 1;
        g.counters.flushed_lines += lines.len() as u64;
        g.pending.entry(tid).or_default().push(lines);
    }

    /// Makes every line the calling thread flushed durable: copies them from
    /// the live mapping into the persisted image and counts one fence. While
    /// a trace runs, first records this drain point (a whole-pool scan; see
    /// the module docs for which threads may write meanwhile).
    pub fn drain(&self) {
        let tid = thread::current().id();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        if self.has_hook.load(Ordering::Acquire) {
            // try_lock: a hook that drains (directly or not) must not
            // deadlock on itself; the nested drain just skips the hook. A
            // hook that panicked (a simulated crash) stays installed.
            let guard = match self.hook.try_lock() {
                Ok(g) => Some(g),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(mut g) = guard
                && let Some(h) = g.as_mut()
            {
                h(DrainPoint { seq, thread: tid });
            }
        }
        let mut g = lock(&self.inner);
        let inner = &mut *g;
        let mut ranges = inner
            .pending
            .get_mut(&tid)
            .map(std::mem::take)
            .unwrap_or_default();
        merge_ranges(&mut ranges);
        if let Some(rec) = inner.trace.as_mut() {
            rec.record_point(self, &inner.persisted, &ranges, Some(seq));
        }
        let mut bytes = 0u64;
        for r in &ranges {
            let start = r.start * CACHE_LINE;
            let end = (r.end * CACHE_LINE).min(self.len);
            // SAFETY: start..end lies inside the mapping (lines were clamped
            // to the pool at flush); these are lines this thread flushed, so
            // no other thread writes them (module docs); `persisted` has
            // `len` bytes and is a separate allocation.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.base.add(start),
                    inner.persisted.as_mut_ptr().add(start),
                    end - start,
                )
            };
            bytes += (end - start) as u64;
        }
        inner.counters.fences += 1;
        inner.counters.persisted_bytes += bytes;
        ranges.clear();
        // Give the (empty) vector back to keep its allocation.
        if let Some(v) = inner.pending.get_mut(&tid)
            && v.is_empty()
        {
            *v = ranges;
        }
    }

    /// The counters since the domain was built or last reset.
    pub fn counters(&self) -> SimCounters {
        lock(&self.inner).counters
    }

    /// Sets every counter to zero (typically right before the operation
    /// whose flushes and fences a test counts).
    pub fn reset_counters(&self) {
        lock(&self.inner).counters = SimCounters::default();
    }

    /// A copy of the persisted image: what the media holds if no dirty line
    /// was evicted before a crash now.
    pub fn persisted_image(&self) -> Vec<u8> {
        lock(&self.inner).persisted.clone()
    }

    /// Indexes (ascending) of the lines whose volatile content differs from
    /// the persisted image. Scans the whole pool: call it when no other
    /// thread writes the pool.
    pub fn dirty_lines(&self) -> Vec<usize> {
        let g = lock(&self.inner);
        let mut out = Vec::new();
        self.scan_dirty(&g.persisted, |l| out.push(l));
        out
    }

    /// Indexes (ascending, deduplicated) of the lines some thread flushed
    /// but has not drained yet.
    pub fn flushed_lines(&self) -> Vec<usize> {
        let g = lock(&self.inner);
        let mut out: Vec<usize> = g
            .pending
            .values()
            .flatten()
            .flat_map(|r| r.clone())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// True when the volatile and persisted images are equal: nothing was
    /// written without being flushed and drained (the "no missing flush"
    /// check after a committed transaction). Call it when no other thread
    /// writes the pool.
    pub fn is_fully_persisted(&self) -> bool {
        let g = lock(&self.inner);
        // SAFETY: both ranges are `len` bytes long and readable (contract
        // of `new`); read through raw pointers only.
        unsafe { memeq(self.base, g.persisted.as_ptr(), self.len) }
    }

    /// Starts recording a [`CrashTrace`] from the current persisted image;
    /// restarts it if one was running. Traced drains scan the whole pool,
    /// so only the writer thread may write the pool while tracing.
    pub fn start_trace(&self) {
        let mut g = lock(&self.inner);
        let rec = trace::Recorder::new(g.persisted.clone());
        g.trace = Some(rec);
    }

    /// Stops recording and returns the trace, or `None` if no trace was
    /// started. Records a last point first: a crash after the last traced
    /// drain, with the lines still dirty now (nothing persisted by it).
    pub fn take_trace(&self) -> Option<CrashTrace> {
        let mut g = lock(&self.inner);
        let inner = &mut *g;
        let mut rec = inner.trace.take()?;
        rec.record_point(self, &inner.persisted, &[], None);
        Some(rec.finish())
    }

    /// Installs (or with `None` removes) a hook called at the start of every
    /// drain, before anything is persisted or traced. A hook may panic to
    /// simulate a crash at that drain (it stays installed). It runs on the
    /// draining thread; drains made while it runs (by the hook itself or by
    /// other threads) do not call it. Meant for single-writer crash tests.
    pub fn set_drain_hook(&self, hook: Option<DrainHook>) {
        let mut h = lock(&self.hook);
        self.has_hook.store(hook.is_some(), Ordering::Release);
        *h = hook;
    }

    /// Calls `f` with each line index (ascending) whose live content differs
    /// from `persisted`.
    fn scan_dirty(&self, persisted: &[u8], mut f: impl FnMut(usize)) {
        debug_assert_eq!(persisted.len(), self.len);
        let chunk = SCAN_CHUNK_LINES * CACHE_LINE;
        let mut off = 0;
        while off < self.len {
            let n = chunk.min(self.len - off);
            // SAFETY: off..off+n lies inside both the mapping and
            // `persisted`; raw-pointer reads only (module docs).
            if !unsafe { memeq(self.base.add(off), persisted.as_ptr().add(off), n) } {
                let mut l = off;
                while l < off + n {
                    let ln = CACHE_LINE.min(self.len - l);
                    // SAFETY: l..l+ln lies inside the chunk just compared.
                    if !unsafe { line_eq(self.base.add(l), persisted.as_ptr().add(l), ln) } {
                        f(l / CACHE_LINE);
                    }
                    l += CACHE_LINE;
                }
            }
            off += n;
        }
    }

    /// Copies line `line` of the live mapping into `dst` (which must hold at
    /// least the line's length) and returns that length.
    fn read_line(&self, line: usize, dst: &mut [u8]) -> usize {
        let start = line * CACHE_LINE;
        let n = CACHE_LINE.min(self.len - start);
        assert!(dst.len() >= n, "line buffer too short");
        // SAFETY: start..start+n lies inside the mapping (line < lines());
        // `dst` holds at least n bytes and is not part of the mapping.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(start), dst.as_mut_ptr(), n) };
        n
    }
}

impl std::fmt::Debug for SimDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDomain")
            .field("len", &self.len)
            .field("counters", &self.counters())
            .finish()
    }
}

/// `memcmp(a, b, n) == 0`.
///
/// # Safety
/// `a..a+n` and `b..b+n` must be readable.
#[inline]
unsafe fn memeq(a: *const u8, b: *const u8, n: usize) -> bool {
    // SAFETY: forwarded from the caller; memcmp reads exactly n bytes of each.
    unsafe { libc::memcmp(a.cast(), b.cast(), n) == 0 }
}

/// `a[..n] == b[..n]` for one line (`n <= CACHE_LINE`): a full line is
/// compared as eight `u64` words, inlined, cheaper than a `memcmp` call.
///
/// # Safety
/// `a..a+n` and `b..b+n` must be readable.
#[inline]
unsafe fn line_eq(a: *const u8, b: *const u8, n: usize) -> bool {
    if n != CACHE_LINE {
        // SAFETY: forwarded.
        return unsafe { memeq(a, b, n) };
    }
    let mut x = 0u64;
    for i in 0..CACHE_LINE / 8 {
        // SAFETY: i * 8 + 8 <= CACHE_LINE = n bytes, readable (caller);
        // unaligned reads, so any buffer alignment is fine.
        x |= unsafe {
            a.cast::<u64>().add(i).read_unaligned() ^ b.cast::<u64>().add(i).read_unaligned()
        };
    }
    x == 0
}

/// Sorts line ranges and merges overlapping or adjacent ones, in place.
fn merge_ranges(v: &mut Vec<Range<usize>>) {
    if v.len() < 2 {
        return;
    }
    v.sort_unstable_by_key(|r| r.start);
    let mut w = 0;
    for i in 1..v.len() {
        if v[i].start <= v[w].end {
            v[w].end = v[w].end.max(v[i].end);
        } else {
            w += 1;
            v[w] = v[i].clone();
        }
    }
    v.truncate(w + 1);
}

#[cfg(test)]
mod tests;
