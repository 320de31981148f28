//! `data_range_ok` and `alloc_info` (lock-free, through the chunk map)
//! hammered by two reader threads while a writer allocates, frees and
//! cancels blocks of several classes and huge spans, so runs are created
//! and retired and spans taken and returned under the readers' feet. The
//! readers' objects live throughout: they must always be accepted, their
//! allocation headers and run headers always refused.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};

const MIB: u64 = 1 << 20;

#[test]
fn lookups_stay_right_while_another_thread_allocates_and_frees() {
    let f = Fixture::new(48 * MIB);
    let heap = f.heap();
    let p = f.p();
    let geo = heap.geometry();
    // Long-lived objects; the first of each class is block 0 of its run,
    // so the start of its chunk is that run's header.
    let sizes = [16u64, 64, 200, 1000, 9000, 30_000];
    let blocks: Vec<u64> = sizes
        .iter()
        .map(|&s| alloc(heap, p, s, 1).unwrap())
        .collect();
    let huge = alloc(heap, p, 3 * MIB, 2).unwrap();
    let run_headers: Vec<u64> = blocks
        .iter()
        .map(|&o| geo.chunk_off(geo.chunk_of(o).unwrap()))
        .collect();
    let stop = AtomicBool::new(false);
    let checks = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (stop, blocks, run_headers) = (&stop, &blocks, &run_headers);
                s.spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) || n == 0 {
                        for (&o, &h) in blocks.iter().zip(run_headers) {
                            assert!(heap.data_range_ok(o, 8), "live block {o:#x} refused");
                            assert!(!heap.data_range_ok(o - 16, 8), "alloc header accepted");
                            assert!(!heap.data_range_ok(h, 8), "run header accepted");
                            assert_eq!(heap.alloc_info(p, o).unwrap().type_num, 1);
                        }
                        assert!(heap.data_range_ok(huge + 3 * MIB - 8, 8));
                        assert!(!heap.data_range_ok(huge + 3 * MIB - 8, 4 * MIB));
                        assert_eq!(heap.alloc_info(p, huge).unwrap().size, 3 * MIB);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let writer = s.spawn(|| {
            let mut mine: Vec<(u64, u64)> = Vec::new();
            for i in 0..4000u64 {
                let size = [64u64, 200, 9000, 30_000, MIB + 1000, 64][(i % 6) as usize];
                if i % 7 == 3 {
                    let r = heap.reserve(p, size, 3).unwrap();
                    assert!(heap.data_range_ok(r.off, 8), "reserved object refused");
                    heap.cancel(r);
                } else {
                    let o = alloc(heap, p, size, 3).unwrap();
                    assert!(heap.data_range_ok(o, size.min(4096)));
                    mine.push((o, size));
                }
                // Free in bursts so whole runs empty out and retire.
                if mine.len() > 120 || i % 97 == 0 {
                    for (o, size) in mine.drain(..) {
                        assert!(heap.data_range_ok(o, size.min(4096)));
                        free(heap, p, o).unwrap();
                    }
                }
            }
            for (o, _) in mine.drain(..) {
                free(heap, p, o).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        writer.join().unwrap();
        readers.into_iter().map(|r| r.join().unwrap()).sum::<u64>()
    });
    assert!(checks >= 2);
    for &o in &blocks {
        free(heap, p, o).unwrap();
    }
    free(heap, p, huge).unwrap();
    assert_ok(heap, p);
    let st = heap.stats();
    assert_eq!(st.huge_objects, 0);
    assert_eq!(st.classes.iter().map(|c| c.blocks_used).sum::<u64>(), 0);
}
