//! SSE2 variant: 16-byte `movntdq` (`_mm_stream_si128`), baseline on x86-64.
//!
//! # Safety
//! Callers pass a 64-byte-aligned `dst` and a whole number of lines; the
//! source may have any alignment (unaligned loads).

use super::{LINE, UNROLL, prefetch_ahead, prefetch_head};
use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_set1_epi8, _mm_stream_si128};

/// Copies `len` bytes (a multiple of 64) from `src` to the 64-byte-aligned
/// `dst` with non-temporal stores. No fence.
///
/// # Safety
/// `dst..dst+len` writable and 64-byte aligned, `len % 64 == 0`, `src`
/// readable for `len` bytes and not overlapping it.
#[target_feature(enable = "sse2")]
pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    debug_assert!((dst as usize).is_multiple_of(LINE) && len.is_multiple_of(LINE));
    let (d, s) = (dst.cast::<__m128i>(), src.cast::<__m128i>());
    let n = len / 16;
    let mut i = 0;
    prefetch_head(src, len);
    // Four lines per iteration, loads before stores (as libpmem2 does).
    while i + UNROLL * 4 <= n {
        prefetch_ahead(dst, src, i * 16, len);
        // SAFETY: i+16 <= n, so every element read and written is in range;
        // stores are 16-byte aligned because dst is 64-byte aligned.
        unsafe {
            let mut r = [_mm_loadu_si128(s.add(i)); 16];
            for (k, v) in r.iter_mut().enumerate().skip(1) {
                *v = _mm_loadu_si128(s.add(i + k));
            }
            for (k, v) in r.iter().enumerate() {
                _mm_stream_si128(d.add(i + k), *v);
            }
        }
        i += UNROLL * 4;
    }
    while i < n {
        // SAFETY: i < n and n is a multiple of 4: a whole line in range.
        unsafe {
            let a = _mm_loadu_si128(s.add(i));
            let b = _mm_loadu_si128(s.add(i + 1));
            let c = _mm_loadu_si128(s.add(i + 2));
            let e = _mm_loadu_si128(s.add(i + 3));
            _mm_stream_si128(d.add(i), a);
            _mm_stream_si128(d.add(i + 1), b);
            _mm_stream_si128(d.add(i + 2), c);
            _mm_stream_si128(d.add(i + 3), e);
        }
        i += 4;
    }
}

/// Fills `len` bytes (a multiple of 64) at the 64-byte-aligned `dst` with
/// `byte` using non-temporal stores. No fence.
///
/// # Safety
/// `dst..dst+len` writable and 64-byte aligned, `len % 64 == 0`.
#[target_feature(enable = "sse2")]
pub(super) unsafe fn fill(dst: *mut u8, byte: u8, len: usize) {
    debug_assert!((dst as usize).is_multiple_of(LINE) && len.is_multiple_of(LINE));
    let v = _mm_set1_epi8(byte as i8);
    let d = dst.cast::<__m128i>();
    for i in 0..len / 16 {
        // SAFETY: element i lies in dst..dst+len and is 16-byte aligned.
        unsafe { _mm_stream_si128(d.add(i), v) };
    }
}
