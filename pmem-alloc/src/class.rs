//! Size classes: which block size serves a request, and how each class's
//! runs are laid out.
//!
//! Block sizes: 32 to 512 bytes in 16-byte steps, then four steps per
//! power of two (640, 768, 896, 1024, 1280, …) up to 896 KiB; above that,
//! huge spans of whole 256 KiB chunks. The same sizes in both run layouts
//! ([`Layout`]); what differs is where a block's 16-byte allocation header
//! is. In versions 1 and 2 of the heap ([`Layout::Inline`]) it is the
//! block's first 16 bytes, and a request of `s` bytes needs a block of
//! `s + 16`. In version 3 ([`Layout::Table`]) so are those of blocks below
//! [`TABLE_MIN_BLOCK`]; from it up, the header is an entry of a table after
//! the run's bitmap, `s` takes a block of `s` bytes, and the data starts
//! at the block's start, aligned to the largest power of two dividing the
//! block (up to 4 KiB: a 4 KiB object is one page, which allocating it
//! without data never touches). Either way a block costs its header's 16
//! bytes. Internal fragmentation, the header counted as waste,
//! `(block + 16 − s) / (block + 16)` (table) or `(block − s) / block`
//! (inline):
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
//! unused bytes (run header, bitmap, alignment, remainder: everything but
//! the blocks and their headers) are at most 1/8 of the span; every class
//! up to 16 KiB blocks uses one chunk.

pub use crate::layout::Layout;
use crate::layout::{ALLOC_HEADER_SIZE, CHUNK_SIZE, RUN_HEADER_SIZE};
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
    /// Bytes per block (the allocation header included where it is
    /// inline, not where it is in the run's header table).
    pub block: u64,
    /// Chunks per run.
    pub chunks: u32,
    /// Blocks per run.
    pub nblocks: u32,
    /// Offset of block 0 from the run start (after header, bitmap and
    /// header table; 64-byte aligned, and with a header table aligned to
    /// the largest power of two up to 4 KiB that divides the block).
    pub data_off: u64,
    /// Offset of the allocation header table from the run start (64-byte
    /// aligned, right after the bitmap), or 0 when every block carries
    /// its header (the inline layout, and blocks below
    /// [`TABLE_MIN_BLOCK`] in the table layout).
    pub headers_off: u64,
    /// Bytes of the allocation header inside each block (16 inline, 0
    /// with a header table).
    head: u64,
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

    /// Bytes of a block's allocation header inside the block: 16 where
    /// headers are inline, 0 with a header table.
    #[inline]
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Bytes an object in a block of this class may use.
    #[inline]
    pub fn usable(&self) -> u64 {
        self.block - self.head
    }

    /// Pool offset of block `i`'s data, in the run starting at pool
    /// offset `start`.
    #[inline]
    pub fn data(&self, start: u64, i: u32) -> u64 {
        start + self.data_off + u64::from(i) * self.block + self.head
    }

    /// Pool offset of block `i`'s allocation header, in the run starting
    /// at pool offset `start`.
    #[inline]
    pub fn header(&self, start: u64, i: u32) -> u64 {
        if self.headers_off == 0 {
            start + self.data_off + u64::from(i) * self.block
        } else {
            start + self.headers_off + u64::from(i) * ALLOC_HEADER_SIZE
        }
    }
}

/// Smallest block whose allocation header goes into its run's header
/// table in the table layout. Below it a header costs no line of its
/// own: 16 bytes in front of a small object share its lines (a 48-byte
/// object and its header fill one 64-byte block), where a table entry
/// would be one more line to write back per allocation, and the 16-byte
/// class steps make the header's 16 bytes the only difference in size.
/// From 256 bytes up, keeping the block's bytes untouched (and, above 512
/// bytes, where classes step by a quarter power of two, a 4 KiB request
/// in a 4 KiB block instead of a 5 KiB one) is worth the entry's line.
pub const TABLE_MIN_BLOCK: u64 = 256;

/// Whether blocks of `block` bytes keep their headers in a table in
/// `layout`.
fn in_table(layout: Layout, block: u64) -> bool {
    layout == Layout::Table && block >= TABLE_MIN_BLOCK
}

/// How a run of `chunks` chunks of `block`-byte blocks is laid out:
/// blocks, header table offset (0: headers inline), data offset.
fn run_layout(layout: Layout, block: u64, chunks: u32) -> (u64, u64, u64) {
    let span = u64::from(chunks) * CHUNK_SIZE;
    let table = in_table(layout, block);
    let (entry, align) = if table {
        (
            ALLOC_HEADER_SIZE,
            (1u64 << block.trailing_zeros()).clamp(64, 4096),
        )
    } else {
        (0, 64)
    };
    // Blocks if the metadata were free, then shrink until it fits.
    let mut n = (span - RUN_HEADER_SIZE) / (block + entry);
    loop {
        let bitmap_end = RUN_HEADER_SIZE + n.div_ceil(64) * 8;
        let (headers, meta_end) = if table {
            let h = bitmap_end.div_ceil(64) * 64;
            (h, h + n * entry)
        } else {
            (0, bitmap_end)
        };
        let data = meta_end.div_ceil(align) * align;
        if data + n * block <= span || n == 0 {
            return (n, headers, data);
        }
        n -= 1;
    }
}

fn build(layout: Layout) -> Vec<Class> {
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
            let per = if in_table(layout, block) {
                block + ALLOC_HEADER_SIZE
            } else {
                block
            };
            let pick = (1..=MAX_RUN_CHUNKS)
                .find(|&c| {
                    let (n, _, _) = run_layout(layout, block, c);
                    let span = u64::from(c) * CHUNK_SIZE;
                    n >= 1 && (span - n * per) * 8 <= span
                })
                .unwrap_or(MAX_RUN_CHUNKS);
            let (n, headers_off, data_off) = run_layout(layout, block, pick);
            Class {
                index: i as u8,
                block,
                chunks: pick,
                nblocks: n as u32,
                data_off,
                headers_off,
                head: if headers_off == 0 {
                    ALLOC_HEADER_SIZE
                } else {
                    0
                },
                recip: u64::MAX / block + 1,
            }
        })
        .collect()
}

static INLINE: LazyLock<Vec<Class>> = LazyLock::new(|| build(Layout::Inline));
static TABLE: LazyLock<Vec<Class>> = LazyLock::new(|| build(Layout::Table));

/// The class table of `layout`, ascending block sizes (the same sizes and
/// indexes in both layouts).
pub fn classes(layout: Layout) -> &'static [Class] {
    match layout {
        Layout::Inline => &INLINE,
        Layout::Table => &TABLE,
    }
}

/// The class serving a request of `size` bytes in `layout` (the first
/// whose blocks' usable bytes hold it), or `None` above the largest (a
/// huge span).
pub fn class_for(layout: Layout, size: u64) -> Option<&'static Class> {
    let t = classes(layout);
    let i = t.partition_point(|c| c.usable() < size);
    t.get(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUTS: [Layout; 2] = [Layout::Inline, Layout::Table];

    #[test]
    fn split_divides_exactly() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for c in classes(Layout::Table) {
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
        for layout in LAYOUTS {
            let t = classes(layout);
            assert!(t.len() < 256);
            assert_eq!(t[0].block, 32);
            assert_eq!(t.last().map(|c| c.block), Some(MAX_RUN_BLOCK));
            for w in t.windows(2) {
                assert!(w[0].block < w[1].block);
            }
            for (c, o) in t.iter().zip(classes(Layout::Inline)) {
                assert_eq!((c.index, c.block), (o.index, o.block), "same sizes");
                assert!(c.block.is_multiple_of(16));
                assert!(c.nblocks >= 1, "class {c:?}");
                let span = u64::from(c.chunks) * CHUNK_SIZE;
                assert!(c.data_off + u64::from(c.nblocks) * c.block <= span);
                assert!(c.data_off.is_multiple_of(64));
                let bitmap_end = RUN_HEADER_SIZE + c.bitmap_words() * 8;
                assert_eq!(c.headers_off != 0, in_table(layout, c.block));
                match c.headers_off {
                    0 => assert!(bitmap_end <= c.data_off),
                    _ => {
                        assert!(c.headers_off >= bitmap_end && c.headers_off.is_multiple_of(64));
                        let table_end = c.headers_off + u64::from(c.nblocks) * ALLOC_HEADER_SIZE;
                        assert!(table_end <= c.data_off, "class {c:?}");
                        // Natural alignment up to a page.
                        let align = (1u64 << c.block.trailing_zeros()).clamp(64, 4096);
                        assert!(c.data(0, 0).is_multiple_of(align), "class {c:?}");
                        if c.block.is_multiple_of(align) {
                            assert!(c.data(0, 1).is_multiple_of(align));
                        }
                    }
                }
                // Headers and data never overlap, and stay in the span.
                let last = c.nblocks - 1;
                assert!(c.header(0, last) + ALLOC_HEADER_SIZE <= c.data(0, 0) || c.head() != 0);
                assert_eq!(
                    c.data(0, last) + c.usable(),
                    c.data_off + u64::from(c.nblocks) * c.block
                );
                if c.block <= 16 * 1024 {
                    assert_eq!(c.chunks, 1, "class {c:?}");
                }
            }
        }
        // The table layout's 4 KiB class: 63 page-aligned blocks in one
        // chunk, against 51 blocks of 5 KiB for a 4 KiB request inline.
        let c = class_for(Layout::Table, 4096).unwrap();
        assert_eq!(
            (c.block, c.nblocks, c.data_off, c.chunks),
            (4096, 63, 4096, 1)
        );
        assert_eq!(class_for(Layout::Inline, 4096).unwrap().block, 5120);
    }

    /// Internal fragmentation ≤ 25 % for every request ≥ 97 bytes, header
    /// counted as waste, including the huge range (spans of whole chunks).
    #[test]
    fn fragmentation_bound_holds_from_97_bytes() {
        for layout in LAYOUTS {
            let waste = |s: u64| -> (u64, u64) {
                let (block, head) = match class_for(layout, s) {
                    Some(c) => (c.block, ALLOC_HEADER_SIZE - c.head()),
                    None => ((s + 64).div_ceil(CHUNK_SIZE) * CHUNK_SIZE, 0),
                };
                (block + head - s, block + head)
            };
            let mut s = 97;
            while s < 64 * CHUNK_SIZE {
                let (w, b) = waste(s);
                assert!(w * 4 <= b, "{layout:?} request {s}: block {b} wastes {w}");
                s += if s < 1 << 16 { 1 } else { 61 };
            }
            // Around every class and chunk boundary exactly.
            for c in classes(layout) {
                for s in [c.usable(), c.usable() + 1]
                    .into_iter()
                    .filter(|&s| s >= 97)
                {
                    let (w, b) = waste(s);
                    assert!(w * 4 <= b, "{layout:?} request {s}: block {b} wastes {w}");
                }
            }
            // Below 97 the header dominates: 81 bytes take 112.
            let (w, b) = waste(81);
            assert!(w * 4 > b);
        }
    }
}
