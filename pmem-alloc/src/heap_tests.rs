//! The lock-free lookups (chunk map) against the locked ones they replaced
//! (run map + huge map under the global lock), brute force over every
//! 16-byte offset of a small heap, at every kind of change of a chunk's
//! role: run creation, huge reserve / cancel / publish / free, run
//! retirement (retiring, then reclaimed), and rebuild at open.

use super::*;
use crate::HeapRegion;
use pmem_pool::{Mode, PoolOptions, RawPool};

impl Heap {
    /// The run whose span contains chunk `c` (the old lookup).
    fn run_covering_locked(&self, c: u32) -> Option<Arc<Run>> {
        sync::read(&self.runs)
            .range(..=c)
            .next_back()
            .filter(|(f, r)| c < **f + r.chunks())
            .map(|(_, r)| r.clone())
    }

    /// `data_range_ok` as it was before the chunk map.
    fn data_range_ok_locked(&self, off: u64, len: u64) -> bool {
        let Some(end) = off.checked_add(len.max(1)) else {
            return false;
        };
        let Some(c) = self.geo.chunk_of(off) else {
            return false;
        };
        if let Some(run) = self.run_covering_locked(c) {
            let data = run.start + run.class.data_off;
            let Some(rel) = off.checked_sub(data) else {
                return false;
            };
            let i = rel / run.class.block;
            if i >= u64::from(run.class.nblocks) {
                return false;
            }
            let block = data + i * run.class.block;
            return off >= block + run.class.head() && end <= block + run.class.block;
        }
        let g = sync::lock(&self.global);
        match g.huge.range(..=c).next_back() {
            Some((&first, h)) if c < first + h.span => {
                let start = self.geo.chunk_off(first);
                off >= start + self.geo.huge_data && end <= start + u64::from(h.span) * CHUNK_SIZE
            }
            _ => false,
        }
    }

    /// `locate` as it was: (first chunk, block index or span, is huge).
    fn locate_locked(&self, off: u64) -> Option<(u32, u32, bool)> {
        let c = self.geo.chunk_of(off)?;
        if let Some(run) = self.run_covering_locked(c) {
            return Some((run.first, run.block_of(off)?, false));
        }
        let g = sync::lock(&self.global);
        let h = g.huge.get(&c)?;
        (off == self.geo.chunk_off(c) + self.geo.huge_data).then_some((c, h.span, true))
    }
}

/// Compares old and new answers at every 16-byte offset (and a few
/// unaligned ones) from before the chunk area to past its end; returns how
/// many ranges were accepted, so callers can assert the state changed.
fn agree(heap: &Heap, when: &str) -> u64 {
    let g = heap.geo;
    let lo = g.chunks_offset.saturating_sub(64);
    let hi = g.chunks_offset + g.chunk_count * CHUNK_SIZE + 64;
    let mut accepted = 0;
    for off in (lo..hi).step_by(16) {
        for (o, len) in [(off, 8), (off, 64), (off + 8, 8), (off, 3000)] {
            let (new, old) = (
                heap.data_range_ok(o, len),
                heap.data_range_ok_locked(o, len),
            );
            assert_eq!(new, old, "{when}: data_range_ok({o:#x}, {len})");
            accepted += u64::from(new);
        }
        let new = heap.locate(off).map(|w| match w {
            Where::Block { first, idx, .. } => (first, idx, false),
            Where::Huge { first, span } => (first, span, true),
        });
        assert_eq!(new, heap.locate_locked(off), "{when}: locate({off:#x})");
    }
    accepted
}

struct Pool {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    raw: RawPool,
}

fn opts() -> PoolOptions {
    PoolOptions::new().mode(Mode::Sim).ignore_env(true)
}

fn open(raw: &RawPool) -> Heap {
    let h = raw.header();
    let region = HeapRegion {
        offset: h.heap_offset,
        size: h.heap_size,
    };
    // SAFETY: this pool's persister is used for every call on the heap,
    // and nothing else writes the heap region.
    unsafe { Heap::open(raw.persister(), region) }.unwrap()
}

fn alloc(heap: &Heap, p: &Persister, size: u64) -> u64 {
    let r = heap.reserve(p, size, 7).unwrap();
    publish(heap, p, r)
}

/// Writes `r`'s header, flushes it (the caller's part of `write_header`),
/// publishes `r` and hands it over; returns its offset.
fn publish(heap: &Heap, p: &Persister, r: Reservation) -> u64 {
    // SAFETY: a live reservation of `heap`; nothing references it.
    unsafe { heap.write_header(p, &r) };
    p.flush(r.hdr as usize, ALLOC_HEADER_SIZE as usize);
    let mut ops = Vec::new();
    heap.publish_ops(&r, &mut ops);
    // SAFETY: ops from this heap's publish_ops.
    unsafe { crate::apply_ops(p, &ops) }.unwrap();
    let off = r.off;
    heap.after_commit(vec![r], Vec::new());
    off
}

fn free(heap: &Heap, p: &Persister, off: u64) {
    let mut ops = Vec::new();
    let t = heap.free_ops(p, off, &mut ops).unwrap();
    // SAFETY: ops from this heap's free_ops.
    unsafe { crate::apply_ops(p, &ops) }.unwrap();
    heap.after_commit(Vec::new(), vec![t]);
}

fn runs_of(heap: &Heap) -> u64 {
    heap.stats().classes.iter().map(|c| c.runs).sum()
}

#[test]
fn lock_free_lookups_agree_with_locked_ones_through_every_role_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap.pool");
    let raw = RawPool::create(&path, "chunkmap", 12 << 20, &opts()).unwrap();
    let pool = Pool {
        _dir: dir,
        path,
        raw,
    };
    let heap = open(&pool.raw);
    let p = pool.raw.persister();
    assert_eq!(agree(&heap, "empty heap"), 0);

    // Runs of several classes (one multi-chunk) and two huge spans.
    let mut objs = Vec::new();
    for size in [16u64, 64, 200, 1000, 9000, 30_000, 200_000] {
        for _ in 0..3 {
            objs.push(alloc(&heap, p, size));
        }
    }
    let huge_a = alloc(&heap, p, 1536 * 1024);
    let huge_b = alloc(&heap, p, 1100 * 1024);
    let full = agree(&heap, "runs and huge spans");
    assert!(full > 0);

    // A reserved (unpublished) span counts, then its cancel clears it.
    let r = heap.reserve(p, 1024 * 1024, 1).unwrap();
    let with_res = agree(&heap, "huge reserved");
    assert!(with_res > full);
    heap.cancel(r);
    assert_eq!(agree(&heap, "huge cancelled"), full);

    // A freed span.
    free(&heap, p, huge_a);
    let after_free = agree(&heap, "huge freed");
    assert!(after_free < full);
    assert!(!heap.data_range_ok(huge_a, 8));

    // Two runs of one class, one emptied: retiring (still in the run map),
    // then reclaimed by the next huge reserve.
    let per_run = u64::from(class_for(heap.geo.layout, 9000).unwrap().nblocks);
    let mut many: Vec<u64> = (0..per_run + 1).map(|_| alloc(&heap, p, 9000)).collect();
    let runs_before = runs_of(&heap);
    agree(&heap, "second run of a class");
    // Empty the newest run (the extra objects live in it).
    many.sort_unstable();
    let last_run_chunk = heap.geo.chunk_of(*many.last().unwrap()).unwrap();
    let in_last: Vec<u64> = many
        .iter()
        .copied()
        .filter(|&o| heap.geo.chunk_of(o) == Some(last_run_chunk))
        .collect();
    assert!(!in_last.is_empty());
    for o in &in_last {
        free(&heap, p, *o);
    }
    assert!(heap.data_range_ok(in_last[0], 8), "retiring: still a run");
    agree(&heap, "run retiring");
    // A reserve too large to succeed processes the retiring runs and
    // reuses none of their chunks.
    assert!(matches!(
        heap.reserve(p, heap.max_alloc(), 1),
        Err(Error::OutOfSpace { .. })
    ));
    assert_eq!(runs_of(&heap), runs_before - 1, "a run was retired");
    assert!(!heap.data_range_ok(in_last[0], 8), "retired: free chunks");
    agree(&heap, "run retired");
    let r = heap.reserve(p, 1024 * 1024, 1).unwrap();
    agree(&heap, "huge reserved after the retire");
    let huge_c = publish(&heap, p, r);
    let published = agree(&heap, "huge published");

    // Rebuild at open gives the same answers.
    drop(heap);
    let path = pool.path.clone();
    drop(pool.raw);
    let raw = RawPool::open(&path, Some("chunkmap"), &opts()).unwrap();
    let heap = open(&raw);
    assert_eq!(agree(&heap, "reopened"), published);
    assert!(heap.data_range_ok(huge_b, 8) && heap.data_range_ok(huge_c, 8));
    assert!(heap.data_range_ok(objs[0], 8));
    assert!(
        !heap.data_range_ok(objs[0] - 8, 8),
        "allocation header refused"
    );
}

/// A free's ticket (what a free reads instead of the header) gives the
/// usable size `alloc_info` gives, for run blocks and huge spans, and a
/// free refuses an offset that starts no block's data.
#[test]
fn usable_matches_alloc_info_without_reading_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let raw =
        RawPool::create(&dir.path().join("usable.pool"), "usable", 12 << 20, &opts()).unwrap();
    let heap = open(&raw);
    let p = raw.persister();
    let usable = |off| {
        let t = heap.free_ops(p, off, &mut Vec::new())?;
        let u = t.usable;
        assert_eq!(t.off, off);
        heap.cancel_free(t);
        Ok::<_, Error>(u)
    };
    for size in [16u64, 64, 200, 9000, 1536 * 1024] {
        let off = alloc(&heap, p, size);
        let info = heap.alloc_info(p, off).unwrap();
        assert!(info.usable >= size);
        assert_eq!(usable(off).unwrap(), info.usable, "size {size}");
        // Overwriting the header changes nothing: it is not read.
        let hdr = heap.header_off(off).unwrap();
        // SAFETY: the block's own header, nothing references it.
        unsafe {
            std::ptr::write_bytes(p.base().add(hdr as usize), 0xAB, ALLOC_HEADER_SIZE as usize)
        };
        assert_eq!(usable(off).unwrap(), info.usable, "size {size}");
        for bad in [off - ALLOC_HEADER_SIZE, off + 8] {
            assert!(
                matches!(usable(bad), Err(Error::NotAllocated { .. })),
                "offset {bad:#x} of a block at {off:#x}"
            );
        }
    }
}
