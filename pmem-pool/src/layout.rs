//! Where things live in a pool (byte offsets from the start of the file).
//! `FORMAT.md` has the same table; the assertions below keep them in step.
//!
//! | offset | size | what |
//! | --- | --- | --- |
//! | 0x0000 | 4 KiB | primary header (checksummed, written at create only) |
//! | 0x1000 | 4 KiB | backup header (byte-identical copy) |
//! | 0x2000 | 4 KiB | pool state (run id, shutdown flag, root pointer: 8-byte atomic fields) |
//! | 0x3000 | lane_count × lane_size | lanes (per-transaction log slots) |
//! | heap_offset | rest, 4 KiB aligned | heap (the allocator's) |

/// Offset of the primary header.
pub const HEADER_OFFSET: u64 = 0;
/// Offset of the backup header.
pub const BACKUP_HEADER_OFFSET: u64 = 0x1000;
/// Offset of the mutable pool state.
pub const STATE_OFFSET: u64 = 0x2000;
/// Offset of the first lane.
pub const LANES_OFFSET: u64 = 0x3000;
/// Bytes reserved for each header copy and for the state block.
pub const BLOCK_SIZE: u64 = 0x1000;
/// Lanes in a pool made with the defaults.
pub const DEFAULT_LANE_COUNT: u32 = 256;
/// Bytes per lane.
pub const LANE_SIZE: u32 = 4096;
/// Largest lane a pool may have (a log entry's length is a u32, and one
/// lane's logs should stay far below the heap's size).
pub const MAX_LANE_SIZE: u32 = 1 << 20;
/// Most lanes a pool may have.
pub const MAX_LANE_COUNT: u32 = 1 << 16;

/// Whether `size` is a valid lane size: a multiple of 4 KiB between 4 KiB
/// and [`MAX_LANE_SIZE`].
pub const fn lane_size_ok(size: u32) -> bool {
    size >= LANE_SIZE && size <= MAX_LANE_SIZE && size.is_multiple_of(4096)
}

/// The smallest pool with `count` lanes of `size` bytes.
pub const fn min_pool_size(count: u32, size: u32) -> u64 {
    LANES_OFFSET + count as u64 * size as u64 + MIN_HEAP_SIZE
}

/// Alignment of the heap region.
pub const HEAP_ALIGN: u64 = 0x1000;
/// Smallest heap a pool may have.
pub const MIN_HEAP_SIZE: u64 = 1 << 20;
/// The smallest pool `create` accepts: headers, state, default lanes and
/// a 1 MiB heap.
pub const MIN_POOL_SIZE: u64 =
    LANES_OFFSET + DEFAULT_LANE_COUNT as u64 * LANE_SIZE as u64 + MIN_HEAP_SIZE;

static_assertions::const_assert_eq!(BACKUP_HEADER_OFFSET, HEADER_OFFSET + BLOCK_SIZE);
static_assertions::const_assert_eq!(STATE_OFFSET, BACKUP_HEADER_OFFSET + BLOCK_SIZE);
static_assertions::const_assert_eq!(LANES_OFFSET, STATE_OFFSET + BLOCK_SIZE);
static_assertions::const_assert_eq!(MIN_POOL_SIZE, (2 << 20) + 0x3000);
