//! `Persister::restream`: the flush that rewrites a range's words with
//! streaming stores instead of writing their lines back. It must leave
//! every byte as it was, reach the file, and never touch a byte outside
//! the range, which another thread may be writing at the same time.

mod common;

use pmem_pool::persist::Persister;
use pmem_pool::{Mode, PoolOptions, RawPool};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

const LAYOUT: &str = "restream-test";
const SIZE: u64 = 8 << 20;

fn pmem_pool(dir: &tempfile::TempDir) -> (RawPool, std::path::PathBuf) {
    let path = dir.path().join("restream.pool");
    let opts = PoolOptions::new().mode(Mode::Pmem).ignore_env(true);
    let pool = RawPool::create(&path, LAYOUT, SIZE, &opts).unwrap();
    assert_eq!(pool.persister().mode(), Mode::Pmem);
    (pool, path)
}

fn pattern(i: usize) -> u8 {
    (i * 7 + 3) as u8
}

#[test]
fn every_byte_stays_and_reaches_the_file() {
    let dir = common::tempdir();
    let (pool, path) = pmem_pool(&dir);
    let heap = pool.header().heap_offset as usize;
    let area = 4096;
    let p: &Persister = pool.persister();
    let base = pool.base();
    // Every start in two lines and every length up to three lines: word
    // and line boundaries, partial words at either end, ranges inside one
    // word, empty ranges.
    let mut expect = vec![Vec::new(); 512];
    let mut n = 0usize;
    for start in 0..128usize {
        for len in [
            0, 1, 5, 7, 8, 9, 15, 16, 17, 56, 63, 64, 65, 100, 128, 130, 191,
        ] {
            let off = heap + n * area;
            // SAFETY: off..off+area lies in the heap of a pool this test
            // created, and no reference into the pool is alive.
            let buf = unsafe { std::slice::from_raw_parts_mut(base.add(off), area) };
            for (i, b) in buf.iter_mut().enumerate() {
                *b = pattern(i + start + len);
            }
            let before = buf.to_vec();
            // SAFETY: the range is inside the same area; this thread alone
            // writes it, and `buf` is not used after the call.
            unsafe { p.restream(off + start, len) };
            p.drain().unwrap();
            // SAFETY: as above.
            let after = unsafe { std::slice::from_raw_parts(base.add(off), area) };
            assert!(
                after == &before[..],
                "start {start} len {len}: bytes changed"
            );
            expect[n] = before;
            n = (n + 1) % 512;
        }
    }
    pool.close().unwrap();
    // What the last pass over each area left, read back through the file.
    let file = std::fs::read(&path).unwrap();
    for (k, e) in expect.iter().enumerate() {
        let off = heap + k * area;
        assert!(
            file[off..off + area] == e[..],
            "area {k} differs in the file"
        );
    }
}

#[test]
fn a_neighbours_stores_are_never_lost() {
    // One thread restreams bytes 3..61 of a line, over and over; another
    // stores a counter into bytes 0..2 and 62..64 of the same line. A
    // restream that rewrote whole lines or whole words would now and then
    // put back a stale counter.
    let dir = common::tempdir();
    let (pool, _path) = pmem_pool(&dir);
    let line = (pool.header().heap_offset as usize).next_multiple_of(64);
    let base = pool.base();
    let p = pool.persister();
    // SAFETY: two 2-byte-aligned words of the line, in the mapping; only
    // the counter thread and these atomics access them.
    let (lo, hi) = unsafe {
        (
            &*(base.add(line).cast::<AtomicU16>()),
            &*(base.add(line + 62).cast::<AtomicU16>()),
        )
    };
    let done = AtomicBool::new(false);
    let rounds = 200_000u32;
    let lost = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                // SAFETY: bytes 3..61 are written by this thread only (by
                // this call), and no reference points into them.
                unsafe { p.restream(line + 3, 58) };
                p.drain().unwrap();
            }
        });
        // Each round first checks that the previous round's counter is
        // still there (long out of the store buffer by then), then stores
        // the next one.
        let mut lost = 0u32;
        let mut prev = 0u16;
        hi.store(0x5555, Ordering::Relaxed);
        for v in 1..=rounds {
            if lo.load(Ordering::Relaxed) != prev || hi.load(Ordering::Relaxed) != prev ^ 0x5555 {
                lost += 1;
            }
            let v = v as u16;
            lo.store(v, Ordering::Relaxed);
            hi.store(v ^ 0x5555, Ordering::Relaxed);
            prev = v;
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
        done.store(true, Ordering::Relaxed);
        lost
    });
    assert_eq!(lost, 0, "stores outside the restreamed range were undone");
}
