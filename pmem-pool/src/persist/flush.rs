//! Cache-line flush instructions and the store fence.
//!
//! TODO(H1): replace this placeholder with the real per-instruction loops.

use crate::cpu::CpuFeatures;

/// Which instruction writes a dirty line back to the persistence domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushInstr {
    /// `clwb` (keeps the line cached).
    Clwb,
    /// `clflushopt` (invalidates the line).
    Clflushopt,
    /// `clflush` (invalidates, serialising; no fence needed after it).
    Clflush,
}

impl FlushInstr {
    /// The best instruction available: clwb, else clflushopt, else clflush.
    pub fn best(f: &CpuFeatures) -> Self {
        if f.clwb {
            FlushInstr::Clwb
        } else if f.clflushopt {
            FlushInstr::Clflushopt
        } else {
            FlushInstr::Clflush
        }
    }
}

/// Flushes every cache line overlapping `addr..addr+len`.
///
/// # Safety
/// The range must be mapped.
pub unsafe fn flush_range(instr: FlushInstr, addr: *const u8, len: usize) {
    let _ = (instr, addr, len);
    todo!("H1")
}

/// Store fence: orders and completes earlier flushes and non-temporal stores.
#[inline]
pub fn sfence() {
    // SAFETY: sfence has no memory-safety preconditions.
    unsafe { std::arch::x86_64::_mm_sfence() }
}
