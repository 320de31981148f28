//! Rebuild time: a 1 GiB pool holding 1M 64-byte objects, heap reopened
//! (volatile state rebuilt from chunk headers, run headers and bitmaps),
//! plus the full check for comparison. Eadr mode over a file in /dev/shm
//! (or the temp dir), so no flush cost is measured, only the scan.
//!
//! `cargo bench -p pmem-alloc --bench rebuild` (`REBUILD_OBJECTS=N` to
//! change the count).

mod common;

use pmem_alloc::{Heap, RedoOp};
use std::time::Instant;

fn main() {
    let objects = common::env_u64("REBUILD_OBJECTS", 1_000_000);
    let (_dir, raw) = common::bench_pool(1 << 30);
    let region = common::region(&raw);
    let p = raw.persister();
    let heap = common::open_heap(&raw);
    let t = Instant::now();
    let mut ops: Vec<RedoOp> = Vec::new();
    for i in 0..objects {
        let r = heap.reserve(p, 64, i % 4).expect("reserve");
        // SAFETY: a fresh reservation of this heap.
        unsafe { heap.write_header(p, &r) };
        ops.clear();
        heap.publish_ops(&r, &mut ops);
        // SAFETY: ops from publish_ops of this heap.
        unsafe { pmem_alloc::apply_ops(p, &ops) }.expect("apply");
        heap.after_commit(vec![r], Vec::new());
    }
    let fill = t.elapsed();
    drop(heap);
    let mut best = f64::MAX;
    for _ in 0..4 {
        let t = Instant::now();
        // SAFETY: as above; the previous heap was dropped.
        let h = unsafe { Heap::open(p, region) }.expect("open");
        best = best.min(t.elapsed().as_secs_f64());
        drop(h);
    }
    let t = Instant::now();
    // SAFETY: as above.
    let heap = unsafe { Heap::open(p, region) }.expect("open");
    best = best.min(t.elapsed().as_secs_f64());
    let t = Instant::now();
    let rep = heap.check(p);
    let check = t.elapsed();
    assert!(rep.is_ok(), "{:?}", rep.problems);
    assert_eq!(rep.objects, objects);
    let st = heap.stats();
    println!(
        "| pool | objects | runs | fill (reserve+publish+apply) | rebuild (open, best of 5) | full check |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| 1 GiB | {objects} × 64 B | {} | {:.0} ns/object | {:.2} ms | {:.0} ms |",
        st.classes.iter().map(|c| c.runs).sum::<u64>(),
        fill.as_nanos() as f64 / objects as f64,
        best * 1e3,
        check.as_secs_f64() * 1e3
    );
}
