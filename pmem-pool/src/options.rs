//! Options for creating and opening pools.

use crate::mode::Mode;

/// How to create or open a pool. `Default` is: mode detected (or taken from
/// the environment), read-write, no pre-faulting.
#[derive(Clone, Debug, Default)]
pub struct PoolOptions {
    pub(crate) mode: Option<Mode>,
    pub(crate) prefault: bool,
    pub(crate) read_only: bool,
    pub(crate) ignore_env: bool,
    pub(crate) lanes: Option<(u32, u32)>,
}

impl PoolOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forces a persistence mode, overriding the environment and detection.
    /// Forcing [`Mode::Pmem`] on a file that is not on persistent memory
    /// is allowed (benchmarks do it on `/dev/shm`) but makes nothing durable
    /// across a power failure there.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Touches every page of the mapping at create/open so that page faults
    /// do not land inside transactions (libpmemobj's `prefault.at_open`).
    pub fn prefault(mut self, yes: bool) -> Self {
        self.prefault = yes;
        self
    }

    /// Opens read-only: a shared lock, a read-only mapping, no recovery
    /// writes and no run-id bump. Used by `pmem info` and `pmem check`.
    pub fn read_only(mut self, yes: bool) -> Self {
        self.read_only = yes;
        self
    }

    /// Ignores `PMEM_MODE` and `PMEM_IS_PMEM_FORCE` (tests that must not be
    /// steered by the caller's environment).
    pub fn ignore_env(mut self, yes: bool) -> Self {
        self.ignore_env = yes;
        self
    }

    /// At create: the number of lanes (transactions that can run at once;
    /// default 256) and the bytes of each (a multiple of 4 KiB up to 1 MiB;
    /// default 4 KiB, of which 3 KiB hold the undo log). Larger lanes let a
    /// single transaction snapshot more bytes. Ignored at open: the pool's
    /// header says.
    pub fn lanes(mut self, count: u32, size: u32) -> Self {
        self.lanes = Some((count, size));
        self
    }

    /// The lane geometry a create would use.
    pub fn lane_geometry(&self) -> (u32, u32) {
        self.lanes
            .unwrap_or((crate::layout::DEFAULT_LANE_COUNT, crate::layout::LANE_SIZE))
    }

    /// The forced mode, if any.
    pub fn forced_mode(&self) -> Option<Mode> {
        self.mode
    }
}
