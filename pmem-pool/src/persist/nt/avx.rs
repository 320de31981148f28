//! AVX variant: 32-byte `vmovntdq` (`_mm256_stream_si256`).
//!
//! # Safety
//! Every function here requires AVX (checked by the dispatcher in
//! `nt/mod.rs` against CPUID and XCR0). Callers pass a 64-byte-aligned `dst`
//! and a whole number of lines; the source may have any alignment.

use super::{LINE, UNROLL, prefetch_ahead, prefetch_head};
use core::arch::x86_64::{
    __m256i, _mm256_load_si256, _mm256_loadu_si256, _mm256_permute2f128_si256, _mm256_set1_epi8,
    _mm256_stream_si256,
};

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
    prefetch_head(src, len);
    if (src as usize) % 32 == 16 && n >= 2 {
        // SAFETY: forwarded; the source is 16 bytes off a 32-byte boundary.
        unsafe { copy_half_shifted(d, src, n) };
        return;
    }
    let mut i = 0;
    // Four lines per iteration, loads before stores (as libpmem2 does).
    while i + UNROLL * 2 <= n {
        prefetch_ahead(dst, src, i * 32, len);
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

/// [`copy`] for a source 16 bytes past a 32-byte boundary (what malloc
/// returns, against a line-aligned destination). A 32-byte load there
/// straddles a cache line every other time, which cost a quarter of the
/// bandwidth on this machine's AMD EPYC. Here every load but the first
/// and the last is aligned: block `i` of the output is the high half of
/// one aligned load and the low half of the next, joined by one
/// `vperm2f128`.
///
/// # Safety
/// AVX; `d` 32-byte aligned with `n` blocks of 32 bytes writable; `src`
/// readable for `32 × n` bytes, `src % 32 == 16`, `n >= 2`.
#[target_feature(enable = "avx")]
unsafe fn copy_half_shifted(d: *mut __m256i, src: *const u8, n: usize) {
    debug_assert!(n >= 2 && (src as usize) % 32 == 16);
    // a(j): the aligned block at src + 16 + 32j, inside the source for
    // j <= n - 2 (it ends at src + 32j + 48 <= src + 32n - 16).
    let a = |j: usize| {
        // SAFETY: j <= n - 2 (callers below), so the block lies in the
        // source; it is 32-byte aligned since src % 32 == 16.
        unsafe { _mm256_load_si256(src.add(16 + 32 * j).cast::<__m256i>()) }
    };
    // SAFETY: the source holds 32n bytes and the destination 32n; block
    // i of the output is src[32i..32i + 32], written to d + i (32-byte
    // aligned), for i < n only; the first and last are unaligned loads.
    unsafe {
        _mm256_stream_si256(d, _mm256_loadu_si256(src.cast::<__m256i>()));
        let mut prev = a(0);
        let mut i = 1;
        if n > 2 {
            // Block 1 on its own too, so that each iteration of the loop
            // below writes four whole lines (blocks 2k to 2k + 7), as the
            // other variants do, instead of half a line at either end.
            let cur = a(1);
            _mm256_stream_si256(d.add(1), _mm256_permute2f128_si256::<0x21>(prev, cur));
            prev = cur;
            i = 2;
        }
        while i + 8 < n {
            prefetch_ahead(d.cast(), src, 32 * i, 32 * n);
            let r: [__m256i; 8] = core::array::from_fn(|k| a(i + k));
            let mut p = prev;
            for (k, cur) in r.iter().enumerate() {
                _mm256_stream_si256(d.add(i + k), _mm256_permute2f128_si256::<0x21>(p, *cur));
                p = *cur;
            }
            prev = p;
            i += 8;
        }
        while i < n - 1 {
            let cur = a(i);
            _mm256_stream_si256(d.add(i), _mm256_permute2f128_si256::<0x21>(prev, cur));
            prev = cur;
            i += 1;
        }
        _mm256_stream_si256(
            d.add(n - 1),
            _mm256_loadu_si256(src.add(32 * (n - 1)).cast::<__m256i>()),
        );
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
