//! Persistence modes: how a store in the mapping becomes durable.
//!
//! The mode is chosen once per open pool (see `DESIGN.md`): an explicit
//! [`PoolOptions::mode`](crate::PoolOptions::mode) wins, then the environment
//! (`PMEM_MODE`, then PMDK's `PMEM_IS_PMEM_FORCE`), then detection from the
//! mapping (device-dax or a successful `MAP_SYNC` means [`Mode::Pmem`], a
//! region whose persistence domain is the CPU cache means [`Mode::Eadr`],
//! anything else [`Mode::Msync`]).

use crate::error::{Error, Result};

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

#[cfg(test)]
mod tests {
    use super::*;

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
