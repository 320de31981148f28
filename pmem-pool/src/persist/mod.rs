//! The persistence seam: every store that must become durable goes through
//! a [`Persister`].
//!
//! A `Persister` is picked once per open pool from its [`Mode`] (like
//! libpmem2's granularity: the mode installs the flush, drain and copy
//! functions) and dispatched by one `match` on a small enum, which the branch
//! predictor makes free. All ranges are pool-relative offsets, so the same
//! call sequence drives real hardware, the `msync` fallback and the
//! simulated domain of crash tests.
//!
//! Semantics, as on x86: `flush` starts writing a range back; `drain` waits
//! until every range *this thread* flushed (and every non-temporal store it
//! made) is durable, and orders it before the thread's later stores.
//!
//! # Safety
//! The persister holds the base address and length of the live mapping; it
//! is created by the pool after mapping and dropped before unmapping, so
//! `base..base+len` is mapped for its whole life. Offsets are clamped to that
//! range before any instruction touches memory. The copy/fill functions write
//! to the mapping and are `unsafe`: the caller guarantees no reference to the
//! destination bytes is alive.

pub mod flush;
pub(crate) mod msync;
pub mod nt;

pub use flush::FlushInstr;
pub use msync::{JOIN_GAP, MsyncStats, msync_stats, reset_msync_stats};
pub use nt::NtKind;

use crate::error::Result;
use crate::mode::Mode;
use std::sync::atomic::{AtomicU64, Ordering};

/// Copies at least this long use non-temporal stores in `Pmem` mode (as
/// PMDK's default `PMEM_MOVNT_THRESHOLD`); shorter ones are plain stores
/// followed by `clwb` of the lines written.
pub const NT_THRESHOLD: usize = 256;

/// Cache line size assumed by every flush (x86).
pub const CACHE_LINE: usize = 64;

/// The CPU-cache path shared by `Pmem` and `Eadr`: which flush instruction,
/// which non-temporal store width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheFns {
    /// Flush instruction picked from CPUID.
    pub flush: FlushInstr,
    /// Widest non-temporal store available.
    pub nt: NtKind,
}

impl CacheFns {
    /// Picks the best instructions this CPU has (CPUID leaf 7, once).
    pub fn detect() -> Self {
        let f = crate::cpu::features();
        CacheFns {
            flush: FlushInstr::best(f),
            nt: NtKind::best(f),
        }
    }
}

enum Imp {
    Pmem(CacheFns),
    Eadr(CacheFns),
    Msync {
        id: u64,
    },
    #[cfg(feature = "sim")]
    Sim(std::sync::Arc<crate::sim::SimDomain>),
}

/// Makes stores into one mapped pool durable. See the module docs.
pub struct Persister {
    base: *mut u8,
    len: usize,
    imp: Imp,
}

// SAFETY: the persister only holds the address of a shared mapping that
// outlives it (see module docs); its methods are callable from any thread
// (flush instructions and msync are thread-safe, per-thread msync state is in
// a thread local, and the Sim domain synchronises internally).
unsafe impl Send for Persister {}
// SAFETY: as for Send: no method relies on being called from one thread.
unsafe impl Sync for Persister {}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Persister {
    /// Builds the persister of a mapping at `base..base+len` in `mode`.
    ///
    /// # Safety
    /// `base..base+len` must be a live, writable, shared mapping for the whole
    /// life of the returned value (read-only pools are given a persister too
    /// but must never call its copy functions).
    pub(crate) unsafe fn new(base: *mut u8, len: usize, mode: Mode) -> Result<Self> {
        let imp = match mode {
            Mode::Pmem => Imp::Pmem(CacheFns::detect()),
            Mode::Eadr => Imp::Eadr(CacheFns::detect()),
            Mode::Msync => Imp::Msync {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            },
            #[cfg(feature = "sim")]
            // SAFETY: forwarded from this function's contract.
            Mode::Sim => Imp::Sim(std::sync::Arc::new(unsafe {
                crate::sim::SimDomain::new(base, len)
            })),
            #[cfg(not(feature = "sim"))]
            Mode::Sim => {
                return Err(crate::Error::ModeUnavailable {
                    mode: "sim",
                    reason: "pmem-pool was built without the `sim` feature".into(),
                });
            }
        };
        Ok(Persister { base, len, imp })
    }

    /// The mode this persister implements.
    pub fn mode(&self) -> Mode {
        match self.imp {
            Imp::Pmem(_) => Mode::Pmem,
            Imp::Eadr(_) => Mode::Eadr,
            Imp::Msync { .. } => Mode::Msync,
            #[cfg(feature = "sim")]
            Imp::Sim(_) => Mode::Sim,
        }
    }

    /// The cache instructions in use (`Pmem`/`Eadr` only).
    pub fn cache_fns(&self) -> Option<CacheFns> {
        match self.imp {
            Imp::Pmem(c) | Imp::Eadr(c) => Some(c),
            _ => None,
        }
    }

    /// Base address of the mapping.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true for a real pool; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The simulated domain, when the pool runs in [`Mode::Sim`].
    #[cfg(feature = "sim")]
    pub fn sim(&self) -> Option<&std::sync::Arc<crate::sim::SimDomain>> {
        match &self.imp {
            Imp::Sim(d) => Some(d),
            _ => None,
        }
    }

    /// Clamps `off..off+len` to the mapping.
    #[inline]
    fn clamp(&self, off: usize, len: usize) -> (usize, usize) {
        debug_assert!(
            off.checked_add(len).is_some_and(|e| e <= self.len),
            "range {off:#x}+{len:#x} outside pool of {:#x}",
            self.len
        );
        let off = off.min(self.len);
        (off, len.min(self.len - off))
    }

    /// Starts writing back `off..off+len` (whole cache lines containing it).
    ///
    /// The `Pmem` path is inlined into its callers (a transaction flushes
    /// four to eight times); the other modes' calls stay out of line.
    #[inline]
    pub fn flush(&self, off: usize, len: usize) {
        match &self.imp {
            Imp::Pmem(c) => {
                let (off, len) = self.clamp(off, len);
                // SAFETY: the clamped range lies inside the live mapping;
                // `c.flush` came from `CacheFns::detect`, so this CPU has it.
                unsafe { flush::flush_range_unchecked(c.flush, self.base.add(off), len) }
            }
            Imp::Eadr(_) => {}
            _ => self.flush_other(off, len),
        }
    }

    /// [`flush`](Self::flush) of the 8-byte word at `off` (8-aligned, so
    /// inside one line): one flush instruction, without the range
    /// arithmetic. The transaction path flushes single words at every
    /// drain (generation words, parked lines).
    #[inline]
    pub fn flush_word(&self, off: usize) {
        debug_assert!(off.is_multiple_of(8), "word {off:#x} not 8-aligned");
        match &self.imp {
            Imp::Pmem(c) if off < self.len => {
                // SAFETY: `off` lies inside the live mapping (checked), so
                // does its line (a line never crosses a page); `c.flush`
                // came from `CacheFns::detect`, so this CPU has it.
                unsafe { flush::flush_line_unchecked(c.flush, self.base.add(off)) }
            }
            Imp::Eadr(_) => {}
            _ => self.flush_other(off, 8),
        }
    }

    /// [`flush`](Self::flush) in `Msync` and `Sim` modes.
    #[cold]
    #[inline(never)]
    fn flush_other(&self, off: usize, len: usize) {
        let (off, len) = self.clamp(off, len);
        if len == 0 {
            return;
        }
        match &self.imp {
            Imp::Pmem(_) | Imp::Eadr(_) => {}
            // SAFETY: the clamped range lies inside the live mapping.
            Imp::Msync { id } => msync::record(*id, unsafe { self.base.add(off) }, len),
            #[cfg(feature = "sim")]
            Imp::Sim(d) => d.flush(off, len),
        }
    }

    /// Orders this thread's next flushes after its earlier loads. A thread
    /// that loads a value another thread published after storing a pool
    /// word, and then flushes that word, writes back at least the stored
    /// value only if the flush cannot run ahead of the load: `lfence` in
    /// `Pmem` mode. The other modes need nothing: `msync` reads the page
    /// when it is called, `Eadr` flushes nothing, `Sim` copies at the drain.
    #[inline]
    pub fn order_flushes_after_loads(&self) {
        if let Imp::Pmem(_) = self.imp {
            flush::lfence();
        }
    }

    /// Waits until everything this thread flushed or wrote non-temporally is
    /// durable, and orders it before this thread's later stores. In `Msync`
    /// mode this is one `msync` per span of dirty ranges at most
    /// [`msync::JOIN_GAP`] apart (one call for a transaction's drain).
    #[inline]
    pub fn drain(&self) -> Result<()> {
        if let Imp::Pmem(_) | Imp::Eadr(_) = &self.imp {
            flush::sfence();
            Ok(())
        } else {
            self.drain_other()
        }
    }

    /// [`drain`](Self::drain) in `Msync` and `Sim` modes.
    #[cold]
    #[inline(never)]
    fn drain_other(&self) -> Result<()> {
        match &self.imp {
            Imp::Pmem(_) | Imp::Eadr(_) => {
                flush::sfence();
                Ok(())
            }
            Imp::Msync { id } => msync::sync(*id).map_err(crate::Error::Msync),
            #[cfg(feature = "sim")]
            Imp::Sim(d) => {
                d.drain();
                Ok(())
            }
        }
    }

    /// `flush` then `drain`.
    #[inline]
    pub fn persist(&self, off: usize, len: usize) -> Result<()> {
        self.flush(off, len);
        self.drain()
    }

    /// Copies `src` to `off` and starts making it durable (non-temporal
    /// stores for long copies in `Pmem` mode); durable after the next
    /// [`drain`](Self::drain).
    ///
    /// # Safety
    /// No reference to the destination bytes may be alive, and no other
    /// thread may access them during the call. `src` must not overlap them.
    #[inline]
    pub unsafe fn memcpy_nodrain(&self, off: usize, src: &[u8]) {
        let (off, len) = self.clamp(off, src.len());
        if len == 0 {
            return;
        }
        // SAFETY: the clamped range lies inside the mapping.
        let dst = unsafe { self.base.add(off) };
        match &self.imp {
            // SAFETY: caller guarantees exclusive access to dst..dst+len,
            // src has at least len bytes and does not overlap it.
            Imp::Pmem(c) => unsafe { nt::memcpy_nodrain(*c, dst, src.as_ptr(), len) },
            // SAFETY: as above; the cache is persistent, a plain or
            // non-temporal copy is durable once drained.
            Imp::Eadr(c) => unsafe { nt::memcpy_eadr(*c, dst, src.as_ptr(), len) },
            Imp::Msync { id } => {
                // SAFETY: as above.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, len) };
                msync::record(*id, dst, len);
            }
            #[cfg(feature = "sim")]
            Imp::Sim(d) => {
                // SAFETY: as above.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, len) };
                d.flush(off, len);
            }
        }
    }

    /// Whether [`stream_words`](Self::stream_words) makes data durable
    /// without a flush (Pmem mode).
    #[inline]
    pub fn streams_words(&self) -> bool {
        matches!(self.imp, Imp::Pmem(_))
    }

    /// Copies `src` (a multiple of 8 bytes) to the 8-aligned `off` with
    /// non-temporal 8-byte stores when [`streams_words`](Self::streams_words)
    /// (durable after the next drain, no flush), else with plain stores
    /// the caller must flush.
    ///
    /// # Safety
    /// As for [`memcpy_nodrain`](Self::memcpy_nodrain); `off` 8-aligned
    /// and `src.len()` a multiple of 8.
    #[inline]
    pub unsafe fn stream_words(&self, off: usize, src: &[u8]) {
        let (off, len) = self.clamp(off, src.len());
        debug_assert!(off.is_multiple_of(8) && len.is_multiple_of(8));
        // SAFETY: the clamped range lies inside the mapping.
        let dst = unsafe { self.base.add(off) };
        match &self.imp {
            // SAFETY: caller guarantees exclusive access, alignment and
            // length; src has len bytes and does not overlap dst.
            Imp::Pmem(_) => unsafe { nt::stream_words(dst, src.as_ptr(), len & !7) },
            // SAFETY: as above.
            _ => unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, len) },
        }
    }

    /// [`flush`](Self::flush) of bytes the caller has just written and
    /// holds exclusively, by rewriting them instead of writing their lines
    /// back: in `Pmem` mode each 8-byte word inside `off..off+len` is
    /// stored again, in place, with a non-temporal store of its own value,
    /// and only the line of a partial word at either end is flushed. The
    /// bytes are durable after the next [`drain`](Self::drain), as after
    /// `flush`; the other modes flush.
    ///
    /// Why: on the processor of BENCHMARKS.md a dirty line's `clwb` then
    /// `sfence` takes about 160 ns and a streaming store of the same line
    /// then `sfence` about 100 ns (`primitives` bench, "per call"), and a
    /// commit's fence waits for the slowest line it covers. Unlike a line
    /// written back with `clwb`, which that processor keeps in its cache,
    /// a streamed line leaves the cache: a later read of it misses.
    ///
    /// # Safety
    /// No reference to the bytes may be alive, and no other thread may
    /// write them during the call: each word is read, then stored again,
    /// and a store between the two would be lost.
    #[inline]
    pub unsafe fn restream(&self, off: usize, len: usize) {
        let Imp::Pmem(c) = &self.imp else {
            self.flush(off, len);
            return;
        };
        let (off, len) = self.clamp(off, len);
        let end = off + len;
        let (a, b) = (off.next_multiple_of(8), end / 8 * 8);
        if a >= b {
            self.flush(off, len);
            return;
        }
        // The partial words' lines (one flush if both ends share a line).
        if off < a {
            // SAFETY: `off` lies inside the clamped range, in the mapping.
            unsafe { flush::flush_line_unchecked(c.flush, self.base.add(off)) };
        }
        if b < end && (off == a || (end - 1) / CACHE_LINE != off / CACHE_LINE) {
            // SAFETY: `end - 1` lies inside the clamped range.
            unsafe { flush::flush_line_unchecked(c.flush, self.base.add(end - 1)) };
        }
        // SAFETY: `a..b` lies inside the clamped range, is 8-aligned and a
        // multiple of 8 long; the caller holds its bytes exclusively, with
        // no reference alive.
        unsafe { nt::restream_words(self.base.add(a), b - a) };
    }

    /// Fills `off..off+len` with `byte` and starts making it durable.
    ///
    /// # Safety
    /// No reference to the destination bytes may be alive, and no other
    /// thread may access them during the call.
    #[inline]
    pub unsafe fn memset_nodrain(&self, off: usize, byte: u8, len: usize) {
        let (off, len) = self.clamp(off, len);
        if len == 0 {
            return;
        }
        // SAFETY: the clamped range lies inside the mapping.
        let dst = unsafe { self.base.add(off) };
        match &self.imp {
            // SAFETY: caller guarantees exclusive access to dst..dst+len.
            Imp::Pmem(c) => unsafe { nt::memset_nodrain(*c, dst, byte, len) },
            // SAFETY: as above.
            Imp::Eadr(c) => unsafe { nt::memset_eadr(*c, dst, byte, len) },
            Imp::Msync { id } => {
                // SAFETY: as above.
                unsafe { std::ptr::write_bytes(dst, byte, len) };
                msync::record(*id, dst, len);
            }
            #[cfg(feature = "sim")]
            Imp::Sim(d) => {
                // SAFETY: as above.
                unsafe { std::ptr::write_bytes(dst, byte, len) };
                d.flush(off, len);
            }
        }
    }

    /// [`memcpy_nodrain`](Self::memcpy_nodrain) then [`drain`](Self::drain).
    ///
    /// # Safety
    /// As for `memcpy_nodrain`.
    pub unsafe fn memcpy_persist(&self, off: usize, src: &[u8]) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.memcpy_nodrain(off, src) };
        self.drain()
    }

    /// [`memset_nodrain`](Self::memset_nodrain) then [`drain`](Self::drain).
    ///
    /// # Safety
    /// As for `memset_nodrain`.
    pub unsafe fn memset_persist(&self, off: usize, byte: u8, len: usize) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.memset_nodrain(off, byte, len) };
        self.drain()
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        if let Imp::Msync { id } = self.imp {
            // Ranges this thread recorded but never drained must not be
            // msync'ed after the mapping is gone: forget them.
            msync::forget(id);
        }
    }
}

impl std::fmt::Debug for Persister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persister")
            .field("mode", &self.mode())
            .field("cache_fns", &self.cache_fns())
            .field("len", &self.len)
            .finish()
    }
}
