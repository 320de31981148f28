//! Four threads reserving, publishing and freeing at once, including frees
//! of blocks in runs another thread's arena owns, then exact counts.

mod common;

use common::*;
use std::sync::Barrier;

const MIB: u64 = 1 << 20;

#[test]
fn four_threads_thousands_of_cycles() {
    let f = Fixture::new(64 * MIB);
    let heap = f.heap();
    let p = f.p();
    const THREADS: u64 = 4;
    const CYCLES: u64 = 3000;
    let barrier = Barrier::new(THREADS as usize);
    // Each thread hands half of its objects to the next thread to free.
    let handoff: Vec<std::sync::Mutex<Vec<u64>>> = (0..THREADS)
        .map(|_| std::sync::Mutex::new(Vec::new()))
        .collect();
    let kept: Vec<Vec<u64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (barrier, handoff) = (&barrier, &handoff);
                s.spawn(move || {
                    barrier.wait();
                    let mut mine = Vec::new();
                    for i in 0..CYCLES {
                        let size = [16u64, 64, 200, 1000, 9000, 30_000][(i % 6) as usize];
                        match i % 4 {
                            // Reserve then cancel (an aborted transaction).
                            3 => {
                                let r = heap.reserve(p, size, t).unwrap();
                                heap.cancel(r);
                            }
                            _ => mine.push(alloc(heap, p, size, t).unwrap()),
                        }
                        if i % 5 == 4 {
                            let o = mine.swap_remove(mine.len() / 2);
                            if i % 2 == 0 {
                                free(heap, p, o).unwrap();
                            } else {
                                handoff[((t + 1) % THREADS) as usize]
                                    .lock()
                                    .unwrap()
                                    .push(o);
                            }
                        }
                        if i % 50 == 0 {
                            let theirs = std::mem::take(&mut *handoff[t as usize].lock().unwrap());
                            for o in theirs {
                                free(heap, p, o).unwrap();
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut live: Vec<u64> = kept.into_iter().flatten().collect();
    for h in &handoff {
        live.extend(h.lock().unwrap().iter());
    }
    let rep = assert_ok(heap, p);
    assert_eq!(rep.objects, live.len() as u64);
    let mut objs: Vec<u64> = heap.objects(p, None).iter().map(|i| i.off).collect();
    live.sort_unstable();
    objs.sort_unstable();
    assert_eq!(objs, live, "exactly the objects the threads kept");
    // Per type: each thread's objects carry its number.
    for t in 0..THREADS {
        let n = heap.objects(p, Some(t)).len() as u64;
        assert_eq!(rep.objects_by_type.get(&t).copied().unwrap_or(0), n);
    }
    for o in live {
        free(heap, p, o).unwrap();
    }
    let rep = assert_ok(heap, p);
    assert_eq!(rep.objects, 0);
}
