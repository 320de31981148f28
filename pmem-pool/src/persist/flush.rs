//! Cache-line flush instructions and the store fence.
//!
//! One loop per instruction, each compiled with the instruction's target
//! feature, chosen once per call by a `match` (never per line). The
//! instruction is picked once per pool from CPUID ([`FlushInstr::best`]);
//! [`flush_range`] still checks it against the detected features, so a
//! hand-built [`FlushInstr`] naming an instruction this CPU lacks degrades to
//! the next one it has instead of faulting.
//!
//! # Safety
//! The flush instructions read no data and write none; their only
//! precondition is that the address is mapped (a fault otherwise, as for a
//! load). `clwb` and `clflushopt` are weakly ordered: only the next `sfence`
//! ([`sfence`]) orders and completes them. `clflush` is ordered with respect
//! to stores and needs no fence, but one is harmless.

use crate::cpu::CpuFeatures;
use crate::persist::CACHE_LINE;

use core::arch::{asm, x86_64::_mm_clflush};

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
    /// The best instruction available: clwb, else clflushopt, else clflush
    /// (the order of libpmem2's `pmem2_arch_init`; `clflush` is part of
    /// x86-64 itself).
    pub fn best(f: &CpuFeatures) -> Self {
        if f.clwb {
            FlushInstr::Clwb
        } else if f.clflushopt {
            FlushInstr::Clflushopt
        } else {
            FlushInstr::Clflush
        }
    }

    /// Every instruction this CPU supports, best first (for tests and
    /// benchmarks that exercise each path).
    pub fn available(f: &CpuFeatures) -> Vec<Self> {
        let mut v = Vec::with_capacity(3);
        if f.clwb {
            v.push(FlushInstr::Clwb);
        }
        if f.clflushopt {
            v.push(FlushInstr::Clflushopt);
        }
        v.push(FlushInstr::Clflush);
        v
    }

    /// `self` if this CPU has it, else the best instruction it does have
    /// among the weaker ones.
    #[inline]
    pub fn supported(self, f: &CpuFeatures) -> Self {
        match self {
            FlushInstr::Clwb if f.clwb => FlushInstr::Clwb,
            FlushInstr::Clwb | FlushInstr::Clflushopt if f.clflushopt => FlushInstr::Clflushopt,
            _ => FlushInstr::Clflush,
        }
    }

    /// The instruction's mnemonic.
    pub fn name(self) -> &'static str {
        match self {
            FlushInstr::Clwb => "clwb",
            FlushInstr::Clflushopt => "clflushopt",
            FlushInstr::Clflush => "clflush",
        }
    }
}

/// Flushes every cache line overlapping `addr..addr+len` (nothing when `len`
/// is 0). Not ordered: follow with [`sfence`] before relying on durability.
///
/// If `instr` is not supported by this CPU, the best supported weaker
/// instruction is used instead (see [`FlushInstr::supported`]).
///
/// # Safety
/// The range must be mapped (readable) for the whole call.
#[inline]
pub unsafe fn flush_range(instr: FlushInstr, addr: *const u8, len: usize) {
    // SAFETY: `supported` returns an instruction this CPU has; the range
    // is mapped (caller).
    unsafe { flush_range_unchecked(instr.supported(crate::cpu::features()), addr, len) }
}

/// [`flush_range`] without the feature check, for callers whose `instr`
/// came from [`FlushInstr::best`] or [`FlushInstr::supported`] of
/// [`crate::cpu::features`] (a persister's, picked when it was built).
/// Small enough to inline into every flush of the transaction path.
///
/// # Safety
/// As for [`flush_range`], and this CPU has `instr`.
#[inline]
pub(crate) unsafe fn flush_range_unchecked(instr: FlushInstr, addr: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    // Whole lines: from the line holding the first byte up to, not
    // including, the first line past the last byte. Working on addresses
    // keeps the pointer arithmetic inside the caller's range.
    let start = addr as usize & !(CACHE_LINE - 1);
    let end = (addr as usize).saturating_add(len);
    let first = addr.wrapping_sub(addr as usize - start);
    let lines = (end - start).div_ceil(CACHE_LINE);
    // SAFETY: the lines overlap the mapped range the caller vouched for (a
    // line is never split across pages, so its first byte is mapped when
    // any of its bytes is); the CPU has `instr` (caller).
    unsafe { flush_lines(instr, first, lines) }
}

/// [`flush_range_unchecked`] of the one line holding `addr`.
///
/// # Safety
/// `addr` lies in a mapped range, and this CPU has `instr`.
#[inline]
pub(crate) unsafe fn flush_line_unchecked(instr: FlushInstr, addr: *const u8) {
    let first = addr.wrapping_sub(addr as usize & (CACHE_LINE - 1));
    // SAFETY: the line holds `addr`, which is mapped, so the whole line is
    // (a line never crosses a page); the CPU has `instr` (caller).
    unsafe { flush_lines(instr, first, 1) }
}

/// `instr` of `lines` lines from the line-aligned `first`.
///
/// # Safety
/// Every line is mapped, and this CPU has `instr`.
#[inline]
unsafe fn flush_lines(instr: FlushInstr, first: *const u8, lines: usize) {
    match instr {
        // SAFETY: the CPU has clwb and the lines are mapped (caller).
        FlushInstr::Clwb => unsafe { clwb_lines(first, lines) },
        // SAFETY: as above, for clflushopt.
        FlushInstr::Clflushopt => unsafe { clflushopt_lines(first, lines) },
        // SAFETY: clflush is baseline x86-64; the lines are mapped (caller).
        FlushInstr::Clflush => unsafe { clflush_lines(first, lines) },
    }
}

// `_mm_clwb` and `_mm_clflushopt` are not in stable `core::arch` (nor are
// the `clwb`/`clflushopt` target features), so these two use inline
// assembly. `readonly` (not `nomem`) tells the compiler the instruction
// reads the line: earlier stores to it are emitted before it, and it is
// never removed or hoisted above them. Neither instruction touches the
// stack or the flags.

/// `clwb` of `lines` lines from the line-aligned `p`.
///
/// # Safety
/// The CPU has clwb and every line is mapped.
#[inline]
unsafe fn clwb_lines(p: *const u8, lines: usize) {
    for i in 0..lines {
        // SAFETY: line i is mapped (caller) and clwb exists (caller); clwb
        // changes no memory contents, register or flag.
        unsafe {
            asm!("clwb [{0}]", in(reg) p.wrapping_add(i * CACHE_LINE),
                 options(readonly, nostack, preserves_flags))
        };
    }
}

/// `clflushopt` of `lines` lines from the line-aligned `p`.
///
/// # Safety
/// The CPU has clflushopt and every line is mapped.
#[inline]
unsafe fn clflushopt_lines(p: *const u8, lines: usize) {
    for i in 0..lines {
        // SAFETY: as for clwb, with clflushopt (which exists: caller).
        unsafe {
            asm!("clflushopt [{0}]", in(reg) p.wrapping_add(i * CACHE_LINE),
                 options(readonly, nostack, preserves_flags))
        };
    }
}

/// `clflush` of `lines` lines from the line-aligned `p`.
///
/// # Safety
/// Every line is mapped.
#[inline]
unsafe fn clflush_lines(p: *const u8, lines: usize) {
    for i in 0..lines {
        // SAFETY: line i is mapped (caller); clflush (SSE2) is baseline.
        unsafe { _mm_clflush(p.wrapping_add(i * CACHE_LINE)) };
    }
}

/// Load fence: no later instruction starts before every earlier one,
/// loads included, has completed locally. Flushes cannot pass it, so a
/// flush after it writes back at least what the loads before it saw.
#[inline]
pub fn lfence() {
    // SAFETY: lfence has no memory-safety preconditions.
    unsafe { std::arch::x86_64::_mm_lfence() }
}

/// Store fence: orders and completes earlier flushes and non-temporal stores.
#[inline]
pub fn sfence() {
    // SAFETY: sfence has no memory-safety preconditions.
    unsafe { std::arch::x86_64::_mm_sfence() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_prefers_clwb_then_clflushopt() {
        let mut f = CpuFeatures {
            clwb: true,
            clflushopt: true,
            ..Default::default()
        };
        assert_eq!(FlushInstr::best(&f), FlushInstr::Clwb);
        f.clwb = false;
        assert_eq!(FlushInstr::best(&f), FlushInstr::Clflushopt);
        f.clflushopt = false;
        assert_eq!(FlushInstr::best(&f), FlushInstr::Clflush);
    }

    #[test]
    fn unsupported_instr_degrades() {
        let f = CpuFeatures {
            clflushopt: true,
            ..Default::default()
        };
        assert_eq!(FlushInstr::Clwb.supported(&f), FlushInstr::Clflushopt);
        let none = CpuFeatures::default();
        assert_eq!(FlushInstr::Clwb.supported(&none), FlushInstr::Clflush);
        assert_eq!(FlushInstr::Clflushopt.supported(&none), FlushInstr::Clflush);
        assert_eq!(FlushInstr::available(&none), vec![FlushInstr::Clflush]);
    }

    #[test]
    fn flush_every_instr_keeps_content() {
        // Flushing must never change memory; run each instruction over
        // ranges that start and end mid-line, and over a zero length.
        let mut buf: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
        let want = buf.clone();
        for instr in FlushInstr::available(crate::cpu::features()) {
            for (off, len) in [(0, 0), (0, 1), (63, 2), (5, 4096), (1, 8191), (0, 8192)] {
                // SAFETY: off..off+len lies inside buf.
                unsafe { flush_range(instr, buf.as_mut_ptr().add(off), len) };
                sfence();
            }
        }
        assert_eq!(buf, want);
    }
}
