//! Reserve / publish / free / cancel through the whole size range.

mod common;

use common::*;
use pmem_alloc::class::{Layout, MAX_RUN_BLOCK, class_for, classes};
use pmem_alloc::layout::{CHUNK_SIZE, Geometry, HUGE_DATA_OFF, HUGE_DATA_OFF_V1, HeapHeader};
use pmem_alloc::{Error, check_bytes};

const MIB: u64 = 1 << 20;

/// Every class boundary (largest request of a class and the next byte), and
/// huge sizes: alloc_info round trip, objects() by type, stats, check.
#[test]
fn every_class_boundary_and_huge_round_trip() {
    let f = Fixture::new(64 * MIB);
    let layout = f.heap().geometry().layout;
    let mut sizes = vec![0u64, 1, 15, 16, 17];
    for c in classes(layout).iter().filter(|c| c.block <= 64 * 1024) {
        sizes.push(c.usable());
        sizes.push(c.usable() + 1);
    }
    // Just above the largest class, and two multi-chunk spans.
    let largest = classes(layout).last().unwrap();
    assert_eq!(largest.block, MAX_RUN_BLOCK);
    sizes.extend([largest.usable() + 1, CHUNK_SIZE * 4, CHUNK_SIZE * 6 + 3]);
    let mut got = Vec::new();
    for (i, &s) in sizes.iter().enumerate() {
        let off = f.alloc(s, i as u64 % 5).unwrap();
        let info = f.heap().alloc_info(f.p(), off).unwrap();
        assert_eq!((info.off, info.size, info.type_num), (off, s, i as u64 % 5));
        assert!(info.usable >= s);
        // The smallest block that fits: usable < the next smaller class's.
        if let Some(c) = classes(layout).iter().find(|c| c.usable() >= s) {
            assert_eq!(info.usable, c.usable(), "size {s}");
            assert_eq!(class_for(layout, s), Some(c));
        } else {
            // A huge span: the data starts a cache line into its first
            // chunk (heap format 2).
            let span = (s + HUGE_DATA_OFF).div_ceil(CHUNK_SIZE);
            assert_eq!(info.usable, span * CHUNK_SIZE - HUGE_DATA_OFF, "size {s}");
            assert_eq!(off % 64, 0, "huge object of {s} bytes at {off:#x}");
        }
        got.push(info);
    }
    // Distinct, non-overlapping objects.
    let mut spans: Vec<(u64, u64)> = got.iter().map(|i| (i.off, i.off + i.usable)).collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap {w:?}");
    }
    let all = f.heap().objects(f.p(), None);
    assert_eq!(all.len(), sizes.len());
    got.sort_by_key(|i| i.off);
    assert_eq!(all, got);
    let t3 = f.heap().objects(f.p(), Some(3));
    assert_eq!(
        t3.len(),
        sizes.iter().enumerate().filter(|(i, _)| i % 5 == 3).count()
    );
    assert!(t3.iter().all(|i| i.type_num == 3));
    let rep = assert_ok(f.heap(), f.p());
    assert_eq!(rep.objects, sizes.len() as u64);
    assert_eq!(
        rep.objects_by_type.values().sum::<u64>(),
        sizes.len() as u64
    );
    let st = f.heap().stats();
    let used: u64 = st.classes.iter().map(|c| c.blocks_used).sum();
    assert_eq!(used + st.huge_objects, sizes.len() as u64);
    assert_eq!(st.huge_objects, 3);
    assert_eq!(st.used_bytes, rep.used_bytes);
}

#[test]
fn free_then_reuse_and_double_free_is_an_error() {
    let f = Fixture::new(8 * MIB);
    let a = f.alloc(100, 1).unwrap();
    let b = f.alloc(100, 1).unwrap();
    f.free(a).unwrap();
    assert!(matches!(f.free(a), Err(Error::NotAllocated { off }) if off == a));
    // A second free in flight of the same object is refused too.
    let (t, _ops) = free_ticket(f.heap(), f.p(), b).unwrap();
    assert!(matches!(
        free_ticket(f.heap(), f.p(), b),
        Err(Error::NotAllocated { .. })
    ));
    f.heap().cancel_free(t);
    assert_eq!(f.heap().alloc_info(f.p(), b).unwrap().size, 100);
    // The freed block is reused.
    let c = f.alloc(100, 2).unwrap();
    assert_eq!(c, a);
    // Not an object start: inside an object, header, outside the heap.
    for off in [b + 16, b - 16, 0, u64::MAX] {
        assert!(
            matches!(
                f.heap().free_ops(f.p(), off, &mut Vec::new()),
                Err(Error::NotAllocated { .. })
            ),
            "{off:#x}"
        );
        assert!(f.heap().alloc_info(f.p(), off).is_err());
    }
    // Huge: free twice.
    let h = f.alloc(3 * CHUNK_SIZE, 9).unwrap();
    f.free(h).unwrap();
    assert!(matches!(f.free(h), Err(Error::NotAllocated { .. })));
    assert_ok(f.heap(), f.p());
}

#[test]
fn unpublished_reservation_is_not_freeable_and_cancel_returns_it() {
    let f = Fixture::new(8 * MIB);
    let r = f.heap().reserve(f.p(), 64, 0).unwrap();
    let off = r.off;
    assert!(matches!(
        f.heap().free_ops(f.p(), off, &mut Vec::new()),
        Err(Error::NotAllocated { .. })
    ));
    // Not handed out twice while reserved.
    let r2 = f.heap().reserve(f.p(), 64, 0).unwrap();
    assert_ne!(r2.off, off);
    f.heap().cancel(r);
    let r3 = f.heap().reserve(f.p(), 64, 0).unwrap();
    assert_eq!(r3.off, off, "cancel gives the block back");
    f.heap().cancel(r2);
    f.heap().cancel(r3);
    let h = f.heap().reserve(f.p(), 2 * CHUNK_SIZE, 0).unwrap();
    let hoff = h.off;
    f.heap().cancel(h);
    assert_eq!(
        f.heap().reserve(f.p(), 2 * CHUNK_SIZE, 0).unwrap().off,
        hoff
    );
    assert!(f.heap().objects(f.p(), None).is_empty());
}

#[test]
fn too_large_and_out_of_space_then_space_again() {
    let f = Fixture::new(4 * MIB);
    let max = f.heap().max_alloc();
    assert!(matches!(
        f.heap().reserve(f.p(), max + 1, 0),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        f.heap().reserve(f.p(), u64::MAX, 0),
        Err(Error::TooLarge { .. })
    ));
    let mut offs = Vec::new();
    let err = loop {
        match f.alloc(4000, 0) {
            Ok(o) => offs.push(o),
            Err(e) => break e,
        }
    };
    match err {
        Error::OutOfSpace {
            requested,
            largest_free,
        } => {
            assert_eq!(requested, 4000);
            assert_eq!(largest_free, 0);
        }
        e => panic!("expected OutOfSpace, got {e}"),
    }
    assert!(offs.len() > 100);
    assert!(matches!(
        f.alloc(CHUNK_SIZE, 0),
        Err(Error::OutOfSpace { .. })
    ));
    f.free(offs.pop().unwrap()).unwrap();
    f.alloc(4000, 0).unwrap();
    for o in offs.drain(..) {
        f.free(o).unwrap();
    }
    // Everything free again: a span of all chunks can be allocated.
    let all = f.heap().geometry().chunk_count * CHUNK_SIZE - 16;
    assert!(f.alloc(all, 0).is_err(), "one block is still allocated");
    assert_ok(f.heap(), f.p());
}

/// Fill with mixed sizes, free all, fill again: the second fill fits exactly
/// as many objects, and chunks freed by one class serve another.
#[test]
fn fill_free_refill_does_not_grow_and_chunks_change_class() {
    let mut f = Fixture::new(6 * MIB);
    let sizes = [40u64, 200, 1000, 3000, 70_000];
    let fill = |f: &Fixture| -> Vec<u64> {
        let mut v = Vec::new();
        let mut i = 0;
        loop {
            match f.alloc(sizes[i % sizes.len()], 0) {
                Ok(o) => v.push(o),
                Err(Error::OutOfSpace { .. }) => break v,
                Err(e) => panic!("{e}"),
            }
            i += 1;
        }
    };
    let first = fill(&f);
    let used1 = f.heap().stats().used_bytes;
    for &o in &first {
        f.free(o).unwrap();
    }
    let second = fill(&f);
    assert_eq!(first.len(), second.len());
    assert_eq!(f.heap().stats().used_bytes, used1);
    for &o in &second {
        f.free(o).unwrap();
    }
    // One class only now: it takes chunks the others held.
    let mut n = 0;
    while f.alloc(48, 0).is_ok() {
        n += 1;
    }
    let layout = f.heap().geometry().layout;
    let per_run = u64::from(class_for(layout, 48).unwrap().nblocks);
    let chunks = f.heap().geometry().chunk_count;
    assert_eq!(
        n,
        per_run * chunks,
        "every chunk became a run of that class"
    );
    assert_ok(f.heap(), f.p());
    f.reopen();
    assert_eq!(f.heap().objects(f.p(), None).len() as u64, n);
    assert_ok(f.heap(), f.p());
}

/// A run found full leaves the list reservers look at, and a free puts it
/// back: with every run of a class full, the blocks freed in the older
/// runs are the next ones reserved, each once, before any new run is made.
#[test]
fn blocks_freed_in_full_runs_are_reserved_before_a_new_run() {
    let f = Fixture::new(64 * MIB);
    let size = 4000;
    let class = class_for(f.heap().geometry().layout, size).unwrap();
    let per_run = u64::from(class.nblocks);
    let runs = |f: &Fixture| f.heap().stats().classes[usize::from(class.index)].runs;
    let objs: Vec<u64> = (0..3 * per_run)
        .map(|_| f.alloc(size, 1).unwrap())
        .collect();
    assert_eq!(runs(&f), 3, "three full runs");
    for round in 0..2 {
        let freed = [
            objs[3],
            objs[per_run as usize + 7],
            objs[per_run as usize + 8],
        ];
        for &o in &freed {
            f.free(o).unwrap();
        }
        let mut again: Vec<u64> = (0..3).map(|_| f.alloc(size, 1).unwrap()).collect();
        again.sort_unstable();
        let mut want = freed.to_vec();
        want.sort_unstable();
        assert_eq!(again, want, "round {round}: the freed blocks come back");
        assert_eq!(runs(&f), 3, "round {round}: no new run");
        assert_ok(f.heap(), f.p());
    }
    let next = f.alloc(size, 1).unwrap();
    assert!(!objs.contains(&next));
    assert_eq!(runs(&f), 4, "every run is full: a new one");
}

#[test]
fn reopen_rebuilds_the_same_state() {
    let mut f = Fixture::new(128 * MIB);
    let mut live = Vec::new();
    for i in 0..600u64 {
        let s = [24u64, 100, 500, 5000, 300_000, 1_100_000][(i % 6) as usize];
        live.push(f.alloc(s, i % 7).unwrap());
        if i % 3 == 0 {
            let o = live.swap_remove((i as usize * 7919) % live.len());
            f.free(o).unwrap();
        }
    }
    let objs = f.heap().objects(f.p(), None);
    let rep = assert_ok(f.heap(), f.p());
    let st = f.heap().stats();
    f.reopen();
    assert_eq!(f.heap().objects(f.p(), None), objs);
    let rep2 = assert_ok(f.heap(), f.p());
    assert_eq!(rep2, rep);
    let st2 = f.heap().stats();
    let used = |s: &pmem_alloc::HeapStats| {
        s.classes
            .iter()
            .map(|c| (c.blocks_used, c.runs))
            .collect::<Vec<_>>()
    };
    // Every run held live objects, so none was retired at open.
    assert_eq!(used(&st2), used(&st));
    assert_eq!(st2.used_bytes, st.used_bytes);
    assert_eq!(st2.free_bytes, st.free_bytes);
    assert_eq!(
        (st2.huge_objects, st2.free_chunks),
        (st.huge_objects, st.free_chunks)
    );
    // And the rebuilt heap keeps working.
    for o in live {
        f.free(o).unwrap();
    }
    assert!(f.heap().objects(f.p(), None).is_empty());
    assert_ok(f.heap(), f.p());
}

#[test]
fn empty_runs_are_freed_at_open() {
    let mut f = Fixture::new(8 * MIB);
    let a = f.alloc(64, 0).unwrap();
    let b = f.alloc(3000, 0).unwrap();
    f.free(a).unwrap();
    f.free(b).unwrap();
    // Runs are kept while open...
    assert_eq!(
        f.heap().stats().classes.iter().map(|c| c.runs).sum::<u64>(),
        2
    );
    f.reopen();
    let st = f.heap().stats();
    assert_eq!(st.classes.iter().map(|c| c.runs).sum::<u64>(), 0);
    assert_eq!(st.free_chunks, st.total_chunks);
    assert_eq!(st.fragmentation, 0.0);
    assert_ok(f.heap(), f.p());
}

/// reserve is volatile only except for run creation (2 fences); the header
/// write neither flushes nor fences (the caller flushes it with the data);
/// cancel, free_ops and after_commit write nothing.
#[test]
fn fence_counts_of_reserve_header_and_free() {
    let f = Fixture::new(8 * MIB);
    let (heap, p) = (f.heap(), f.p());
    let sim = p.sim().unwrap().clone();
    sim.reset_counters();
    let r = heap.reserve(p, 64, 0).unwrap();
    assert_eq!(
        sim.counters().fences,
        2,
        "new run: header+bitmap, chunk header"
    );
    sim.reset_counters();
    let r2 = heap.reserve(p, 64, 0).unwrap();
    // SAFETY: a live reservation of this heap.
    unsafe { heap.write_header(p, &r2) };
    let c = sim.counters();
    assert_eq!((c.fences, c.flush_calls), (0, 0), "the caller flushes it");
    p.flush((r2.off - 16) as usize, 16);
    heap.cancel(r);
    let off = publish(heap, p, r2);
    sim.reset_counters();
    let (t, ops) = free_ticket(heap, p, off).unwrap();
    heap.cancel_free(t);
    let (t, _) = free_ticket(heap, p, off).unwrap();
    apply(p, &ops);
    sim.reset_counters();
    heap.after_commit(Vec::new(), vec![t]);
    let h = heap.reserve(p, 4 * CHUNK_SIZE, 0).unwrap();
    heap.cancel(h);
    assert_eq!(sim.counters().fences, 0);
    assert!(sim.is_fully_persisted(), "nothing left unflushed");
}

/// Stores `bytes` at pool offset `off` of the live mapping.
fn poke_bytes(f: &Fixture, off: u64, bytes: &[u8]) {
    let raw = f.raw.as_ref().unwrap();
    assert!(off + bytes.len() as u64 <= raw.size());
    // SAFETY: the range lies inside the live mapping of this pool; the
    // test is single-threaded, the heap over it is closed, and no
    // reference into the pool is alive.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), raw.base().add(off as usize), bytes.len())
    };
}

/// Closes the fixture's heap, rewrites its header (geometry `g`) as one
/// of format `version`, checksum and all, and reopens it.
fn rewrite_heap_version(f: &mut Fixture, g: &Geometry, version: u32) {
    f.heap = None;
    let mut h = HeapHeader::new(g);
    h.version = version;
    h.crc32 = pmem_pool::crc::crc32c(&h.to_bytes()[..0xFFC]);
    poke_bytes(f, g.region_offset, &h.to_bytes());
    f.reopen();
}

/// A heap of format version 1 (huge objects' data 16 bytes into their
/// first chunk) still opens, allocates huge objects where version 1 put
/// them, finds them again after a reopen, and checks clean, live and
/// offline.
#[test]
fn version_1_heap_keeps_its_huge_layout() {
    let mut f = Fixture::new(16 * MIB);
    let g = f.heap().geometry();
    assert_eq!(g.huge_data, HUGE_DATA_OFF);
    // Turn the fresh heap's header into version 1's.
    rewrite_heap_version(&mut f, &g, 1);
    assert_eq!(f.heap().geometry().huge_data, HUGE_DATA_OFF_V1);

    // Above the largest run class (917504 bytes): a huge span.
    let size = 4 * CHUNK_SIZE;
    let off = f.alloc(size, 9).unwrap();
    let small = f.alloc(100, 3).unwrap();
    assert_eq!((off - g.chunks_offset) % CHUNK_SIZE, HUGE_DATA_OFF_V1);
    let info = f.heap().alloc_info(f.p(), off).unwrap();
    assert_eq!(info.usable, 5 * CHUNK_SIZE - HUGE_DATA_OFF_V1);
    assert!(f.heap().alloc_info(f.p(), off + 48).is_err());

    f.reopen();
    let info = f.heap().alloc_info(f.p(), off).unwrap();
    assert_eq!((info.size, info.type_num), (size, 9));
    assert_eq!(f.heap().alloc_info(f.p(), small).unwrap().type_num, 3);
    assert_eq!(assert_ok(f.heap(), f.p()).objects, 2);
    let bytes = std::fs::read(&f.path).unwrap();
    assert!(check_bytes(&bytes, region(f.raw.as_ref().unwrap())).is_ok());
    f.free(off).unwrap();
    f.reopen();
    assert!(f.heap().alloc_info(f.p(), off).is_err());
    assert_eq!(assert_ok(f.heap(), f.p()).objects, 1);
}

/// A heap of format version 2 (every run block's allocation header in its
/// first 16 bytes) still opens, lays its runs out inline, allocates and
/// frees in them, and checks clean after a reopen; a fresh heap is version
/// 3, whose headers sit in a table after each run's bitmap, so that a
/// 4 KiB request takes a page-aligned 4 KiB block.
#[test]
fn version_2_heap_keeps_its_inline_headers() {
    let mut f = Fixture::new(16 * MIB);
    let g = f.heap().geometry();
    assert_eq!(g.layout, Layout::Table);
    let fresh = f.alloc(4096, 1).unwrap();
    assert_eq!(fresh % 4096, 0, "page-aligned 4 KiB object");
    assert_eq!(f.heap().alloc_info(f.p(), fresh).unwrap().usable, 4096);
    let hdr = f.heap().header_off(fresh).unwrap();
    assert!(
        hdr + 16 <= fresh && fresh - hdr < 4096,
        "header in the run's table"
    );
    f.free(fresh).unwrap();
    f.reopen(); // the emptied run becomes free chunks
    assert_eq!(assert_ok(f.heap(), f.p()).runs, 0);

    rewrite_heap_version(&mut f, &g, 2);
    let g2 = f.heap().geometry();
    assert_eq!((g2.layout, g2.huge_data), (Layout::Inline, HUGE_DATA_OFF));

    let mut objs = Vec::new();
    for (i, size) in [1u64, 48, 100, 4096, 9000, 4 * CHUNK_SIZE]
        .into_iter()
        .enumerate()
    {
        let off = f.alloc(size, i as u64).unwrap();
        assert_eq!(f.heap().header_off(off), Some(off - 16), "size {size}");
        let info = f.heap().alloc_info(f.p(), off).unwrap();
        if let Some(c) = class_for(Layout::Inline, size) {
            assert_eq!(info.usable, c.block - 16, "size {size}");
        }
        objs.push((off, size, i as u64));
    }
    f.reopen();
    for &(off, size, ty) in &objs {
        let info = f.heap().alloc_info(f.p(), off).unwrap();
        assert_eq!((info.size, info.type_num), (size, ty));
    }
    assert_eq!(assert_ok(f.heap(), f.p()).objects, objs.len() as u64);
    let bytes = std::fs::read(&f.path).unwrap();
    assert!(check_bytes(&bytes, region(f.raw.as_ref().unwrap())).is_ok());
    f.free(objs[3].0).unwrap();
    f.reopen();
    assert!(f.heap().alloc_info(f.p(), objs[3].0).is_err());
    assert_eq!(assert_ok(f.heap(), f.p()).objects, objs.len() as u64 - 1);
}
