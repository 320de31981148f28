//! The on-media pool header (primary at 0x0000, backup at 0x1000) and the
//! mutable pool state block (0x2000).
//!
//! Both blocks are `#[repr(C)]` structs of fixed-width integers whose field
//! offsets are pinned by assertions below and tabled in `FORMAT.md`. They are
//! never read or written by casting the mapping: [`RawHeader::to_bytes`] and
//! [`RawHeader::from_bytes`] copy each field as little-endian bytes at its
//! `offset_of!`, so the code is correct on any host and needs no `unsafe`.

use crate::check::CopyStatus;
use crate::layout::{
    BLOCK_SIZE, HEAP_ALIGN, LANES_OFFSET, MIN_HEAP_SIZE, MIN_POOL_SIZE, STATE_OFFSET,
};
use static_assertions::const_assert_eq;
use std::mem::{offset_of, size_of};

/// Longest layout name, in bytes of UTF-8 (libpmemobj allows 1 KiB too).
pub const LAYOUT_MAX: usize = 1024;

/// The 8-byte magic at offset 0 of both header copies.
pub const MAGIC: [u8; 8] = *b"PMOBJ-RS";
/// The major format version this library writes and reads.
pub const FORMAT_VERSION: u32 = 3;
/// Compatible features this library knows (unknown ones are ignored, so
/// nothing reads this: it completes the table of FORMAT.md).
#[allow(dead_code)]
pub const KNOWN_COMPAT: u64 = 0;
/// Incompatible feature: each lane keeps a copy of its generation in the
/// first word of its undo log area, and its undo log starts 8 bytes later
/// (FORMAT.md, "Lane"). A transaction streams the copy with its first
/// undo entry, so its snapshot makes the lane's previous bump durable
/// without writing back the generation word's line. Set on every pool this
/// library creates; a pool without it keeps the older lane layout.
pub const INCOMPAT_GEN_COPY: u64 = 1;
/// Incompatible features this library knows (unknown ones refuse the open).
pub const KNOWN_INCOMPAT: u64 = INCOMPAT_GEN_COPY;
/// Read-only-compatible features this library knows (unknown ones allow a
/// read-only open only).
pub const KNOWN_RO_COMPAT: u64 = 0;

/// The names of the incompatible feature bits this library knows, as
/// FORMAT.md's feature table spells them.
const INCOMPAT_NAMES: &[(u64, &str)] = &[(INCOMPAT_GEN_COPY, "gen_copy")];

/// PMDK's pool signature prefix ("PMEMOBJ\0", "PMEMBLK\0", ...).
const PMDK_PREFIX: &[u8] = b"PMEM";

/// One header copy as stored (4 KiB). Little-endian on media.
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawHeader {
    /// [`MAGIC`]; written last at create.
    pub magic: [u8; 8],
    /// Major format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Must be zero.
    pub reserved0: u32,
    /// Compatible feature flags.
    pub compat: u64,
    /// Incompatible feature flags.
    pub incompat: u64,
    /// Read-only-compatible feature flags.
    pub ro_compat: u64,
    /// Pool UUID (random, version 4).
    pub uuid: [u8; 16],
    /// Pool size in bytes.
    pub size: u64,
    /// Creation time, ns since the Unix epoch.
    pub created_unix_ns: u64,
    /// Offset of the first lane.
    pub lanes_offset: u64,
    /// Number of lanes.
    pub lane_count: u32,
    /// Bytes per lane.
    pub lane_size: u32,
    /// Offset of the heap.
    pub heap_offset: u64,
    /// Size of the heap.
    pub heap_size: u64,
    /// Bytes of `layout` in use.
    pub layout_len: u32,
    /// Must be zero.
    pub reserved1: u32,
    /// Layout name, UTF-8, zero-padded.
    pub layout: [u8; LAYOUT_MAX],
    /// Must be zero.
    pub reserved2: [u8; RESERVED2_LEN],
    /// CRC-32C ([`crate::crc`]) of bytes `0..CRC_OFFSET`.
    pub crc32: u32,
}

const RESERVED2_LEN: usize = 0xFFC - 0x470;
/// Offset of the checksum: it covers every byte before it.
pub(crate) const CRC_OFFSET: usize = offset_of!(RawHeader, crc32);

const_assert_eq!(size_of::<RawHeader>(), BLOCK_SIZE as usize);
const_assert_eq!(offset_of!(RawHeader, magic), 0x000);
const_assert_eq!(offset_of!(RawHeader, version), 0x008);
const_assert_eq!(offset_of!(RawHeader, reserved0), 0x00C);
const_assert_eq!(offset_of!(RawHeader, compat), 0x010);
const_assert_eq!(offset_of!(RawHeader, incompat), 0x018);
const_assert_eq!(offset_of!(RawHeader, ro_compat), 0x020);
const_assert_eq!(offset_of!(RawHeader, uuid), 0x028);
const_assert_eq!(offset_of!(RawHeader, size), 0x038);
const_assert_eq!(offset_of!(RawHeader, created_unix_ns), 0x040);
const_assert_eq!(offset_of!(RawHeader, lanes_offset), 0x048);
const_assert_eq!(offset_of!(RawHeader, lane_count), 0x050);
const_assert_eq!(offset_of!(RawHeader, lane_size), 0x054);
const_assert_eq!(offset_of!(RawHeader, heap_offset), 0x058);
const_assert_eq!(offset_of!(RawHeader, heap_size), 0x060);
const_assert_eq!(offset_of!(RawHeader, layout_len), 0x068);
const_assert_eq!(offset_of!(RawHeader, reserved1), 0x06C);
const_assert_eq!(offset_of!(RawHeader, layout), 0x070);
const_assert_eq!(offset_of!(RawHeader, reserved2), 0x470);
const_assert_eq!(offset_of!(RawHeader, crc32), 0xFFC);

/// The mutable pool state block at [`STATE_OFFSET`]. Every field is an
/// 8-byte aligned `u64`, updated with single failure-atomic stores; no
/// checksum (see `FORMAT.md`).
#[repr(C)]
pub(crate) struct PoolState {
    /// Bumped and persisted at every read-write open.
    pub run_id: u64,
    /// [`SHUTDOWN_CLEAN`] or [`SHUTDOWN_IN_USE`].
    pub shutdown: u64,
    /// Offset of the root object (0: none); owned by the transaction layer.
    pub root_offset: u64,
    /// Size of the root object; owned by the transaction layer.
    pub root_size: u64,
    /// Must be zero.
    pub reserved: [u64; 508],
}

const_assert_eq!(size_of::<PoolState>(), BLOCK_SIZE as usize);
const_assert_eq!(offset_of!(PoolState, run_id), 0x00);
const_assert_eq!(offset_of!(PoolState, shutdown), 0x08);
const_assert_eq!(offset_of!(PoolState, root_offset), 0x10);
const_assert_eq!(offset_of!(PoolState, root_size), 0x18);
const_assert_eq!(offset_of!(PoolState, reserved), 0x20);

/// Absolute offset of the run id.
pub(crate) const STATE_RUN_ID: u64 = STATE_OFFSET + offset_of!(PoolState, run_id) as u64;
/// Absolute offset of the shutdown flag.
pub(crate) const STATE_SHUTDOWN: u64 = STATE_OFFSET + offset_of!(PoolState, shutdown) as u64;
/// Shutdown flag: closed cleanly.
pub(crate) const SHUTDOWN_CLEAN: u64 = 0;
/// Shutdown flag: open read-write (a crash leaves it set).
pub(crate) const SHUTDOWN_IN_USE: u64 = 1;

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

impl HeaderInfo {
    /// The incompatible feature bits set in this header, by name
    /// (`gen_copy`), in bit order; a bit this library does not know is
    /// named `bit N`, so that a report on a newer pool still says which.
    pub fn incompat_names(&self) -> Vec<String> {
        (0..64)
            .map(|b| 1u64 << b)
            .filter(|bit| self.incompat & bit != 0)
            .map(|bit| {
                INCOMPAT_NAMES.iter().find(|(b, _)| *b == bit).map_or_else(
                    || format!("bit {}", bit.trailing_zeros()),
                    |(_, n)| (*n).to_string(),
                )
            })
            .collect()
    }

    /// The UUID in its usual 8-4-4-4-12 hex form.
    pub fn uuid_string(&self) -> String {
        let h: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// Checks a layout name against the format's rules.
pub(crate) fn validate_layout(layout: &str) -> Result<(), String> {
    if layout.len() > LAYOUT_MAX {
        return Err(format!(
            "it is {} bytes long, the limit is {LAYOUT_MAX} bytes of UTF-8",
            layout.len()
        ));
    }
    if let Some(i) = layout.bytes().position(|b| b == 0) {
        return Err(format!("it contains a NUL byte at position {i}"));
    }
    Ok(())
}

/// The region geometry of a new pool of `size` bytes (already validated).
pub(crate) fn new_header(
    layout: &str,
    size: u64,
    uuid: [u8; 16],
    now_ns: u64,
    (lane_count, lane_size): (u32, u32),
) -> RawHeader {
    let lanes_end = LANES_OFFSET + lane_count as u64 * lane_size as u64;
    let heap_offset = lanes_end.next_multiple_of(HEAP_ALIGN);
    let mut name = [0u8; LAYOUT_MAX];
    name[..layout.len()].copy_from_slice(layout.as_bytes());
    RawHeader {
        magic: MAGIC,
        version: FORMAT_VERSION,
        reserved0: 0,
        compat: 0,
        incompat: INCOMPAT_GEN_COPY,
        ro_compat: 0,
        uuid,
        size,
        created_unix_ns: now_ns,
        lanes_offset: LANES_OFFSET,
        lane_count,
        lane_size,
        heap_offset,
        heap_size: size - heap_offset,
        layout_len: layout.len() as u32,
        reserved1: 0,
        layout: name,
        reserved2: [0; RESERVED2_LEN],
        crc32: 0,
    }
}

macro_rules! put {
    ($buf:ident, $field:ident, $val:expr) => {{
        let b = $val;
        let o = offset_of!(RawHeader, $field);
        $buf[o..o + b.len()].copy_from_slice(&b);
    }};
}

macro_rules! get {
    ($buf:ident, $field:ident, $ty:ty) => {{
        let o = offset_of!(RawHeader, $field);
        let mut a = [0u8; size_of::<$ty>()];
        a.copy_from_slice(&$buf[o..o + size_of::<$ty>()]);
        <$ty>::from_le_bytes(a)
    }};
}

impl RawHeader {
    /// Encodes to the on-media bytes with a freshly computed checksum.
    pub(crate) fn to_bytes(&self) -> [u8; BLOCK_SIZE as usize] {
        let mut b = [0u8; BLOCK_SIZE as usize];
        put!(b, magic, self.magic);
        put!(b, version, self.version.to_le_bytes());
        put!(b, reserved0, self.reserved0.to_le_bytes());
        put!(b, compat, self.compat.to_le_bytes());
        put!(b, incompat, self.incompat.to_le_bytes());
        put!(b, ro_compat, self.ro_compat.to_le_bytes());
        put!(b, uuid, self.uuid);
        put!(b, size, self.size.to_le_bytes());
        put!(b, created_unix_ns, self.created_unix_ns.to_le_bytes());
        put!(b, lanes_offset, self.lanes_offset.to_le_bytes());
        put!(b, lane_count, self.lane_count.to_le_bytes());
        put!(b, lane_size, self.lane_size.to_le_bytes());
        put!(b, heap_offset, self.heap_offset.to_le_bytes());
        put!(b, heap_size, self.heap_size.to_le_bytes());
        put!(b, layout_len, self.layout_len.to_le_bytes());
        put!(b, reserved1, self.reserved1.to_le_bytes());
        put!(b, layout, self.layout);
        put!(b, reserved2, self.reserved2);
        let crc = checksum(&b);
        put!(b, crc32, crc.to_le_bytes());
        b
    }

    /// Decodes the bytes of one copy without validating anything.
    pub(crate) fn from_bytes(b: &[u8; BLOCK_SIZE as usize]) -> RawHeader {
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[0..8]);
        let mut uuid = [0u8; 16];
        let o = offset_of!(RawHeader, uuid);
        uuid.copy_from_slice(&b[o..o + 16]);
        let mut layout = [0u8; LAYOUT_MAX];
        let o = offset_of!(RawHeader, layout);
        layout.copy_from_slice(&b[o..o + LAYOUT_MAX]);
        let mut reserved2 = [0u8; RESERVED2_LEN];
        let o = offset_of!(RawHeader, reserved2);
        reserved2.copy_from_slice(&b[o..o + RESERVED2_LEN]);
        RawHeader {
            magic,
            version: get!(b, version, u32),
            reserved0: get!(b, reserved0, u32),
            compat: get!(b, compat, u64),
            incompat: get!(b, incompat, u64),
            ro_compat: get!(b, ro_compat, u64),
            uuid,
            size: get!(b, size, u64),
            created_unix_ns: get!(b, created_unix_ns, u64),
            lanes_offset: get!(b, lanes_offset, u64),
            lane_count: get!(b, lane_count, u32),
            lane_size: get!(b, lane_size, u32),
            heap_offset: get!(b, heap_offset, u64),
            heap_size: get!(b, heap_size, u64),
            layout_len: get!(b, layout_len, u32),
            reserved1: get!(b, reserved1, u32),
            layout,
            reserved2,
            crc32: get!(b, crc32, u32),
        }
    }

    /// The layout name, if the stored bytes form a valid one.
    fn layout_name(&self) -> Result<String, String> {
        let n = self.layout_len as usize;
        if n > LAYOUT_MAX {
            return Err(format!(
                "layout length {n} exceeds the {LAYOUT_MAX}-byte limit"
            ));
        }
        if self.layout[n..].iter().any(|&b| b != 0) {
            return Err("bytes after the layout name are not zero".into());
        }
        let s = std::str::from_utf8(&self.layout[..n])
            .map_err(|e| format!("layout name is not valid UTF-8 ({e})"))?;
        validate_layout(s).map_err(|r| format!("layout name is invalid: {r}"))?;
        Ok(s.to_string())
    }

    /// The decoded header info (after [`decode_copy`] said it is valid).
    pub(crate) fn info(&self) -> HeaderInfo {
        HeaderInfo {
            version: self.version,
            compat: self.compat,
            incompat: self.incompat,
            ro_compat: self.ro_compat,
            layout: self.layout_name().unwrap_or_default(),
            uuid: self.uuid,
            size: self.size,
            created_unix_ns: self.created_unix_ns,
            lanes_offset: self.lanes_offset,
            lane_count: self.lane_count,
            lane_size: self.lane_size,
            heap_offset: self.heap_offset,
            heap_size: self.heap_size,
        }
    }

    /// Checks every field whose meaning does not depend on feature flags.
    fn validate_fields(&self) -> Result<String, String> {
        if self.reserved0 != 0 || self.reserved1 != 0 || self.reserved2.iter().any(|&b| b != 0) {
            return Err("a reserved field is not zero".into());
        }
        let layout = self.layout_name()?;
        if self.version == 0 {
            return Err("format version is 0".into());
        }
        if self.version != FORMAT_VERSION {
            // Newer versions may lay out the rest differently: stop here and
            // let the caller report the version.
            return Ok(layout);
        }
        let size = self.size;
        if size < MIN_POOL_SIZE || !size.is_multiple_of(BLOCK_SIZE) {
            return Err(format!(
                "pool size {size} is below {MIN_POOL_SIZE} or not a multiple of 4 KiB"
            ));
        }
        let lanes_end = (self.lane_count as u64)
            .checked_mul(self.lane_size as u64)
            .and_then(|l| l.checked_add(self.lanes_offset));
        let heap_end = self.heap_offset.checked_add(self.heap_size);
        match (lanes_end, heap_end) {
            (Some(le), Some(he))
                if self.lanes_offset >= STATE_OFFSET + BLOCK_SIZE
                    && self.lane_count >= 1
                    && crate::layout::lane_size_ok(self.lane_size)
                    && le <= self.heap_offset
                    && self.heap_offset.is_multiple_of(HEAP_ALIGN)
                    && self.heap_size >= MIN_HEAP_SIZE
                    && he <= size => {}
            _ => {
                return Err(format!(
                    "region geometry is inconsistent (lanes at {:#x}, {} x {} bytes; heap at {:#x}, {} bytes; pool {} bytes)",
                    self.lanes_offset,
                    self.lane_count,
                    self.lane_size,
                    self.heap_offset,
                    self.heap_size,
                    size
                ));
            }
        }
        Ok(layout)
    }
}

/// CRC-32C of the bytes before the checksum field.
pub(crate) fn checksum(b: &[u8; BLOCK_SIZE as usize]) -> u32 {
    crate::crc::crc32c(&b[..CRC_OFFSET])
}

/// Validates one copy on its own: magic, then checksum, then fields.
pub(crate) fn decode_copy(b: &[u8; BLOCK_SIZE as usize]) -> Result<RawHeader, CopyStatus> {
    let h = RawHeader::from_bytes(b);
    if h.magic != MAGIC {
        return Err(CopyStatus::BadMagic);
    }
    let computed = checksum(b);
    if computed != h.crc32 {
        // Versions 1 and 2 checksummed the header with CRC-32 (IEEE). Such
        // a copy is intact, only older: returned as it is (its fields are
        // not judged by this version's rules), so that the version check
        // names it instead of calling it corrupt.
        if (1..FORMAT_VERSION).contains(&h.version)
            && crate::crc::crc32_ieee(&b[..CRC_OFFSET]) == h.crc32
        {
            return Ok(h);
        }
        return Err(CopyStatus::BadChecksum {
            stored: h.crc32,
            computed,
        });
    }
    h.validate_fields().map_err(CopyStatus::BadField)?;
    Ok(h)
}

/// What a file without our magic looks like, for `Error::NotAPool`.
pub(crate) fn foreign_hint(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"PMEMOBJ") {
        Some("this looks like a libpmemobj (PMDK) pool: open it with libpmemobj or pmempool")
    } else if b.starts_with(PMDK_PREFIX) {
        Some("this looks like a PMDK pool of another kind (pmemblk, pmemlog or a poolset)")
    } else if b.iter().take(BLOCK_SIZE as usize).all(|&x| x == 0) {
        Some(
            "the header is all zeros: a create that never finished, or a file that was never a pool",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RawHeader {
        new_header(
            "kv-v1",
            MIN_POOL_SIZE,
            [7; 16],
            42,
            (crate::layout::DEFAULT_LANE_COUNT, crate::layout::LANE_SIZE),
        )
    }

    #[test]
    fn round_trip_is_exact_and_valid() {
        let h = sample();
        let b = h.to_bytes();
        let back = RawHeader::from_bytes(&b);
        assert_eq!(back.crc32, checksum(&b));
        let valid = decode_copy(&b).unwrap();
        assert_eq!(valid.info().layout, "kv-v1");
        assert_eq!(valid.info().size, MIN_POOL_SIZE);
        assert_eq!(&b[0..8], b"PMOBJ-RS");
        // Little-endian on media.
        assert_eq!(&b[0x38..0x40], &MIN_POOL_SIZE.to_le_bytes());
    }

    #[test]
    fn incompat_bits_are_named_and_unknown_ones_numbered() {
        let mut info = sample().info();
        assert_eq!(info.incompat_names(), ["gen_copy"]);
        info.incompat = INCOMPAT_GEN_COPY | 1 << 5;
        assert_eq!(info.incompat_names(), ["gen_copy", "bit 5"]);
        info.incompat = 0;
        assert!(info.incompat_names().is_empty());
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let b = sample().to_bytes();
        for i in (0..BLOCK_SIZE as usize).step_by(61) {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(decode_copy(&c).is_err(), "flip at {i:#x} not detected");
        }
    }

    #[test]
    fn nonzero_reserved_is_a_bad_field_even_with_good_crc() {
        let mut h = sample();
        h.reserved2[5] = 1;
        assert!(matches!(
            decode_copy(&h.to_bytes()),
            Err(CopyStatus::BadField(_))
        ));
        let mut h = sample();
        h.layout[900] = b'x';
        assert!(matches!(
            decode_copy(&h.to_bytes()),
            Err(CopyStatus::BadField(_))
        ));
    }

    #[test]
    fn layout_rules() {
        assert!(validate_layout("").is_ok());
        assert!(validate_layout(&"é".repeat(512)).is_ok());
        assert!(validate_layout(&"x".repeat(1025)).is_err());
        assert!(validate_layout("a\0b").is_err());
    }

    #[test]
    fn hints() {
        assert!(
            foreign_hint(b"PMEMOBJ\0rest")
                .unwrap()
                .contains("libpmemobj")
        );
        assert!(foreign_hint(&[0u8; 4096]).unwrap().contains("zeros"));
        assert_eq!(foreign_hint(b"\x7fELF"), None);
    }

    #[test]
    fn uuid_string_form() {
        let mut h = sample().info();
        h.uuid = [0xab; 16];
        assert_eq!(h.uuid_string(), "abababab-abab-abab-abab-abababababab");
        // Distinct bytes: groups in stored order.
        h.uuid = core::array::from_fn(|i| (i as u8) * 0x11);
        assert_eq!(h.uuid_string(), "00112233-4455-6677-8899-aabbccddeeff");
    }
}
