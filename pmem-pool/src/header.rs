//! The on-media pool header (primary at 0x0000, backup at 0x1000) and the
//! mutable pool state block (0x2000).
//!
//! TODO(H3): the #[repr(C)] structs, checksums, encode/decode, validation.

/// Longest layout name, in bytes of UTF-8 (libpmemobj allows 1 KiB too).
pub const LAYOUT_MAX: usize = 1024;

/// The decoded, validated header of an open pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Major format version.
    pub version: u32,
    /// Compatible feature flags (unknown ones are ignored).
    pub compat: u64,
    /// Incompatible feature flags (unknown ones refuse the open).
    pub incompat: u64,
    /// Read-only-compatible feature flags (unknown ones allow read-only).
    pub ro_compat: u64,
    /// The layout name given at create.
    pub layout: String,
    /// The pool's identity.
    pub uuid: [u8; 16],
    /// Pool size in bytes.
    pub size: u64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Offset of the first lane.
    pub lanes_offset: u64,
    /// Number of lanes.
    pub lane_count: u32,
    /// Bytes per lane.
    pub lane_size: u32,
    /// Offset of the heap region.
    pub heap_offset: u64,
    /// Size of the heap region.
    pub heap_size: u64,
}
