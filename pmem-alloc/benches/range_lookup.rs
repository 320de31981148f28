//! `Heap::data_range_ok` cost per call, the check `pmem-tx` makes on every
//! pointer dereference: inside a run block, inside a huge span, and a
//! refused range (a run header), single-threaded and with a second thread
//! looking up at the same time. Eadr mode over a file in /dev/shm (or the
//! temp dir); no persistence is measured.
//!
//! `cargo bench -p pmem-alloc --bench range_lookup` (`RANGE_CALLS=N` to
//! change the calls per row).

mod common;

use pmem_alloc::{Heap, RedoOp};
use pmem_pool::Persister;
use std::hint::black_box;
use std::time::Instant;

fn alloc(heap: &Heap, p: &Persister, size: u64) -> u64 {
    let r = heap.reserve(p, size, 1).expect("reserve");
    // SAFETY: a fresh reservation of this heap.
    unsafe { heap.write_header(p, &r) };
    let mut ops: Vec<RedoOp> = Vec::new();
    heap.publish_ops(&r, &mut ops);
    // SAFETY: ops from publish_ops of this heap.
    unsafe { pmem_alloc::apply_ops(p, &ops) }.expect("apply");
    let off = r.off;
    heap.after_commit(vec![r], Vec::new());
    off
}

/// Best of 3 rounds of `calls` lookups of (off + i % 2 * 8, len), ns/call.
fn time(heap: &Heap, off: u64, len: u64, calls: u64, expect: bool) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut ok = 0u64;
        for i in 0..calls {
            ok += u64::from(heap.data_range_ok(black_box(off + (i % 2) * 8), black_box(len)));
        }
        let dt = t.elapsed().as_nanos() as f64 / calls as f64;
        assert_eq!(ok, if expect { calls } else { 0 });
        best = best.min(dt);
    }
    best
}

fn main() {
    let calls = common::env_u64("RANGE_CALLS", 10_000_000);
    let (_dir, raw) = common::bench_pool(256 << 20);
    let p = raw.persister();
    let heap = common::open_heap(&raw);
    // A few hundred runs and spans, so the lookups search non-trivial maps.
    let mut keep = Vec::new();
    for i in 0..20_000u64 {
        keep.push(alloc(&heap, p, [64, 200, 1000, 9000][(i % 4) as usize]));
    }
    for _ in 0..16 {
        keep.push(alloc(&heap, p, 2 << 20));
    }
    let block = alloc(&heap, p, 64);
    let huge = alloc(&heap, p, 16 << 20);
    let geo = heap.geometry();
    let run_header = geo.chunk_off(geo.chunk_of(block).expect("in the heap"));
    let rows = [
        ("run block (64 B object, 8 B read)", block, 8, true),
        ("huge span (16 MiB object, 8 B read)", huge + 4096, 8, true),
        ("refused (alloc header)", block - 16, 8, false),
        ("refused (run header)", run_header, 8, false),
    ];
    println!("| lookup | ns/call, 1 thread | ns/call, 2 threads |");
    println!("| --- | --- | --- |");
    for (name, off, len, expect) in rows {
        let one = time(&heap, off, len, calls, expect);
        let two = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| s.spawn(|| time(&heap, off, len, calls, expect)))
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("thread"))
                .fold(0.0f64, f64::max)
        });
        println!("| {name} | {one:.1} | {two:.1} |");
    }
    black_box(keep);
}
