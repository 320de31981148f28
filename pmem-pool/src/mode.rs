//! Persistence modes: how a store in the mapping becomes durable.
//!
//! The mode is chosen once per open pool (see `DESIGN.md`): an explicit
//! [`PoolOptions::mode`](crate::PoolOptions::mode) wins, then the environment
//! (`PMEM_MODE`, then PMDK's `PMEM_IS_PMEM_FORCE`), then detection from the
//! mapping (device-dax or a successful `MAP_SYNC` means [`Mode::Pmem`], a
//! region whose persistence domain is the CPU cache means [`Mode::Eadr`],
//! anything else [`Mode::Msync`]).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// How the pool's stores are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Real persistent memory: `clwb` (or `clflushopt`/`clflush`) per dirty
    /// line, `sfence` to drain, non-temporal stores for bulk copies.
    Pmem,
    /// Persistent memory whose persistence domain includes the CPU caches:
    /// no flushes, only the ordering fence.
    Eadr,
    /// Legacy fallback for files not on DAX: flushes record dirty pages,
    /// drain `msync`s exactly those pages.
    Msync,
    /// Simulated persistence domain for crash tests (feature `sim`): the
    /// persisted image is kept beside the mapping.
    Sim,
}

impl Mode {
    /// The lower-case name used by `PMEM_MODE` and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pmem => "pmem",
            Mode::Eadr => "eadr",
            Mode::Msync => "msync",
            Mode::Sim => "sim",
        }
    }

    /// Parses a mode name as `PMEM_MODE` and `--mode` take it.
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pmem" => Some(Mode::Pmem),
            "eadr" => Some(Mode::Eadr),
            "msync" => Some(Mode::Msync),
            "sim" => Some(Mode::Sim),
            _ => None,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The mode a pool runs in, and why it was chosen (printed by `pmem info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeChoice {
    /// The mode in force.
    pub mode: Mode,
    /// A sentence saying why ("MAP_SYNC mapping succeeded", "PMEM_MODE=msync").
    pub reason: String,
}

/// A mode forced by the environment, if any: `PMEM_MODE` first, then PMDK's
/// `PMEM_IS_PMEM_FORCE` (1 means Pmem, 0 means Msync).
pub(crate) fn mode_from_env() -> Result<Option<ModeChoice>> {
    mode_from_vars(
        std::env::var("PMEM_MODE").ok().as_deref(),
        std::env::var("PMEM_IS_PMEM_FORCE").ok().as_deref(),
    )
}

fn mode_from_vars(pmem_mode: Option<&str>, force: Option<&str>) -> Result<Option<ModeChoice>> {
    if let Some(v) = pmem_mode.filter(|v| !v.trim().is_empty()) {
        let mode = Mode::parse(v).ok_or_else(|| Error::BadEnv {
            var: "PMEM_MODE",
            value: v.to_string(),
        })?;
        return Ok(Some(ModeChoice {
            mode,
            reason: format!("forced by PMEM_MODE={}", mode.name()),
        }));
    }
    if let Some(v) = force.filter(|v| !v.trim().is_empty()) {
        let mode = match v.trim() {
            "1" => Mode::Pmem,
            "0" => Mode::Msync,
            _ => {
                return Err(Error::BadEnv {
                    var: "PMEM_IS_PMEM_FORCE",
                    value: v.to_string(),
                });
            }
        };
        return Ok(Some(ModeChoice {
            mode,
            reason: format!("forced by PMEM_IS_PMEM_FORCE={}", v.trim()),
        }));
    }
    Ok(None)
}

/// Major and minor numbers of a `dev_t` (glibc's encoding).
pub(crate) fn dev_major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x00ff);
    (major, minor)
}

/// The sysfs directory of a character device (`/sys/dev/char/MAJ:MIN`).
pub(crate) fn char_sysfs(rdev: u64) -> PathBuf {
    let (ma, mi) = dev_major_minor(rdev);
    PathBuf::from(format!("/sys/dev/char/{ma}:{mi}"))
}

/// Whether the character device `rdev` is a device-dax device: its sysfs
/// subsystem is `dax` (`/sys/class/dax` or `/sys/bus/dax`).
pub(crate) fn is_device_dax(rdev: u64) -> bool {
    let sys = char_sysfs(rdev);
    match std::fs::read_link(sys.join("subsystem")) {
        Ok(target) => target.file_name().is_some_and(|n| n == "dax"),
        Err(_) => false,
    }
}

/// The mapping alignment of a device-dax device (its sysfs `align`), if
/// the kernel reports one.
pub(crate) fn devdax_align(rdev: u64) -> Option<u64> {
    let t = std::fs::read_to_string(char_sysfs(rdev).join("align")).ok()?;
    let t = t.trim();
    t.strip_prefix("0x")
        .map_or_else(|| t.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        .filter(|&a: &u64| a.is_power_of_two())
}

/// Size in bytes of the device-dax device `rdev`, from sysfs.
pub(crate) fn device_dax_size(rdev: u64) -> Option<u64> {
    let s = std::fs::read_to_string(char_sysfs(rdev).join("size")).ok()?;
    s.trim().parse().ok()
}

/// The nd region's `persistence_domain` above a sysfs device directory:
/// canonicalises it and walks up to the first `regionN` directory.
fn persistence_domain_above(dev_dir: &Path) -> Option<String> {
    let real = std::fs::canonicalize(dev_dir).ok()?;
    for dir in real.ancestors() {
        let is_region = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("region"));
        if is_region {
            let v = std::fs::read_to_string(dir.join("persistence_domain")).ok()?;
            return Some(v.trim().to_string());
        }
    }
    None
}

/// `persistence_domain` of the region behind a file on block device `dev`
/// (the file's `st_dev`), or behind the device-dax device `rdev`.
pub(crate) fn persistence_domain(dev: u64, device_dax: bool) -> Option<String> {
    let (ma, mi) = dev_major_minor(dev);
    let kind = if device_dax { "char" } else { "block" };
    persistence_domain_above(Path::new(&format!("/sys/dev/{kind}/{ma}:{mi}")))
}

/// Upgrades a detected `Pmem` choice to `Eadr` when the platform's
/// persistence domain is the CPU cache.
pub(crate) fn refine_eadr(choice: ModeChoice, dev: u64, device_dax: bool) -> ModeChoice {
    if choice.mode != Mode::Pmem {
        return choice;
    }
    match persistence_domain(dev, device_dax).as_deref() {
        Some("cpu_cache") => ModeChoice {
            mode: Mode::Eadr,
            reason: format!(
                "{}; region persistence_domain is cpu_cache (eADR)",
                choice.reason
            ),
        },
        _ => choice,
    }
}

/// The mode forced by the options or (unless `ignore_env`) the environment.
pub(crate) fn forced_mode(opts: &crate::PoolOptions) -> Result<Option<ModeChoice>> {
    if let Some(mode) = opts.mode {
        return Ok(Some(ModeChoice {
            mode,
            reason: format!("forced by PoolOptions::mode({})", mode.name()),
        }));
    }
    if opts.ignore_env {
        return Ok(None);
    }
    mode_from_env()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_numbers_decode_like_glibc() {
        // makedev(259, 3) and makedev(4095, 1 << 20 | 5); the major's high
        // bits (above 0xfff) are zero here.
        assert_eq!(dev_major_minor((259 << 8) | 3), (259, 3));
        let dev = ((4095u64 & 0xfff) << 8)
            | (((1 << 20) | 5) & 0xff)
            | ((((1u64 << 20) | 5) & !0xff) << 12);
        assert_eq!(dev_major_minor(dev), (4095, (1 << 20) | 5));
    }

    #[test]
    fn options_beat_environment() {
        let o = crate::PoolOptions::new().mode(Mode::Eadr);
        let c = forced_mode(&o).unwrap().unwrap();
        assert_eq!(c.mode, Mode::Eadr);
        assert!(c.reason.contains("PoolOptions"));
        let o = crate::PoolOptions::new().ignore_env(true);
        assert_eq!(forced_mode(&o).unwrap(), None);
    }

    #[test]
    fn non_pmem_is_never_upgraded_to_eadr() {
        let c = ModeChoice {
            mode: Mode::Msync,
            reason: "x".into(),
        };
        assert_eq!(refine_eadr(c.clone(), 0, false), c);
    }

    #[test]
    fn pmem_mode_wins_over_pmdk_force() {
        let c = mode_from_vars(Some("msync"), Some("1")).unwrap().unwrap();
        assert_eq!(c.mode, Mode::Msync);
        assert!(c.reason.contains("PMEM_MODE"));
    }

    #[test]
    fn pmdk_force_maps_to_pmem_and_msync() {
        assert_eq!(
            mode_from_vars(None, Some("1")).unwrap().unwrap().mode,
            Mode::Pmem
        );
        assert_eq!(
            mode_from_vars(None, Some("0")).unwrap().unwrap().mode,
            Mode::Msync
        );
        assert_eq!(mode_from_vars(None, None).unwrap(), None);
        assert_eq!(mode_from_vars(Some(""), None).unwrap(), None);
    }

    #[test]
    fn bad_values_are_typed_errors() {
        assert!(matches!(
            mode_from_vars(Some("fast"), None),
            Err(Error::BadEnv {
                var: "PMEM_MODE",
                ..
            })
        ));
        assert!(matches!(
            mode_from_vars(None, Some("yes")),
            Err(Error::BadEnv {
                var: "PMEM_IS_PMEM_FORCE",
                ..
            })
        ));
    }
}
