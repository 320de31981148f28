//! Size classes: which block size serves a request, and how each class's
//! runs are laid out.
//!
//! A request of `s` bytes needs a block of at least `s + 16` (the allocation
//! header). Block sizes: 32 to 512 bytes in 16-byte steps, then four steps
//! per power of two (640, 768, 896, 1024, 1280, …) up to 896 KiB; above
//! that, huge spans of whole 256 KiB chunks. Internal fragmentation, the
//! header counted as waste, `(block − s) / block`:
//! - at most 31 bytes below 512-byte blocks, so ≤ 25 % for every `s ≥ 97`;
//! - ≤ 20 % + 12/2^k in the power-of-two steps (block in `(2^k, 2^(k+1)]`,
//!   k ≥ 9), so ≤ 22.4 %;
//! - huge spans start above 896 KiB, i.e. at 4 chunks or more, so ≤ 1/4
//!   exactly at worst (one chunk minus 1 byte out of ≥ 4 chunks is < 25 %).
//!
//! So the bound is ≤ 25 % for every `s ≥ 97` (asserted by a test over every
//! size), with one exception: a large class whose run needs more chunks than
//! the largest free span is served by a huge span instead (small heaps or a
//! fragmented one), see [`crate::Heap::reserve`].
//!
//! Each class's run spans the fewest chunks (1 to [`MAX_RUN_CHUNKS`]) whose
//! unused tail (header, bitmap, remainder) is at most 1/8 of the span; every
//! class up to 16 KiB blocks uses one chunk.

use crate::layout::{CHUNK_SIZE, RUN_HEADER_SIZE};
use std::sync::LazyLock;

/// Largest run span in chunks.
pub const MAX_RUN_CHUNKS: u32 = 16;
/// Largest block served by a run; bigger requests are huge spans.
pub const MAX_RUN_BLOCK: u64 = 896 * 1024;

/// One size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// Index (stored in chunk headers and run headers).
    pub index: u8,
    /// Bytes per block, allocation header included.
    pub block: u64,
    /// Chunks per run.
    pub chunks: u32,
    /// Blocks per run.
    pub nblocks: u32,
    /// Offset of block 0 from the run start (after header and bitmap,
    /// 64-byte aligned).
    pub data_off: u64,
    /// `⌈2^64 / block⌉`, with which [`split`](Self::split) divides.
    recip: u64,
}

impl Class {
    /// `(rel / block, rel % block)`: which block a byte offset into the
    /// run's blocks falls in, and where in it. Every free and pointer check
    /// asks this, and a 64-bit division costs tens of cycles; a multiply
    /// by `recip` gives the exact quotient for every `rel < 2^32` (Lemire,
    /// Kaser and Kurz, "Faster remainder by direct computation", 2019),
    /// which covers every offset inside a run (at most 4 MiB).
    #[inline]
    pub fn split(&self, rel: u64) -> (u64, u64) {
        if rel >> 32 != 0 {
            return (rel / self.block, rel % self.block);
        }
        let q = ((u128::from(self.recip) * u128::from(rel)) >> 64) as u64;
        (q, rel - q * self.block)
    }

    /// Bitmap words of a run of this class.
    pub fn bitmap_words(&self) -> u64 {
        u64::from(self.nblocks).div_ceil(64)
    }
}

/// Lays out a run of `chunks` chunks of `block`-byte blocks:
/// (blocks, data offset).
fn run_layout(block: u64, chunks: u32) -> (u64, u64) {
    let span = u64::from(chunks) * CHUNK_SIZE;
    // Blocks if the bitmap were free, then shrink until header + bitmap fit.
    let mut n = (span - RUN_HEADER_SIZE) / block;
    loop {
        let data = (RUN_HEADER_SIZE + n.div_ceil(64) * 8).div_ceil(64) * 64;
        if data + n * block <= span || n == 0 {
            return (n, data);
        }
        n -= 1;
    }
}

fn build() -> Vec<Class> {
    let mut blocks: Vec<u64> = (2..=32).map(|i| i * 16).collect();
    let mut base = 512u64;
    'outer: loop {
        for q in 1..=4 {
            let b = base + base / 4 * q;
            if b > MAX_RUN_BLOCK {
                break 'outer;
            }
            blocks.push(b);
        }
        base *= 2;
    }
    blocks
        .iter()
        .enumerate()
        .map(|(i, &block)| {
            let pick = (1..=MAX_RUN_CHUNKS)
                .find(|&c| {
                    let (n, _) = run_layout(block, c);
                    let span = u64::from(c) * CHUNK_SIZE;
                    n >= 1 && (span - n * block) * 8 <= span
                })
                .unwrap_or(MAX_RUN_CHUNKS);
            let (n, data_off) = run_layout(block, pick);
            Class {
                index: i as u8,
                block,
                chunks: pick,
                nblocks: n as u32,
                data_off,
                recip: u64::MAX / block + 1,
            }
        })
        .collect()
}

static CLASSES: LazyLock<Vec<Class>> = LazyLock::new(build);

/// The class table, ascending block sizes.
pub fn classes() -> &'static [Class] {
    &CLASSES
}

/// The class serving a block of `need` bytes (request + header), or `None`
/// above [`MAX_RUN_BLOCK`] (a huge span).
pub fn class_for(need: u64) -> Option<&'static Class> {
    let t = classes();
    let i = t.partition_point(|c| c.block < need);
    t.get(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ALLOC_HEADER_SIZE;

    #[test]
    fn split_divides_exactly() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for c in classes() {
            let span = u64::from(c.chunks) * CHUNK_SIZE;
            let check = |rel: u64| {
                assert_eq!(
                    c.split(rel),
                    (rel / c.block, rel % c.block),
                    "block {} rel {rel}",
                    c.block
                );
            };
            // Around every block boundary of the run, and past its end.
            for i in 0..=u64::from(c.nblocks) + 1 {
                for d in [0, 1, c.block - 1] {
                    check((i * c.block + d).min(span * 2));
                    check((i * c.block).saturating_sub(1));
                }
            }
            for _ in 0..2000 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                check(x >> 40); // below 2^24
                check(x >> 32);
                check(x); // the division fallback
            }
            check(u64::from(u32::MAX));
        }
    }

    #[test]
    fn table_is_sorted_and_fits_u8_and_runs() {
        let t = classes();
        assert!(t.len() < 256);
        assert_eq!(t[0].block, 32);
        assert_eq!(t.last().map(|c| c.block), Some(MAX_RUN_BLOCK));
        for w in t.windows(2) {
            assert!(w[0].block < w[1].block);
        }
        for c in t {
            assert!(c.block.is_multiple_of(16));
            assert!(c.nblocks >= 1, "class {c:?}");
            let span = u64::from(c.chunks) * CHUNK_SIZE;
            assert!(c.data_off + u64::from(c.nblocks) * c.block <= span);
            assert!(RUN_HEADER_SIZE + c.bitmap_words() * 8 <= c.data_off);
            if c.block <= 16 * 1024 {
                assert_eq!(c.chunks, 1, "class {c:?}");
            }
        }
    }

    /// Internal fragmentation ≤ 25 % for every request ≥ 97 bytes, header
    /// counted as waste, including the huge range (spans of whole chunks).
    #[test]
    fn fragmentation_bound_holds_from_97_bytes() {
        let waste = |s: u64| -> (u64, u64) {
            let need = s + ALLOC_HEADER_SIZE;
            let block = match class_for(need) {
                Some(c) => c.block,
                None => need.div_ceil(CHUNK_SIZE) * CHUNK_SIZE,
            };
            (block - s, block)
        };
        let mut s = 97;
        while s < 64 * CHUNK_SIZE {
            let (w, b) = waste(s);
            assert!(w * 4 <= b, "request {s}: block {b} wastes {w}");
            s += if s < 1 << 16 { 1 } else { 61 };
        }
        // Around every class and chunk boundary exactly.
        for c in classes() {
            for s in [c.block - 16, c.block - 15]
                .into_iter()
                .filter(|&s| s >= 97)
            {
                let (w, b) = waste(s);
                assert!(w * 4 <= b, "request {s}: block {b} wastes {w}");
            }
        }
        // Below 97 the header dominates: 81 bytes take a 112-byte block.
        let (w, b) = waste(81);
        assert!(w * 4 > b);
    }
}
