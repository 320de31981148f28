//! The chunk map: a volatile table with one `AtomicU64` per chunk saying
//! what the chunk belongs to (nothing, a run, or a huge span), so that
//! [`Heap::data_range_ok`](crate::Heap::data_range_ok) and the heap's
//! object lookup classify a pool offset with one `Acquire` load and no lock.
//! `pmem-tx` checks every pointer it dereferences this way, reads included.
//!
//! # Encoding (volatile only, never on media)
//! - `0`: the chunk is free (in the free pool, or taken from it by a run
//!   creation that has not finished yet).
//! - huge span: low 32 bits the span's first chunk, high 32 bits its length
//!   in chunks (≥ 1, so the high half is never 0). Chunk numbers and spans
//!   fit `u32`: the geometry caps the chunk count at `u32::MAX`.
//! - run: high 32 bits 0, low 32 bits [`RUN_TAG`] | (chunk − first chunk of
//!   the run) << 8 | class index. A run spans at most
//!   [`MAX_RUN_CHUNKS`](crate::class::MAX_RUN_CHUNKS) chunks, so the
//!   distance back fits the 23 bits between the tag and the class index.
//!
//! # Who writes it, and when
//! Every write happens under the heap's global mutex (or in
//! `Heap::assemble`, before the heap is shared), at each change of a
//! chunk's role:
//! - run creation: set to the run after the run is in the heap's run map and
//!   before any of its blocks is handed out;
//! - run retirement (`process_retiring`): cleared for an empty, retired run
//!   (no block reserved, allocated or being freed), before its chunks go
//!   back to the free pool;
//! - huge reserve: set after the span is taken from the free pool and
//!   before the reservation is returned;
//! - huge cancel / free after commit: cleared before the span goes back to
//!   the free pool;
//! - open (rebuild): filled from what the chunk headers say.
//!
//! Publishing or freeing an object changes no entry: a reserved block or
//! span already counts as inside an object, as it did with the locked
//! lookup this table replaces.
//!
//! # Why lock-free reads are correct
//! A chunk's entry changes only while the chunk is part of no published or
//! reserved object: a new run's chunks were just taken from the free pool,
//! a retired run is empty, a huge span is cleared only when its reservation
//! is cancelled or its free has committed. So a reader racing with a change
//! can only be asking about a pointer that was already invalid (into free
//! chunks, or into an object its own program has freed or never had). It
//! may then get either answer, and both are as safe as before: the pointer
//! is refused, or it is accepted into memory that holds no object of its
//! program. This is no new window: the locked lookup this table replaces
//! gave an answer that could be stale as soon as it released its lock, so
//! it never caught a use-after-free either (byte access stays serialised by
//! the transaction layer's range locks). What both guarantee is that a
//! pointer into a live object is accepted, and a pointer into the metadata
//! of a live run (header, bitmap, allocation headers) is refused.
//!
//! A reader asking about a valid object obtained its pointer
//! through a happens-before chain (a lock, a join, a channel) from the
//! thread that reserved it, which ran after the `Release` store that set
//! the entry: its `Acquire` load sees that store or a later one, and no
//! later one happens while the object lives.
//!
//! A torn view across chunks (a multi-chunk run or span half set) is
//! harmless for the same reason: every entry is self-contained (it names
//! its own first chunk and length), and the half-written object is not yet
//! (or no longer) anyone's.

use crate::class::{Class, Layout, classes};
use crate::sync::{AtomicU64, Ordering};

/// Marks a run entry (bit 31 of the low half).
const RUN_TAG: u64 = 1 << 31;

/// What one chunk belongs to, as the chunk map says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Nothing: a free chunk.
    Free,
    /// A run of `class` starting at chunk `first`.
    Run { first: u32, class: &'static Class },
    /// A huge span of `span` chunks starting at chunk `first`.
    Huge { first: u32, span: u32 },
}

/// One atomic entry per chunk of the heap (module docs).
pub(crate) struct ChunkMap {
    cells: Box<[AtomicU64]>,
    /// The heap's class table, which run entries index.
    classes: &'static [Class],
}

impl std::fmt::Debug for ChunkMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkMap")
            .field("chunks", &self.cells.len())
            .finish()
    }
}

impl ChunkMap {
    /// A map of `chunks` chunks, all free, of a heap with run `layout`.
    pub(crate) fn new(chunks: u64, layout: Layout) -> ChunkMap {
        ChunkMap {
            cells: (0..chunks).map(|_| AtomicU64::new(0)).collect(),
            classes: classes(layout),
        }
    }

    /// What chunk `c` belongs to (`Free` past the end).
    pub(crate) fn get(&self, c: u32) -> Owner {
        let Some(cell) = self.cells.get(c as usize) else {
            return Owner::Free;
        };
        decode(self.classes, c, cell.load(Ordering::Acquire))
    }

    /// Marks chunks `first..first + class.chunks` as the run of `class` at
    /// `first`.
    pub(crate) fn set_run(&self, first: u32, class: &'static Class) {
        for back in 0..class.chunks {
            let v = RUN_TAG | u64::from(back) << 8 | u64::from(class.index);
            self.store(first + back, v);
        }
    }

    /// Marks chunks `first..first + span` as the huge span at `first`.
    pub(crate) fn set_huge(&self, first: u32, span: u32) {
        let v = u64::from(span) << 32 | u64::from(first);
        for c in first..first + span {
            self.store(c, v);
        }
    }

    /// Marks chunks `first..first + span` free.
    pub(crate) fn clear(&self, first: u32, span: u32) {
        for c in first..first + span {
            self.store(c, 0);
        }
    }

    fn store(&self, c: u32, v: u64) {
        if let Some(cell) = self.cells.get(c as usize) {
            cell.store(v, Ordering::Release);
        }
    }
}

/// The owner of chunk `c` from its entry `v`.
fn decode(classes: &'static [Class], c: u32, v: u64) -> Owner {
    let (hi, lo) = ((v >> 32) as u32, v as u32);
    if hi != 0 {
        return Owner::Huge {
            first: lo,
            span: hi,
        };
    }
    if u64::from(lo) & RUN_TAG == 0 {
        return Owner::Free;
    }
    let back = (lo & !(RUN_TAG as u32)) >> 8;
    match (c.checked_sub(back), classes.get(usize::from(lo as u8))) {
        (Some(first), Some(class)) => Owner::Run { first, class },
        // Never written so: read as free (refuses the pointer).
        _ => Owner::Free,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let m = ChunkMap::new(64, Layout::Table);
        assert_eq!(m.get(3), Owner::Free);
        let big = classes(Layout::Table)
            .iter()
            .max_by_key(|c| c.chunks)
            .unwrap();
        assert!(big.chunks > 1);
        m.set_run(10, big);
        for c in 10..10 + big.chunks {
            assert_eq!(
                m.get(c),
                Owner::Run {
                    first: 10,
                    class: big
                }
            );
        }
        assert_eq!(m.get(10 + big.chunks), Owner::Free);
        let small = &classes(Layout::Table)[0];
        m.set_run(0, small);
        assert_eq!(
            m.get(0),
            Owner::Run {
                first: 0,
                class: small
            }
        );
        m.set_huge(40, 20);
        assert_eq!(
            m.get(59),
            Owner::Huge {
                first: 40,
                span: 20
            }
        );
        assert_eq!(m.get(60), Owner::Free);
        m.clear(40, 20);
        assert_eq!(m.get(40), Owner::Free);
        m.clear(10, big.chunks);
        assert_eq!(m.get(10), Owner::Free);
        assert_eq!(m.get(1000), Owner::Free, "past the end");
        m.set_huge(1000, 2);
        assert_eq!(m.get(1000), Owner::Free, "stores past the end ignored");
    }

    #[test]
    fn extreme_huge_span_is_not_a_run() {
        let v = u64::from(u32::MAX) << 32;
        assert_eq!(
            decode(classes(Layout::Table), 5, v),
            Owner::Huge {
                first: 0,
                span: u32::MAX
            }
        );
    }
}
