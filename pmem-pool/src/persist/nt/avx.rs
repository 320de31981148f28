//! AVX variant: 32-byte `vmovntdq` (`_mm256_stream_si256`).
//!
//! # Safety
//! Every function here requires AVX (checked by the dispatcher in
//! `nt/mod.rs` against CPUID and XCR0). Callers pass a 64-byte-aligned `dst`
//! and a whole number of lines; the source may have any alignment.

use super::{LINE, UNROLL};
use core::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_set1_epi8, _mm256_stream_si256};

/// Copies `len` bytes (a multiple of 64) from `src` to the 64-byte-aligned
/// `dst` with non-temporal stores. No fence.
///
/// # Safety
/// The CPU supports AVX; `dst..dst+len` writable and 64-byte aligned,
/// `len % 64 == 0`, `src` readable for `len` bytes and not overlapping it.
#[target_feature(enable = "avx")]
pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    debug_assert!((dst as usize).is_multiple_of(LINE) && len.is_multiple_of(LINE));
    let (d, s) = (dst.cast::<__m256i>(), src.cast::<__m256i>());
    let n = len / 32;
    let mut i = 0;
    // Four lines per iteration, loads before stores (as libpmem2 does).
    while i + UNROLL * 2 <= n {
        // SAFETY: i+8 <= n: every element read and written is in range;
        // stores are 32-byte aligned because dst is 64-byte aligned.
        unsafe {
            let mut r = [_mm256_loadu_si256(s.add(i)); 8];
            for (k, v) in r.iter_mut().enumerate().skip(1) {
                *v = _mm256_loadu_si256(s.add(i + k));
            }
            for (k, v) in r.iter().enumerate() {
                _mm256_stream_si256(d.add(i + k), *v);
            }
        }
        i += UNROLL * 2;
    }
    while i < n {
        // SAFETY: i < n and n is even: a whole line in range.
        unsafe {
            let a = _mm256_loadu_si256(s.add(i));
            let b = _mm256_loadu_si256(s.add(i + 1));
            _mm256_stream_si256(d.add(i), a);
            _mm256_stream_si256(d.add(i + 1), b);
        }
        i += 2;
    }
}

/// Fills `len` bytes (a multiple of 64) at the 64-byte-aligned `dst` with
/// `byte` using non-temporal stores. No fence.
///
/// # Safety
/// The CPU supports AVX; `dst..dst+len` writable and 64-byte aligned,
/// `len % 64 == 0`.
#[target_feature(enable = "avx")]
pub(super) unsafe fn fill(dst: *mut u8, byte: u8, len: usize) {
    debug_assert!((dst as usize).is_multiple_of(LINE) && len.is_multiple_of(LINE));
    let v = _mm256_set1_epi8(byte as i8);
    let d = dst.cast::<__m256i>();
    for i in 0..len / 32 {
        // SAFETY: element i lies in dst..dst+len and is 32-byte aligned.
        unsafe { _mm256_stream_si256(d.add(i), v) };
    }
}
