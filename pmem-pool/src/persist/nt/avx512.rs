//! AVX-512F variant: 64-byte `vmovntdq` (`_mm512_stream_si512`), one store
//! per cache line.
//!
//! # Safety
//! Every function here requires AVX-512F (checked by the dispatcher in
//! `nt/mod.rs` against CPUID and XCR0). Callers pass a 64-byte-aligned `dst`
//! and a whole number of lines; the source may have any alignment.

use super::{LINE, UNROLL, prefetch_ahead, prefetch_head};
use core::arch::x86_64::{__m512i, _mm512_loadu_si512, _mm512_set1_epi8, _mm512_stream_si512};

/// Copies `len` bytes (a multiple of 64) from `src` to the 64-byte-aligned
/// `dst` with non-temporal stores. No fence.
///
/// # Safety
/// The CPU supports AVX-512F; `dst..dst+len` writable and 64-byte aligned,
/// `len % 64 == 0`, `src` readable for `len` bytes and not overlapping it.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    debug_assert!((dst as usize).is_multiple_of(LINE) && len.is_multiple_of(LINE));
    let (d, s) = (dst.cast::<__m512i>(), src.cast::<__m512i>());
    let n = len / 64;
    let mut i = 0;
    prefetch_head(src, len);
    // Four lines per iteration, loads before stores (as libpmem2 does).
    while i + UNROLL <= n {
        prefetch_ahead(dst, src, i * 64, len);
        // SAFETY: i+4 <= n: every element read and written is in range;
        // stores are 64-byte aligned because dst is.
        unsafe {
            let a = _mm512_loadu_si512(s.add(i));
            let b = _mm512_loadu_si512(s.add(i + 1));
            let c = _mm512_loadu_si512(s.add(i + 2));
            let e = _mm512_loadu_si512(s.add(i + 3));
            _mm512_stream_si512(d.add(i), a);
            _mm512_stream_si512(d.add(i + 1), b);
            _mm512_stream_si512(d.add(i + 2), c);
            _mm512_stream_si512(d.add(i + 3), e);
        }
        i += UNROLL;
    }
    while i < n {
        // SAFETY: i < n: line i is in range and 64-byte aligned.
        unsafe { _mm512_stream_si512(d.add(i), _mm512_loadu_si512(s.add(i))) };
        i += 1;
    }
}

/// Fills `len` bytes (a multiple of 64) at the 64-byte-aligned `dst` with
/// `byte` using non-temporal stores. No fence.
///
/// # Safety
/// The CPU supports AVX-512F; `dst..dst+len` writable and 64-byte aligned,
/// `len % 64 == 0`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn fill(dst: *mut u8, byte: u8, len: usize) {
    debug_assert!((dst as usize).is_multiple_of(LINE) && len.is_multiple_of(LINE));
    let v = _mm512_set1_epi8(byte as i8);
    let d = dst.cast::<__m512i>();
    for i in 0..len / 64 {
        // SAFETY: line i lies in dst..dst+len and is 64-byte aligned.
        unsafe { _mm512_stream_si512(d.add(i), v) };
    }
}
