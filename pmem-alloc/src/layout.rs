//! On-media structures of the heap (FORMAT.md, "Heap"): the heap header,
//! the chunk header word, the run header, the allocation header, and the
//! geometry that places them in the heap region. Little-endian; each struct
//! is `#[repr(C)]` with its size and field offsets pinned by
//! `static_assertions`, and encoded/decoded field by field (the mapping is
//! never cast to a struct).

use crate::error::{Error, Result};
use static_assertions::{const_assert, const_assert_eq};
use std::mem::{offset_of, size_of};

/// Bytes per chunk: the unit of the chunk header table and of huge spans.
pub const CHUNK_SIZE: u64 = 256 * 1024;
/// Bytes of the heap header at the start of the heap region.
pub const HEAP_HEADER_SIZE: u64 = 4096;
/// Bytes of an allocation header (size, type number): in a run's header
/// table (heap version 3), or right before the object's data (huge
/// objects, and run blocks of heap versions 1 and 2).
pub const ALLOC_HEADER_SIZE: u64 = 16;
/// Bytes of a run header at the start of a run's span.
pub const RUN_HEADER_SIZE: u64 = 64;
/// Heap header magic: ASCII `PMOHEAP1`.
pub const HEAP_MAGIC: [u8; 8] = *b"PMOHEAP1";
/// Heap format version written by `format`. Version 3 keeps the
/// allocation headers of a run's blocks of 256 bytes or more in a table
/// after its bitmap ([`Layout::Table`]), so that allocating such a block
/// writes none of its bytes; version 2 put a huge
/// object's data on a cache line ([`HUGE_DATA_OFF`]). Version 1 and 2
/// heaps (headers in front of each block, [`Layout::Inline`]; version 1's
/// huge objects 16 bytes into their first chunk) are still opened and
/// checked ([`Geometry::with_version`]).
pub const HEAP_VERSION: u32 = 3;
/// The oldest heap format version this library opens.
pub const HEAP_VERSION_MIN: u32 = 1;
/// Offset of a huge object's data from the start of its first chunk
/// (version 2): its allocation header takes the 16 bytes before the data,
/// and the 48 bytes before the header are unused. So an element of a
/// large array whose size divides 64 lies in one cache line: one lock
/// stripe, one flushed line.
pub const HUGE_DATA_OFF: u64 = 64;
/// [`HUGE_DATA_OFF`] of a version 1 heap: right after the header.
pub const HUGE_DATA_OFF_V1: u64 = ALLOC_HEADER_SIZE;
const_assert!(HUGE_DATA_OFF.is_multiple_of(64) && HUGE_DATA_OFF >= ALLOC_HEADER_SIZE);
/// Version of the size-class table (class indexes are stored in chunk
/// headers, so the table is part of the format).
pub const CLASS_TABLE_VERSION: u32 = 1;
/// Run header magic (`RUN1` little-endian).
pub const RUN_MAGIC: u32 = u32::from_le_bytes(*b"RUN1");

/// The heap header, 4096 bytes at the start of the heap region.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapHeader {
    /// `HEAP_MAGIC`; all zero means "never formatted".
    pub magic: [u8; 8],
    /// `HEAP_VERSION`.
    pub version: u32,
    /// `CLASS_TABLE_VERSION`.
    pub class_table: u32,
    /// Pool offset of the heap region.
    pub region_offset: u64,
    /// Bytes of the heap region.
    pub region_size: u64,
    /// `CHUNK_SIZE`.
    pub chunk_size: u64,
    /// Number of chunks.
    pub chunk_count: u64,
    /// Pool offset of the chunk header table.
    pub table_offset: u64,
    /// Pool offset of chunk 0.
    pub chunks_offset: u64,
    /// Must be zero.
    pub reserved: [u8; 0xFFC - 0x40],
    /// CRC-32C (`pmem_pool::crc`) of bytes 0x000..0xFFC.
    pub crc32: u32,
}

const_assert_eq!(size_of::<HeapHeader>(), HEAP_HEADER_SIZE as usize);
const_assert_eq!(offset_of!(HeapHeader, version), 0x08);
const_assert_eq!(offset_of!(HeapHeader, class_table), 0x0C);
const_assert_eq!(offset_of!(HeapHeader, region_offset), 0x10);
const_assert_eq!(offset_of!(HeapHeader, region_size), 0x18);
const_assert_eq!(offset_of!(HeapHeader, chunk_size), 0x20);
const_assert_eq!(offset_of!(HeapHeader, chunk_count), 0x28);
const_assert_eq!(offset_of!(HeapHeader, table_offset), 0x30);
const_assert_eq!(offset_of!(HeapHeader, chunks_offset), 0x38);
const_assert_eq!(offset_of!(HeapHeader, reserved), 0x40);
const_assert_eq!(offset_of!(HeapHeader, crc32), 0xFFC);

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(w)
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

impl HeapHeader {
    /// The header describing geometry `g`, magic and checksum set.
    pub fn new(g: &Geometry) -> Self {
        let mut h = HeapHeader {
            magic: HEAP_MAGIC,
            version: HEAP_VERSION,
            class_table: CLASS_TABLE_VERSION,
            region_offset: g.region_offset,
            region_size: g.region_size,
            chunk_size: CHUNK_SIZE,
            chunk_count: g.chunk_count,
            table_offset: g.table_offset,
            chunks_offset: g.chunks_offset,
            reserved: [0; 0xFFC - 0x40],
            crc32: 0,
        };
        h.crc32 = pmem_pool::crc::crc32c(&h.to_bytes()[..0xFFC]);
        h
    }

    /// Little-endian encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEAP_HEADER_SIZE as usize];
        b[0..8].copy_from_slice(&self.magic);
        b[0x08..0x0C].copy_from_slice(&self.version.to_le_bytes());
        b[0x0C..0x10].copy_from_slice(&self.class_table.to_le_bytes());
        b[0x10..0x18].copy_from_slice(&self.region_offset.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&self.region_size.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&self.chunk_size.to_le_bytes());
        b[0x28..0x30].copy_from_slice(&self.chunk_count.to_le_bytes());
        b[0x30..0x38].copy_from_slice(&self.table_offset.to_le_bytes());
        b[0x38..0x40].copy_from_slice(&self.chunks_offset.to_le_bytes());
        b[0x40..0xFFC].copy_from_slice(&self.reserved);
        b[0xFFC..].copy_from_slice(&self.crc32.to_le_bytes());
        b
    }

    /// Decodes and validates `b` (4096 bytes) against the expected
    /// geometry; returns the heap's format version (for
    /// [`Geometry::with_version`]).
    pub fn validate(b: &[u8], g: &Geometry) -> Result<u32> {
        if b.len() != HEAP_HEADER_SIZE as usize {
            return Err(corrupt("heap header is truncated"));
        }
        if b[0..8] != HEAP_MAGIC {
            return Err(corrupt(format!(
                "heap header magic is {:02x?}, expected \"PMOHEAP1\"",
                &b[0..8]
            )));
        }
        let stored = u32_at(b, 0xFFC);
        let actual = pmem_pool::crc::crc32c(&b[..0xFFC]);
        if stored != actual {
            return Err(corrupt(format!(
                "heap header checksum is {stored:#010x}, computed {actual:#010x}"
            )));
        }
        let version = u32_at(b, 0x08);
        if !(HEAP_VERSION_MIN..=HEAP_VERSION).contains(&version)
            || u32_at(b, 0x0C) != CLASS_TABLE_VERSION
        {
            return Err(corrupt(format!(
                "heap format version {version} / class table {} is not supported (expected {HEAP_VERSION_MIN} to {HEAP_VERSION} / {CLASS_TABLE_VERSION})",
                u32_at(b, 0x0C)
            )));
        }
        let fields = [
            ("region offset", u64_at(b, 0x10), g.region_offset),
            ("region size", u64_at(b, 0x18), g.region_size),
            ("chunk size", u64_at(b, 0x20), CHUNK_SIZE),
            ("chunk count", u64_at(b, 0x28), g.chunk_count),
            ("chunk table offset", u64_at(b, 0x30), g.table_offset),
            ("first chunk offset", u64_at(b, 0x38), g.chunks_offset),
        ];
        for (name, got, want) in fields {
            if got != want {
                return Err(corrupt(format!(
                    "heap header {name} is {got:#x} but the pool header's heap region implies {want:#x}"
                )));
            }
        }
        if b[0x40..0xFFC].iter().any(|&x| x != 0) {
            return Err(corrupt("heap header reserved bytes are not zero"));
        }
        Ok(version)
    }
}

/// Where a run keeps its blocks' allocation headers: the heap version's
/// choice, which fixes the runs' layout (FORMAT.md, "Run").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Heap versions 1 and 2: 16 bytes at the start of every block, the
    /// object's data after them.
    Inline,
    /// Heap version 3: for blocks of 256 bytes or more
    /// ([`crate::class::TABLE_MIN_BLOCK`]), a table of 16-byte entries
    /// after the run's bitmap, the object's data at the start of its
    /// block; smaller blocks as `Inline`.
    Table,
}

impl Layout {
    /// The run layout of a heap of format `version`.
    pub fn of_version(version: u32) -> Layout {
        if version < 3 {
            Layout::Inline
        } else {
            Layout::Table
        }
    }
}

/// Where the heap's structures lie, computed from the heap region alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Pool offset of the heap region (and of the heap header).
    pub region_offset: u64,
    /// Bytes of the heap region.
    pub region_size: u64,
    /// Pool offset of the chunk header table.
    pub table_offset: u64,
    /// Number of chunks.
    pub chunk_count: u64,
    /// Pool offset of chunk 0 (4 KiB aligned).
    pub chunks_offset: u64,
    /// Offset of a huge object's data from its first chunk: set by the
    /// heap header's version ([`HUGE_DATA_OFF`], or [`HUGE_DATA_OFF_V1`]
    /// for a version 1 heap).
    pub huge_data: u64,
    /// Where run blocks' allocation headers are: set by the heap header's
    /// version ([`Layout::Table`] from version 3).
    pub layout: Layout,
}

/// Rounds `x` up to a multiple of 4096.
const fn page_up(x: u64) -> u64 {
    x.div_ceil(4096) * 4096
}

impl Geometry {
    /// The geometry of a heap region inside a pool of `pool_len` bytes.
    pub fn new(region_offset: u64, region_size: u64, pool_len: u64) -> Result<Self> {
        if !region_offset.is_multiple_of(4096) {
            return Err(corrupt(format!(
                "heap offset {region_offset:#x} is not 4 KiB aligned"
            )));
        }
        match region_offset.checked_add(region_size) {
            Some(end) if end <= pool_len => {}
            _ => {
                return Err(corrupt(format!(
                    "heap region {region_offset:#x}+{region_size:#x} runs past the end of the pool ({pool_len:#x} bytes)"
                )));
            }
        }
        let min = HEAP_HEADER_SIZE + 4096 + CHUNK_SIZE;
        if region_size < min {
            return Err(corrupt(format!(
                "heap region of {region_size} bytes is smaller than the minimum {min} (header, chunk table, one chunk)"
            )));
        }
        let avail = region_size - HEAP_HEADER_SIZE;
        let mut n = avail / (CHUNK_SIZE + 8);
        while n > 0 && page_up(n * 8) + n * CHUNK_SIZE > avail {
            n -= 1;
        }
        let n = n.min(u64::from(u32::MAX));
        let table_offset = region_offset + HEAP_HEADER_SIZE;
        Ok(Geometry {
            region_offset,
            region_size,
            table_offset,
            chunk_count: n,
            chunks_offset: table_offset + page_up(n * 8),
            huge_data: HUGE_DATA_OFF,
            layout: Layout::Table,
        })
    }

    /// This geometry for a heap of format `version` (as
    /// [`HeapHeader::validate`] returned it).
    pub fn with_version(self, version: u32) -> Self {
        let huge_data = if version == 1 {
            HUGE_DATA_OFF_V1
        } else {
            HUGE_DATA_OFF
        };
        Geometry {
            huge_data,
            layout: Layout::of_version(version),
            ..self
        }
    }

    /// Usable bytes of a huge object spanning `span` chunks.
    pub fn huge_usable(&self, span: u32) -> u64 {
        u64::from(span) * CHUNK_SIZE - self.huge_data
    }

    /// Pool offset of chunk `c`'s header word.
    pub fn header_off(&self, c: u32) -> u64 {
        self.table_offset + u64::from(c) * 8
    }

    /// Pool offset of chunk `c`'s first byte.
    pub fn chunk_off(&self, c: u32) -> u64 {
        self.chunks_offset + u64::from(c) * CHUNK_SIZE
    }

    /// The chunk holding pool offset `off`, if inside the chunk area.
    pub fn chunk_of(&self, off: u64) -> Option<u32> {
        let rel = off.checked_sub(self.chunks_offset)?;
        let c = rel / CHUNK_SIZE;
        (c < self.chunk_count).then_some(c as u32)
    }
}

/// What a chunk header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkHeader {
    /// Header 0: a free chunk, or a chunk inside a span (not its first).
    Free,
    /// First chunk of a run of `class`, spanning `span` chunks.
    Run {
        /// Size-class index.
        class: u8,
        /// Chunks in the span.
        span: u32,
    },
    /// First chunk of a used huge allocation of `span` chunks.
    Huge {
        /// Chunks in the span.
        span: u32,
    },
}

/// Chunk header kind byte of a run.
pub const KIND_RUN: u64 = 1;
/// Chunk header kind byte of a used huge span.
pub const KIND_HUGE: u64 = 2;
/// Tag in bits 16..32 of every non-zero chunk header (`CK`).
pub const CHUNK_TAG: u64 = 0x4B43;

impl ChunkHeader {
    /// The 8-byte word: kind (bits 0–7), class (8–15), tag (16–31), span
    /// (32–63); 0 for a free chunk.
    pub fn encode(self) -> u64 {
        match self {
            ChunkHeader::Free => 0,
            ChunkHeader::Run { class, span } => {
                KIND_RUN | (u64::from(class) << 8) | (CHUNK_TAG << 16) | (u64::from(span) << 32)
            }
            ChunkHeader::Huge { span } => KIND_HUGE | (CHUNK_TAG << 16) | (u64::from(span) << 32),
        }
    }

    /// Decodes a word; `Err` names what is wrong with it.
    pub fn decode(w: u64) -> std::result::Result<Self, String> {
        if w == 0 {
            return Ok(ChunkHeader::Free);
        }
        if (w >> 16) & 0xFFFF != CHUNK_TAG {
            return Err(format!(
                "chunk header {w:#018x} lacks the tag {CHUNK_TAG:#x}"
            ));
        }
        let span = (w >> 32) as u32;
        if span == 0 {
            return Err(format!("chunk header {w:#018x} has a span of 0 chunks"));
        }
        let class = ((w >> 8) & 0xFF) as u8;
        match w & 0xFF {
            KIND_RUN => Ok(ChunkHeader::Run { class, span }),
            KIND_HUGE if class == 0 => Ok(ChunkHeader::Huge { span }),
            k => Err(format!("chunk header {w:#018x} has unknown kind {k}")),
        }
    }
}

/// The run header, 64 bytes at the start of a run's span; the bitmap follows
/// at `RUN_HEADER_SIZE`, the blocks at `data_off`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunHeader {
    /// `RUN_MAGIC`.
    pub magic: u32,
    /// Number of blocks.
    pub nblocks: u32,
    /// Bytes per block (allocation header included).
    pub block_size: u64,
    /// Size-class index.
    pub class: u16,
    /// Chunks in the run's span.
    pub chunks: u16,
    /// Offset of the first block from the run's start.
    pub data_off: u32,
    /// Must be zero.
    pub reserved: [u8; 36],
    /// CRC-32C (`pmem_pool::crc`) of bytes 0x00..0x3C.
    pub crc32: u32,
}

const_assert_eq!(size_of::<RunHeader>(), RUN_HEADER_SIZE as usize);
const_assert_eq!(offset_of!(RunHeader, nblocks), 0x04);
const_assert_eq!(offset_of!(RunHeader, block_size), 0x08);
const_assert_eq!(offset_of!(RunHeader, class), 0x10);
const_assert_eq!(offset_of!(RunHeader, chunks), 0x12);
const_assert_eq!(offset_of!(RunHeader, data_off), 0x14);
const_assert_eq!(offset_of!(RunHeader, reserved), 0x18);
const_assert_eq!(offset_of!(RunHeader, crc32), 0x3C);

impl RunHeader {
    /// Little-endian encoding with the checksum filled in.
    pub fn to_bytes(&self) -> [u8; RUN_HEADER_SIZE as usize] {
        let mut b = [0u8; RUN_HEADER_SIZE as usize];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.nblocks.to_le_bytes());
        b[8..16].copy_from_slice(&self.block_size.to_le_bytes());
        b[16..18].copy_from_slice(&self.class.to_le_bytes());
        b[18..20].copy_from_slice(&self.chunks.to_le_bytes());
        b[20..24].copy_from_slice(&self.data_off.to_le_bytes());
        b[24..60].copy_from_slice(&self.reserved);
        let crc = pmem_pool::crc::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes 64 bytes; `Err` if the magic or checksum is wrong.
    pub fn from_bytes(b: &[u8; RUN_HEADER_SIZE as usize]) -> std::result::Result<Self, String> {
        let magic = u32_at(b, 0);
        if magic != RUN_MAGIC {
            return Err(format!(
                "run header magic is {magic:#010x}, expected {RUN_MAGIC:#010x}"
            ));
        }
        let crc = u32_at(b, 60);
        let actual = pmem_pool::crc::crc32c(&b[..60]);
        if crc != actual {
            return Err(format!(
                "run header checksum is {crc:#010x}, computed {actual:#010x}"
            ));
        }
        let mut reserved = [0u8; 36];
        reserved.copy_from_slice(&b[24..60]);
        Ok(RunHeader {
            magic,
            nblocks: u32_at(b, 4),
            block_size: u64_at(b, 8),
            class: u16_at(b, 16),
            chunks: u16_at(b, 18),
            data_off: u32_at(b, 20),
            reserved,
            crc32: crc,
        })
    }
}

/// The allocation header of an object (16 bytes: in its run's header
/// table, or before its data).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocHeader {
    /// Bytes the caller asked for.
    pub size: u64,
    /// The caller's type number.
    pub type_num: u64,
}

const_assert_eq!(size_of::<AllocHeader>(), ALLOC_HEADER_SIZE as usize);
const_assert_eq!(offset_of!(AllocHeader, type_num), 8);
const_assert!(CHUNK_SIZE.is_multiple_of(4096));

impl AllocHeader {
    /// Little-endian encoding.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.size.to_le_bytes());
        b[8..].copy_from_slice(&self.type_num.to_le_bytes());
        b
    }

    /// Decoding.
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        AllocHeader {
            size: u64_at(b, 0),
            type_num: u64_at(b, 8),
        }
    }
}

/// `Error::Corrupt` with `reason`.
pub fn corrupt(reason: impl Into<String>) -> Error {
    Error::Corrupt {
        reason: reason.into(),
    }
}
