//! Shared helpers: a Sim-mode pool in a tempdir, the heap over it, and the
//! reserve → header → publish → apply → after_commit sequence the
//! transaction layer performs.
#![allow(dead_code)]

use pmem_alloc::{FreeTicket, Heap, HeapRegion, RedoOp, Reservation, Result};
use pmem_pool::{Mode, Persister, PoolOptions, RawPool};
use std::path::PathBuf;
use tempfile::TempDir;

pub const LAYOUT: &str = "heap-test";

pub fn opts() -> PoolOptions {
    PoolOptions::new().mode(Mode::Sim).ignore_env(true)
}

pub struct Fixture {
    pub dir: TempDir,
    pub path: PathBuf,
    pub raw: Option<RawPool>,
    pub heap: Option<Heap>,
}

pub fn region(raw: &RawPool) -> HeapRegion {
    let h = raw.header();
    HeapRegion {
        offset: h.heap_offset,
        size: h.heap_size,
    }
}

pub fn open_heap(raw: &RawPool) -> Result<Heap> {
    // SAFETY: the persister is this pool's, used for every call below;
    // nothing else writes the heap region.
    unsafe { Heap::open(raw.persister(), region(raw)) }
}

impl Fixture {
    /// A new pool of `size` bytes with its heap opened (formatted).
    pub fn new(size: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heap.pool");
        let raw = RawPool::create(&path, LAYOUT, size, &opts()).unwrap();
        let heap = open_heap(&raw).unwrap();
        Fixture {
            dir,
            path,
            raw: Some(raw),
            heap: Some(heap),
        }
    }

    pub fn p(&self) -> &Persister {
        self.raw.as_ref().unwrap().persister()
    }

    pub fn heap(&self) -> &Heap {
        self.heap.as_ref().unwrap()
    }

    /// Drops heap and pool, reopens both (rebuild from media).
    pub fn reopen(&mut self) {
        self.heap = None;
        self.raw = None;
        let raw = RawPool::open(&self.path, Some(LAYOUT), &opts()).unwrap();
        self.heap = Some(open_heap(&raw).unwrap());
        self.raw = Some(raw);
    }

    pub fn alloc(&self, size: u64, ty: u64) -> Result<u64> {
        alloc(self.heap(), self.p(), size, ty)
    }

    pub fn free(&self, off: u64) -> Result<()> {
        free(self.heap(), self.p(), off)
    }
}

pub fn apply(p: &Persister, ops: &[RedoOp]) {
    // SAFETY: the ops come from this heap's publish_ops/free_ops.
    unsafe { pmem_alloc::apply_ops(p, ops) }.unwrap();
}

pub fn publish(heap: &Heap, p: &Persister, r: Reservation) -> u64 {
    // SAFETY: `r` is a live reservation of `heap`; nothing references it.
    unsafe { heap.write_header(p, &r) };
    // The caller's part of write_header's contract: flushed before the
    // fence that publishes the block (apply_ops drains).
    p.flush(r.hdr as usize, 16);
    let mut ops = Vec::new();
    heap.publish_ops(&r, &mut ops);
    assert_eq!(ops.len(), 1);
    apply(p, &ops);
    let off = r.off;
    heap.after_commit(vec![r], Vec::new());
    off
}

pub fn alloc(heap: &Heap, p: &Persister, size: u64, ty: u64) -> Result<u64> {
    let r = heap.reserve(p, size, ty)?;
    assert!(r.usable >= size);
    assert_eq!(r.off % 16, 0);
    Ok(publish(heap, p, r))
}

pub fn free_ticket(heap: &Heap, p: &Persister, off: u64) -> Result<(FreeTicket, Vec<RedoOp>)> {
    let mut ops = Vec::new();
    let t = heap.free_ops(p, off, &mut ops)?;
    Ok((t, ops))
}

pub fn free(heap: &Heap, p: &Persister, off: u64) -> Result<()> {
    let (t, ops) = free_ticket(heap, p, off)?;
    apply(p, &ops);
    heap.after_commit(Vec::new(), vec![t]);
    Ok(())
}

pub fn assert_ok(heap: &Heap, p: &Persister) -> pmem_alloc::HeapReport {
    let r = heap.check(p);
    assert!(r.is_ok(), "heap check failed: {:#?}", r.problems);
    r
}
