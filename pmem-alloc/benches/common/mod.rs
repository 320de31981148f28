//! Setup shared by the heap benchmarks: an Eadr-mode pool on /dev/shm (or
//! the temp dir), so no flush cost is measured, and its heap.
#![allow(unsafe_code)]

use pmem_alloc::{Heap, HeapRegion};
use pmem_pool::{Mode, PoolOptions, RawPool};

/// `var` parsed as a number, or `default`.
pub fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A fresh `size`-byte pool in Eadr mode; keep the directory alive.
pub fn bench_pool(size: u64) -> (tempfile::TempDir, RawPool) {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let opts = PoolOptions::new().mode(Mode::Eadr).ignore_env(true);
    let raw =
        RawPool::create(&dir.path().join("bench.pool"), "bench", size, &opts).expect("create");
    (dir, raw)
}

/// The pool's heap region.
pub fn region(raw: &RawPool) -> HeapRegion {
    let h = raw.header();
    HeapRegion {
        offset: h.heap_offset,
        size: h.heap_size,
    }
}

/// Opens (formats, the first time) the pool's heap.
pub fn open_heap(raw: &RawPool) -> Heap {
    // SAFETY: this pool's persister is used for every call the benchmark
    // makes, and nothing else writes the heap.
    unsafe { Heap::open(raw.persister(), region(raw)) }.expect("open heap")
}
