//! CPU feature detection for the persistence primitives, read once.
//!
//! `std::is_x86_feature_detected!` does not know `clwb` or `clflushopt`, so
//! CPUID leaf 7 (sub-leaf 0) is read directly: EBX bit 24 is CLWB, bit 23
//! CLFLUSHOPT, bit 16 AVX512F (Intel SDM vol. 2A, CPUID, table 3-8).

use std::sync::OnceLock;

/// What this CPU offers for flushing and non-temporal stores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// `clwb`: write back a line and keep it cached.
    pub clwb: bool,
    /// `clflushopt`: weakly-ordered flush-and-invalidate.
    pub clflushopt: bool,
    /// AVX-512 Foundation (64-byte non-temporal stores), usable by the OS.
    pub avx512f: bool,
    /// AVX (32-byte non-temporal stores), usable by the OS.
    pub avx: bool,
    /// SSE2 (16-byte non-temporal stores); always true on x86-64.
    pub sse2: bool,
}

/// The features of this CPU, detected on first call.
pub fn features() -> &'static CpuFeatures {
    static F: OnceLock<CpuFeatures> = OnceLock::new();
    F.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> CpuFeatures {
    use std::arch::x86_64::__cpuid_count;
    // Leaf 0 reports the highest supported leaf; check it before leaf 7.
    let max_leaf = __cpuid_count(0, 0).eax;
    let ebx7 = if max_leaf >= 7 {
        __cpuid_count(7, 0).ebx
    } else {
        0
    };
    CpuFeatures {
        clwb: ebx7 & (1 << 24) != 0,
        clflushopt: ebx7 & (1 << 23) != 0,
        // Detected through std so that OS support (XCR0) is checked too.
        avx512f: std::is_x86_feature_detected!("avx512f"),
        avx: std::is_x86_feature_detected!("avx"),
        sse2: true,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> CpuFeatures {
    CpuFeatures::default()
}
