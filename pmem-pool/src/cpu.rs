//! CPU feature detection for the persistence primitives, read once.
//!
//! `std::is_x86_feature_detected!` does not know `clwb` or `clflushopt`, so
//! CPUID leaf 7 (sub-leaf 0) is read directly: EBX bit 24 is CLWB, bit 23
//! CLFLUSHOPT, bit 16 AVX512F (Intel SDM vol. 2A, CPUID, table 3-8).
//!
//! As in libpmem, the environment can switch features *off* (never on, so a
//! setting can never make the library execute an instruction the CPU lacks),
//! which lets tests and benchmarks force each path: `PMEM_NO_CLWB=1`,
//! `PMEM_NO_CLFLUSHOPT=1`, `PMEM_AVX=0`, `PMEM_AVX512F=0`.

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

/// The features the persistence primitives may use: [`hardware`] minus
/// those switched off in the environment (read on first call).
pub fn features() -> &'static CpuFeatures {
    static F: OnceLock<CpuFeatures> = OnceLock::new();
    F.get_or_init(|| with_env_overrides(*hardware(), |k| std::env::var(k).ok()))
}

/// What the CPU (and OS) support, ignoring the environment.
pub fn hardware() -> &'static CpuFeatures {
    static F: OnceLock<CpuFeatures> = OnceLock::new();
    F.get_or_init(detect)
}

/// Applies libpmem's switches: `PMEM_NO_CLWB=1`, `PMEM_NO_CLFLUSHOPT=1`,
/// `PMEM_AVX=0`, `PMEM_AVX512F=0` each turn one feature off.
fn with_env_overrides(mut f: CpuFeatures, var: impl Fn(&str) -> Option<String>) -> CpuFeatures {
    let is = |k: &str, v: &str| var(k).is_some_and(|x| x.trim() == v);
    if is("PMEM_NO_CLWB", "1") {
        f.clwb = false;
    }
    if is("PMEM_NO_CLFLUSHOPT", "1") {
        f.clflushopt = false;
    }
    if is("PMEM_AVX", "0") {
        f.avx = false;
    }
    if is("PMEM_AVX512F", "0") {
        f.avx512f = false;
    }
    f
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_switches_only_turn_features_off() {
        let all = CpuFeatures {
            clwb: true,
            clflushopt: true,
            avx512f: true,
            avx: true,
            sse2: true,
        };
        let env = |k: &str| match k {
            "PMEM_NO_CLWB" => Some("1".to_string()),
            "PMEM_AVX512F" => Some("0".to_string()),
            "PMEM_AVX" => Some("1".to_string()),
            _ => None,
        };
        let f = with_env_overrides(all, env);
        assert!(!f.clwb && f.clflushopt && !f.avx512f && f.avx);
        let none = CpuFeatures::default();
        let on = |_: &str| Some("1".to_string());
        assert_eq!(with_env_overrides(none, on), none);
    }

    #[test]
    fn detected_features_are_consistent() {
        let h = hardware();
        assert!(h.sse2);
        // AVX-512F implies AVX on every CPU that has it.
        assert!(!h.avx512f || h.avx);
        let f = features();
        assert!(!f.clwb || h.clwb);
        assert!(!f.avx512f || h.avx512f);
    }
}
