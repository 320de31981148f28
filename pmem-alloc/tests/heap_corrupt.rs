//! `check` (live and offline) and `open` find deliberately damaged metadata:
//! one test per kind of damage.

mod common;

use common::*;
use pmem_alloc::class::class_for;
use pmem_alloc::layout::{CHUNK_SIZE, RUN_HEADER_SIZE};
use pmem_alloc::{Error, check_bytes};

const MIB: u64 = 1 << 20;

/// A heap with a 64-byte run (chunk 0), a huge object and a 3000-byte run.
fn populated() -> (Fixture, Vec<u64>) {
    let f = Fixture::new(8 * MIB);
    let mut offs: Vec<u64> = (0..10).map(|i| f.alloc(48, i).unwrap()).collect();
    offs.push(f.alloc(2 * CHUNK_SIZE, 77).unwrap());
    offs.push(f.alloc(3000, 5).unwrap());
    let rep = assert_ok(f.heap(), f.p());
    assert_eq!(rep.objects, 12);
    let bytes = std::fs::read(&f.path).unwrap();
    assert!(check_bytes(&bytes, region(f.raw.as_ref().unwrap())).is_ok());
    (f, offs)
}

/// Stores `val` at pool offset `off` of the live mapping.
fn poke(f: &Fixture, off: u64, val: u64) {
    let raw = f.raw.as_ref().unwrap();
    assert!(off + 8 <= raw.size());
    // SAFETY: off..off+8 lies inside the live mapping of this pool; the
    // test is single-threaded and holds no reference into the pool.
    unsafe {
        raw.base()
            .add(off as usize)
            .cast::<u64>()
            .write_unaligned(val)
    };
}

fn peek(f: &Fixture, off: u64) -> u64 {
    let raw = f.raw.as_ref().unwrap();
    assert!(off + 8 <= raw.size());
    // SAFETY: as in `poke`, a read.
    unsafe { raw.base().add(off as usize).cast::<u64>().read_unaligned() }
}

/// Checks the damage is found live, offline, and (if `open_fails`) by
/// `open` with `Error::Corrupt` naming `what`.
fn expect_found(mut f: Fixture, what: &str, open_fails: bool) {
    let live = f.heap().check(f.p());
    assert!(!live.is_ok(), "live check missed damaged {what}");
    assert!(
        live.problems.iter().any(|p| p.contains(what)),
        "{:?}",
        live.problems
    );
    let reg = region(f.raw.as_ref().unwrap());
    f.heap = None;
    f.raw = None;
    let bytes = std::fs::read(&f.path).unwrap();
    let off = check_bytes(&bytes, reg);
    assert!(!off.is_ok(), "offline check missed damaged {what}");
    assert!(
        off.problems.iter().any(|p| p.contains(what)),
        "{:?}",
        off.problems
    );
    let raw = pmem_pool::RawPool::open(&f.path, Some(LAYOUT), &opts()).unwrap();
    match open_heap(&raw) {
        Err(Error::Corrupt { reason }) if open_fails => {
            assert!(reason.contains(what), "{reason}")
        }
        Ok(_) if !open_fails => {}
        Ok(_) => panic!("open accepted damaged {what}"),
        Err(e) => panic!("unexpected open result for {what}: {e}"),
    }
}

#[test]
fn corrupted_chunk_header_is_found() {
    let (f, _) = populated();
    let g = f.heap().geometry();
    // A free chunk's header turned into garbage without the tag.
    let free_chunk = (g.chunk_count - 1) as u32;
    poke(&f, g.header_off(free_chunk), 0x1234_5678_0000_0001);
    expect_found(f, &format!("chunk {free_chunk}"), true);
}

#[test]
fn chunk_header_inside_a_span_is_found() {
    let (f, offs) = populated();
    let g = f.heap().geometry();
    let huge_first = g.chunk_of(offs[10]).unwrap();
    let w = peek(&f, g.header_off(huge_first));
    poke(&f, g.header_off(huge_first + 1), w);
    expect_found(f, "inside the span", true);
}

#[test]
fn corrupted_bitmap_word_is_found() {
    let (f, _) = populated();
    let g = f.heap().geometry();
    // Run of 3000-byte requests: its last bitmap word gets bits past its
    // block count.
    let c = class_for(g.layout, 3000).unwrap();
    let run_chunk = (0..g.chunk_count as u32)
        .find(|&k| {
            peek(&f, g.header_off(k)) & 0xFF00 == u64::from(c.index) << 8
                && peek(&f, g.header_off(k)) != 0
        })
        .unwrap();
    let last = g.chunk_off(run_chunk) + RUN_HEADER_SIZE + (c.bitmap_words() - 1) * 8;
    assert!(!c.nblocks.is_multiple_of(64));
    poke(&f, last, peek(&f, last) | 1 << 63);
    expect_found(f, "beyond the run", true);
}

#[test]
fn bitmap_bit_of_a_reservable_block_is_found_live() {
    let (f, _) = populated();
    let g = f.heap().geometry();
    // Chunk 0 is the 64-byte run; block 20 was never allocated.
    let w = g.chunk_off(0) + RUN_HEADER_SIZE;
    poke(&f, w, peek(&f, w) | 1 << 20);
    let r = f.heap().check(f.p());
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("block 20") && p.contains("reservable")),
        "{:?}",
        r.problems
    );
}

#[test]
fn corrupted_allocation_header_is_found() {
    let (f, offs) = populated();
    // Size far larger than the 48-byte object's block.
    let hdr = f.heap().header_off(offs[3]).unwrap();
    poke(&f, hdr, 1 << 40);
    // open reads only chunk headers, run headers and bitmaps: it succeeds.
    expect_found(f, "allocation header size", false);
}

#[test]
fn corrupted_run_header_is_found() {
    let (f, _) = populated();
    let g = f.heap().geometry();
    let off = g.chunk_off(0) + 8;
    poke(&f, off, peek(&f, off) ^ 0x10);
    expect_found(f, "run header checksum", true);
}

#[test]
fn corrupted_heap_header_refuses_open() {
    let (f, _) = populated();
    let g = f.heap().geometry();
    poke(&f, g.region_offset + 0x28, 12345);
    expect_found(f, "heap header checksum", true);
}

#[test]
fn bad_region_and_truncated_bytes_are_errors_not_panics() {
    let f = Fixture::new(4 * MIB);
    let reg = region(f.raw.as_ref().unwrap());
    let size = f.raw.as_ref().unwrap().size();
    for bad in [
        pmem_alloc::HeapRegion {
            offset: reg.offset + 8,
            size: reg.size - 8,
        },
        pmem_alloc::HeapRegion {
            offset: reg.offset,
            size,
        },
        pmem_alloc::HeapRegion {
            offset: reg.offset,
            size: 4096,
        },
        pmem_alloc::HeapRegion {
            offset: u64::MAX - 4095,
            size: 1 << 20,
        },
    ] {
        // SAFETY: the region is rejected before anything is written.
        let r = unsafe { pmem_alloc::Heap::open(f.p(), bad) };
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{bad:?}");
        let bytes = std::fs::read(&f.path).unwrap();
        assert!(!check_bytes(&bytes, bad).is_ok());
    }
    let bytes = std::fs::read(&f.path).unwrap();
    for cut in [0, 100, reg.offset as usize + 10, bytes.len() / 2] {
        assert!(!check_bytes(&bytes[..cut], reg).is_ok(), "cut at {cut}");
    }
    assert!(check_bytes(&bytes, reg).is_ok());
}
