//! Non-temporal copy and fill.
//!
//! TODO(H1): replace this placeholder with SSE2/AVX/AVX-512 streaming stores.

use super::CacheFns;
use crate::cpu::CpuFeatures;

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
    /// The widest kind this CPU supports.
    pub fn best(f: &CpuFeatures) -> Self {
        if f.avx512f {
            NtKind::Avx512
        } else if f.avx {
            NtKind::Avx
        } else {
            NtKind::Sse2
        }
    }
}

/// Copies `len` bytes and starts making them durable (Pmem mode).
///
/// # Safety
/// `dst..dst+len` mapped and exclusively accessed; `src` readable for `len`
/// bytes and not overlapping.
pub unsafe fn memcpy_nodrain(c: CacheFns, dst: *mut u8, src: *const u8, len: usize) {
    let _ = (c, dst, src, len);
    todo!("H1")
}

/// Fills `len` bytes and starts making them durable (Pmem mode).
///
/// # Safety
/// `dst..dst+len` mapped and exclusively accessed.
pub unsafe fn memset_nodrain(c: CacheFns, dst: *mut u8, byte: u8, len: usize) {
    let _ = (c, dst, byte, len);
    todo!("H1")
}

/// Copy for eADR platforms: no flush needed, durable after the fence.
///
/// # Safety
/// As for [`memcpy_nodrain`].
pub unsafe fn memcpy_eadr(c: CacheFns, dst: *mut u8, src: *const u8, len: usize) {
    let _ = (c, dst, src, len);
    todo!("H1")
}

/// Fill for eADR platforms.
///
/// # Safety
/// As for [`memset_nodrain`].
pub unsafe fn memset_eadr(c: CacheFns, dst: *mut u8, byte: u8, len: usize) {
    let _ = (c, dst, byte, len);
    todo!("H1")
}
