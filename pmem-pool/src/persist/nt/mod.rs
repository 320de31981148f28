//! Non-temporal copy and fill.
//!
//! One small file per CPU variant, as libpmem2 does: `sse2`, `avx` and
//! `avx512` each stream whole, 64-byte-aligned lines. This module splits a
//! destination range into an unaligned head, an aligned middle of whole lines
//! and a tail; the head and tail (each inside one line) are written with
//! plain stores and, in `Pmem` mode, flushed; the middle is streamed when the
//! copy is at least [`NT_THRESHOLD`] long. The copy loops prefetch their
//! source, and a line of each destination page, [`PREFETCH_AHEAD`] bytes
//! ahead. Nothing here fences: the caller's `drain` (`sfence`) completes
//! the streaming stores and the flushes.
//!
//! # Safety
//! Each variant requires its instruction set; [`NtKind::supported`] checks
//! the requested kind against the detected features before every call, so a
//! hand-built [`CacheFns`] naming a kind this CPU lacks degrades to one it
//! has instead of faulting. The destination must be writable and exclusively
//! accessed for the call; the source readable and not overlapping it.

mod avx;
mod avx512;
mod sse2;

use super::flush::{FlushInstr, flush_range};
use super::{CACHE_LINE, CacheFns, NT_THRESHOLD};
use crate::cpu::CpuFeatures;
use core::ptr;

/// Line size the variants stream (x86 cache line).
const LINE: usize = CACHE_LINE;
/// Lines per unrolled loop iteration in the variants.
const UNROLL: usize = 4;
/// How far ahead of the loads the copy loops prefetch the source. The
/// hardware's stream prefetcher stops at every 4 KiB page boundary of a
/// sequential source, so a long copy stalls at each new page; a software
/// prefetch (`prefetcht0`) ahead of the loads runs across it. libpmem's
/// non-temporal copy prefetches one page ahead; two pages ahead ran
/// large_write 5–7 % faster than one on the AVX2 processor of the
/// twenty-first session, and without any prefetch 10–15 % slower
/// (BENCHMARKS-HISTORY.md, change 66); on the AVX-512 processor since,
/// our loops run level with `primitives.c`'s, which has no prefetch.
const PREFETCH_AHEAD: usize = 8192;

/// Starts loading the first [`PREFETCH_AHEAD`] bytes of a copy's source
/// (or all of it, if shorter): what [`prefetch_ahead`] in the loop will
/// not cover.
#[inline(always)]
fn prefetch_head(src: *const u8, len: usize) {
    let mut at = 0;
    while at < len.min(PREFETCH_AHEAD) {
        prefetch(src.wrapping_add(at));
        at += LINE;
    }
}

/// x86's base page size: the unit of the destination's address
/// translations.
const PAGE: usize = 4096;

/// In a copy loop at byte `at` of `len`, one [`PREFETCH_AHEAD`] further
/// on: starts loading the [`UNROLL`] source lines there, and, in the
/// iteration that first reaches a new destination page there, that
/// page's line (if all of it lies in the copy).
///
/// The destination's prefetch is for its address translation, not its
/// data: a streaming store whose page misses the TLB waits for the page
/// walk, and 4 KiB of stores took only about 300 ns on the twenty-first
/// session's processor. Touching one line per page ahead of the stores
/// gets the walk done early, at the cost of reading one line per page
/// that the stores then overwrite. large_write ran 5–18 % faster with it
/// there, depending on the machine's phase (BENCHMARKS-HISTORY.md,
/// change 67); libpmem does not do it.
#[inline(always)]
fn prefetch_ahead(dst: *const u8, src: *const u8, at: usize, len: usize) {
    if at + PREFETCH_AHEAD + UNROLL * LINE <= len {
        let p = src.wrapping_add(at + PREFETCH_AHEAD);
        for k in 0..UNROLL {
            prefetch(p.wrapping_add(k * LINE));
        }
        let q = dst.wrapping_add(at + PREFETCH_AHEAD);
        if (q as usize) % PAGE < UNROLL * LINE {
            prefetch(q);
        }
    }
}

/// `prefetcht0` of the line holding `p`: a hint, which never faults, so
/// `p` need not be dereferenceable.
#[inline(always)]
fn prefetch(p: *const u8) {
    use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch only hints the cache: it reads nothing the
    // program sees and never faults, whatever the address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
}

/// Width of the non-temporal stores used for bulk copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NtKind {
    /// 16-byte `movntdq` (SSE2).
    Sse2,
    /// 32-byte `vmovntdq` (AVX).
    Avx,
    /// 64-byte `vmovntdq` (AVX-512F).
    Avx512,
}

impl NtKind {
    /// The widest kind this CPU supports (libpmem2's order: AVX-512F, AVX,
    /// SSE2).
    pub fn best(f: &CpuFeatures) -> Self {
        if f.avx512f {
            NtKind::Avx512
        } else if f.avx {
            NtKind::Avx
        } else {
            NtKind::Sse2
        }
    }

    /// Every kind this CPU supports, widest first (for tests and
    /// benchmarks that exercise each path).
    pub fn available(f: &CpuFeatures) -> Vec<Self> {
        let mut v = Vec::with_capacity(3);
        if f.avx512f {
            v.push(NtKind::Avx512);
        }
        if f.avx {
            v.push(NtKind::Avx);
        }
        v.push(NtKind::Sse2);
        v
    }

    /// `self` if this CPU supports it, else the widest narrower kind it
    /// does support.
    #[inline]
    pub fn supported(self, f: &CpuFeatures) -> Self {
        match self {
            NtKind::Avx512 if f.avx512f => NtKind::Avx512,
            NtKind::Avx512 | NtKind::Avx if f.avx => NtKind::Avx,
            _ => NtKind::Sse2,
        }
    }

    /// A short name for reports (`sse2`, `avx`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            NtKind::Sse2 => "sse2",
            NtKind::Avx => "avx",
            NtKind::Avx512 => "avx512",
        }
    }
}

/// Copies `len` bytes and starts making them durable (Pmem mode): below
/// [`NT_THRESHOLD`] plain stores then a flush of the lines written, else
/// [`memcpy_nt_nodrain`]. Durable after the next `sfence`.
///
/// # Safety
/// `dst..dst+len` mapped and exclusively accessed; `src` readable for `len`
/// bytes and not overlapping.
#[inline]
pub unsafe fn memcpy_nodrain(c: CacheFns, dst: *mut u8, src: *const u8, len: usize) {
    if len < NT_THRESHOLD {
        // SAFETY: caller's contract.
        unsafe {
            ptr::copy_nonoverlapping(src, dst, len);
            flush_range(c.flush, dst, len);
        }
    } else {
        // SAFETY: caller's contract.
        unsafe { memcpy_nt_nodrain(c, dst, src, len) }
    }
}

/// Fills `len` bytes and starts making them durable (Pmem mode), choosing
/// the path by length as [`memcpy_nodrain`] does.
///
/// # Safety
/// `dst..dst+len` mapped and exclusively accessed.
#[inline]
pub unsafe fn memset_nodrain(c: CacheFns, dst: *mut u8, byte: u8, len: usize) {
    if len < NT_THRESHOLD {
        // SAFETY: caller's contract.
        unsafe {
            ptr::write_bytes(dst, byte, len);
            flush_range(c.flush, dst, len);
        }
    } else {
        // SAFETY: caller's contract.
        unsafe { memset_nt_nodrain(c, dst, byte, len) }
    }
}

/// Copy for eADR platforms: no flush needed, durable after the fence.
/// Long copies still stream, to keep the copied data out of the cache.
///
/// # Safety
/// As for [`memcpy_nodrain`].
#[inline]
pub unsafe fn memcpy_eadr(c: CacheFns, dst: *mut u8, src: *const u8, len: usize) {
    if len < NT_THRESHOLD {
        // SAFETY: caller's contract.
        unsafe { ptr::copy_nonoverlapping(src, dst, len) }
    } else {
        // SAFETY: caller's contract.
        unsafe { copy_split(c.nt, None, dst, src, len) }
    }
}

/// Fill for eADR platforms.
///
/// # Safety
/// As for [`memset_nodrain`].
#[inline]
pub unsafe fn memset_eadr(c: CacheFns, dst: *mut u8, byte: u8, len: usize) {
    if len < NT_THRESHOLD {
        // SAFETY: caller's contract.
        unsafe { ptr::write_bytes(dst, byte, len) }
    } else {
        // SAFETY: caller's contract.
        unsafe { fill_split(c.nt, None, dst, byte, len) }
    }
}

/// The streaming path of [`memcpy_nodrain`] whatever the length: the
/// aligned middle streamed with `c.nt`, the unaligned head and tail copied
/// and flushed with `c.flush`. Exposed for benchmarks that measure where
/// streaming starts to pay ([`NT_THRESHOLD`]).
///
/// # Safety
/// As for [`memcpy_nodrain`].
pub unsafe fn memcpy_nt_nodrain(c: CacheFns, dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: caller's contract.
    unsafe { copy_split(c.nt, Some(c.flush), dst, src, len) }
}

/// Streams `len` bytes (a multiple of 8) to an 8-aligned `dst` with 8-byte
/// non-temporal stores (`movnti`, baseline on x86-64): no read for
/// ownership of the destination lines and no flush needed, durable after
/// the next fence. For small records written once and not read back (log
/// entries), whose lines a previous flush may have evicted.
///
/// # Safety
/// `dst..dst+len` mapped and exclusively accessed, 8-aligned; `src` holds
/// `len` bytes; `len` is a multiple of 8.
#[inline]
pub unsafe fn stream_words(dst: *mut u8, src: *const u8, len: usize) {
    use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si64, _mm_stream_si128};
    debug_assert!((dst as usize).is_multiple_of(8) && len.is_multiple_of(8));
    // A word to reach 16-byte alignment, then 16-byte stores (SSE2,
    // baseline), then the last word: half the stores of `movnti` alone.
    let mut i = 0;
    if !(dst as usize).is_multiple_of(16) && len >= 8 {
        // SAFETY: caller's contract: the first word lies inside both
        // ranges and `dst` is 8-aligned; `src` may be unaligned.
        unsafe { _mm_stream_si64(dst.cast::<i64>(), src.cast::<i64>().read_unaligned()) };
        i = 8;
    }
    while i + 16 <= len {
        // SAFETY: bytes `i..i + 16` lie inside both ranges; `dst + i` is
        // 16-aligned (after the head word); the load may be unaligned.
        unsafe {
            _mm_stream_si128(
                dst.add(i).cast::<__m128i>(),
                _mm_loadu_si128(src.add(i).cast::<__m128i>()),
            )
        };
        i += 16;
    }
    if i < len {
        // SAFETY: the last word lies inside both ranges (`len - i == 8`,
        // since `len` and `i` are multiples of 8) and is 8-aligned.
        unsafe {
            _mm_stream_si64(
                dst.add(i).cast::<i64>(),
                src.add(i).cast::<i64>().read_unaligned(),
            )
        };
    }
}

/// Writes the `len` bytes at the 8-aligned `p` (a multiple of 8) back in
/// place with non-temporal stores of their own current values: the same
/// durability as flushing their lines, through the write-combining path
/// instead of a write-back. See `Persister::restream`.
///
/// # Safety
/// `p..p+len` mapped, 8-aligned, `len` a multiple of 8; no reference to
/// those bytes alive and no other thread writing them during the call (a
/// store between the load of a word and its streamed copy would be lost).
#[inline]
pub unsafe fn restream_words(p: *mut u8, len: usize) {
    // SAFETY: `stream_words` with the destination as its own source: it
    // loads each word or 16-byte pair before it stores the same bytes, and
    // the pieces it takes are disjoint and in order, so every load reads
    // the value in place, never one the loop streamed; the rest is the
    // caller's contract (mapped, aligned, exclusively held).
    unsafe { stream_words(p, p, len) }
}

/// The streaming path of [`memset_nodrain`] whatever the length.
///
/// # Safety
/// As for [`memset_nodrain`].
pub unsafe fn memset_nt_nodrain(c: CacheFns, dst: *mut u8, byte: u8, len: usize) {
    // SAFETY: caller's contract.
    unsafe { fill_split(c.nt, Some(c.flush), dst, byte, len) }
}

/// Splits `dst..dst+len` into (head, middle, tail) lengths: the head runs to
/// the first line boundary (or the end), the middle is whole lines.
#[inline]
fn split(dst: *const u8, len: usize) -> (usize, usize, usize) {
    let head = ((LINE - (dst as usize & (LINE - 1))) & (LINE - 1)).min(len);
    let mid = (len - head) & !(LINE - 1);
    (head, mid, len - head - mid)
}

/// Head and tail with plain stores (flushed if `flush` is set), middle
/// streamed with `kind`.
///
/// # Safety
/// As for [`memcpy_nodrain`].
unsafe fn copy_split(
    kind: NtKind,
    flush: Option<FlushInstr>,
    dst: *mut u8,
    src: *const u8,
    len: usize,
) {
    let (head, mid, tail) = split(dst, len);
    // SAFETY: head + mid + tail == len, so every sub-range lies in the
    // caller's dst and src ranges; the middle starts on a line boundary and
    // is whole lines, as the variants require; each variant runs only if
    // `supported` found its instruction set.
    unsafe {
        if head != 0 {
            ptr::copy_nonoverlapping(src, dst, head);
            if let Some(f) = flush {
                flush_range(f, dst, head);
            }
        }
        let (md, ms) = (dst.add(head), src.add(head));
        if mid != 0 {
            match kind.supported(crate::cpu::features()) {
                NtKind::Avx512 => avx512::copy(md, ms, mid),
                NtKind::Avx => avx::copy(md, ms, mid),
                NtKind::Sse2 => sse2::copy(md, ms, mid),
            }
        }
        if tail != 0 {
            let (td, ts) = (md.add(mid), ms.add(mid));
            ptr::copy_nonoverlapping(ts, td, tail);
            if let Some(f) = flush {
                flush_range(f, td, tail);
            }
        }
    }
}

/// Fill counterpart of [`copy_split`].
///
/// # Safety
/// As for [`memset_nodrain`].
unsafe fn fill_split(kind: NtKind, flush: Option<FlushInstr>, dst: *mut u8, byte: u8, len: usize) {
    let (head, mid, tail) = split(dst, len);
    // SAFETY: as in `copy_split`.
    unsafe {
        if head != 0 {
            ptr::write_bytes(dst, byte, head);
            if let Some(f) = flush {
                flush_range(f, dst, head);
            }
        }
        let md = dst.add(head);
        if mid != 0 {
            match kind.supported(crate::cpu::features()) {
                NtKind::Avx512 => avx512::fill(md, byte, mid),
                NtKind::Avx => avx::fill(md, byte, mid),
                NtKind::Sse2 => sse2::fill(md, byte, mid),
            }
        }
        if tail != 0 {
            let td = md.add(mid);
            ptr::write_bytes(td, byte, tail);
            if let Some(f) = flush {
                flush_range(f, td, tail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_words_copies_exactly_the_words() {
        let src: Vec<u8> = (0..512).map(|i| (i * 7 + 1) as u8).collect();
        for at in (0..128).step_by(8) {
            for len in (0..=256).step_by(8) {
                let mut buf = vec![u64::from_ne_bytes([0xee; 8]); 64];
                let base = buf.as_mut_ptr() as *mut u8;
                // SAFETY: `at + len <= 384 < 512`, the u64 buffer's byte
                // size; `base + at` is 8-aligned; `src` has 512 bytes.
                unsafe { stream_words(base.add(at), src.as_ptr().add(3), len) };
                super::super::flush::sfence();
                // SAFETY: reading back the 512 bytes of `buf`.
                let got = unsafe { std::slice::from_raw_parts(base, 512) };
                assert_eq!(&got[at..at + len], &src[3..3 + len]);
                assert!(got[..at].iter().all(|&b| b == 0xee));
                assert!(got[at + len..].iter().all(|&b| b == 0xee));
            }
        }
    }

    #[test]
    fn split_covers_range() {
        for a in 0..64usize {
            for len in [0, 1, 63, 64, 65, 127, 128, 200, 256, 300] {
                let p = (4096 + a) as *const u8;
                let (h, m, t) = split(p, len);
                assert_eq!(h + m + t, len);
                assert!(h < 64 && t < 64 && m % 64 == 0);
                if m > 0 {
                    assert_eq!((4096 + a + h) % 64, 0);
                }
            }
        }
    }

    #[test]
    fn best_and_supported() {
        let none = CpuFeatures::default();
        assert_eq!(NtKind::best(&none), NtKind::Sse2);
        assert_eq!(NtKind::Avx512.supported(&none), NtKind::Sse2);
        let avx = CpuFeatures { avx: true, ..none };
        assert_eq!(NtKind::best(&avx), NtKind::Avx);
        assert_eq!(NtKind::Avx512.supported(&avx), NtKind::Avx);
        assert_eq!(NtKind::available(&avx), vec![NtKind::Avx, NtKind::Sse2]);
        let all = CpuFeatures {
            avx512f: true,
            ..avx
        };
        assert_eq!(NtKind::best(&all), NtKind::Avx512);
    }
}
