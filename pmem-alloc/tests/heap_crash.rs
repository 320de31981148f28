//! Crash images (Sim trace) of heap format, run creation, publish, free and
//! run retirement: every image opens with a consistent heap, and every
//! object is either fully there or absent.

mod common;

use common::*;
use pmem_alloc::layout::CHUNK_SIZE;
use pmem_pool::sim::CrashOptions;
use pmem_pool::{Mode, PoolOptions, RawPool};
use std::ops::ControlFlow;
use std::path::Path;

const MIB: u64 = 1 << 20;

/// Opens every image of `trace`, opens the heap and checks it; `verify` sees
/// the object offsets found. Returns the number of images.
fn check_images(
    trace: &mut pmem_pool::sim::CrashTrace,
    dir: &Path,
    mut verify: impl FnMut(Option<u64>, &[u64]),
) -> usize {
    let file = dir.join("crash.pool");
    let opts = CrashOptions {
        random_subsets: 16,
        seed: 7,
        exhaustive_up_to: 6,
    };
    let mut n = 0;
    let flow = trace.for_each_image(&opts, |img| {
        let _ = std::fs::remove_file(&file);
        std::fs::write(&file, img.bytes).unwrap();
        let o = PoolOptions::new().mode(Mode::Msync).ignore_env(true);
        let raw = RawPool::open(&file, Some(LAYOUT), &o).unwrap();
        let heap = match open_heap(&raw) {
            Ok(h) => h,
            Err(e) => panic!(
                "image at point {} ({:?}) does not open: {e}",
                img.point, img.selection
            ),
        };
        let r = heap.check(raw.persister());
        assert!(
            r.is_ok(),
            "image at point {} ({:?}): {:?}",
            img.point,
            img.selection,
            r.problems
        );
        let offs: Vec<u64> = heap
            .objects(raw.persister(), None)
            .iter()
            .map(|i| i.off)
            .collect();
        verify(img.drain_seq, &offs);
        // A recovered heap still allocates.
        alloc(&heap, raw.persister(), 100, 0).unwrap();
        n += 1;
        ControlFlow::<()>::Continue(())
    });
    assert!(flow.is_continue());
    n
}

#[test]
fn every_crash_image_of_format_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.pool");
    let raw = RawPool::create(&path, LAYOUT, 4 * MIB, &opts()).unwrap();
    let sim = raw.persister().sim().unwrap().clone();
    sim.start_trace();
    let heap = open_heap(&raw).unwrap();
    let mut trace = sim.take_trace().unwrap();
    drop(heap);
    drop(raw);
    let n = check_images(&mut trace, dir.path(), |_, offs| assert!(offs.is_empty()));
    assert!(n >= 3, "{n} images");
}

#[test]
fn every_crash_image_of_run_creation_publish_and_free_is_consistent() {
    let f = Fixture::new(4 * MIB);
    let (heap, p) = (f.heap(), f.p());
    let sim = p.sim().unwrap().clone();
    sim.start_trace();
    // New run (2 fences), then publish (1 fence).
    let a = alloc(heap, p, 64, 1).unwrap();
    let after_a = sim.counters().fences;
    // A second class: another run.
    let b = alloc(heap, p, 3000, 2).unwrap();
    // A huge object.
    let h = alloc(heap, p, CHUNK_SIZE + 5, 3).unwrap();
    // Free a and h.
    free(heap, p, a).unwrap();
    free(heap, p, h).unwrap();
    // A second 3000-byte run, then empty it so it retires (kept: the first).
    let per_run = pmem_alloc::class::class_for(heap.geometry().layout, 3000)
        .unwrap()
        .nblocks;
    let more: Vec<u64> = (0..per_run)
        .map(|_| alloc(heap, p, 3000, 4).unwrap())
        .collect();
    for &o in &more {
        free(heap, p, o).unwrap();
    }
    // Retirement's store happens at the next reserve that takes chunks.
    let c = alloc(heap, p, CHUNK_SIZE * 2, 5).unwrap();
    let mut trace = sim.take_trace().unwrap();
    let points = trace.points();
    assert!(points > 10, "{points} drain points");
    let mut ever: Vec<u64> = vec![a, b, h, c];
    ever.extend(&more);
    let dir = tempfile::tempdir().unwrap();
    let n = check_images(&mut trace, dir.path(), |seq, offs| {
        // Only objects that were allocated at some point appear...
        for o in offs {
            assert!(ever.contains(o), "unknown object {o:#x} at drain {seq:?}");
        }
        // ...a is there from its publish until its free...
        if let Some(s) = seq
            && s > after_a
            && s < after_a + 3
        {
            assert!(offs.contains(&a), "a missing at drain {s}");
        }
        // ...and after the last drain exactly b and c remain.
        if seq.is_none() {
            assert_eq!(offs, [b, c].as_slice());
        }
    });
    assert!(n >= points);
    drop(f);
}
