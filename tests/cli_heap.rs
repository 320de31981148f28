//! The heap in `pmem check` and `pmem info --heap`: exact object counts per
//! type number on a pool built through `Pool` (small, medium and huge
//! objects, some freed); a corrupted run bitmap or chunk header makes
//! `check` exit 1 naming the heap problem; a pool never opened by pmem-tx
//! has an unformatted heap, which is not a problem.

mod common;

use common::{pmem, serial, text};
use pmem_alloc::class::classes;
use pmem_alloc::layout::{ChunkHeader, Geometry, RUN_HEADER_SIZE};
use pmem_obj::pool::HeaderInfo;
use pmem_obj::{Error, PPtr, Pool};
use serde_json::Value;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::process::Output;

const LAYOUT: &str = "cli-heap-v1";
/// Type numbers of the three kinds of objects.
const SMALL: u64 = 1;
const MEDIUM: u64 = 2;
const HUGE: u64 = 3;

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

/// What the built pool holds, for the corruption tests.
struct Built {
    header: HeaderInfo,
    small: PPtr<u8>,
    huge: PPtr<u8>,
}

/// A root, 5 small (100 B) objects of which 2 freed, 3 medium (5000 B) of
/// which 1 freed, and one huge (1.5 MiB): live counts root 1, SMALL 3,
/// MEDIUM 2, HUGE 1.
fn build(path: &Path) -> Built {
    let pool = Pool::create(path, LAYOUT, 32 << 20).unwrap();
    let root = pool.root::<[u64; 4]>().unwrap();
    pool.transaction(|tx| tx.write(root, [1, 2, 3, 4])).unwrap();
    let (small, medium, huge) = pool
        .transaction(|tx| -> Result<_, Error> {
            let small: Vec<PPtr<u8>> = (0..5)
                .map(|_| tx.alloc_bytes(100, SMALL))
                .collect::<Result<_, _>>()?;
            let medium: Vec<PPtr<u8>> = (0..3)
                .map(|_| tx.alloc_bytes(5000, MEDIUM))
                .collect::<Result<_, _>>()?;
            let huge = tx.alloc_bytes(3 << 19, HUGE)?;
            Ok((small, medium, huge))
        })
        .unwrap();
    pool.transaction(|tx| -> Result<(), Error> {
        tx.free(small[1])?;
        tx.free(small[3])?;
        tx.free(medium[0])
    })
    .unwrap();
    assert_eq!(pool.objects(Some(SMALL)).unwrap().len(), 3);
    let header = pool.raw().header().clone();
    pool.close().unwrap();
    Built {
        header,
        small: small[0],
        huge,
    }
}

fn geometry(b: &Built) -> Geometry {
    Geometry::new(b.header.heap_offset, b.header.heap_size, b.header.size).unwrap()
}

fn read_u64(path: &Path, off: u64) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let mut w = [0u8; 8];
    f.read_exact_at(&mut w, off).unwrap();
    u64::from_le_bytes(w)
}

fn write_u64(path: &Path, off: u64, v: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&v.to_le_bytes(), off).unwrap();
}

#[test]
fn check_and_info_report_exact_object_counts_per_type() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pool");
    build(&p);
    let ps = p.to_str().unwrap();

    let out = pmem(&["check", ps]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{t}{}", text(&out.stderr));
    assert!(
        t.contains("heap use:  7 objects (by type 1: 3, 2: 2, 3: 1, root: 1)"),
        "{t}"
    );
    assert!(t.contains("huge spans 1"), "{t}");
    assert!(t.contains("result:    consistent"), "{t}");

    let out = pmem(&["check", ps, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    let h = &v["heap"];
    assert_eq!(h["status"], "checked");
    assert_eq!(h["objects"], 7);
    assert_eq!(h["objects_by_type"]["root"], 1);
    assert_eq!(h["objects_by_type"]["1"], 3);
    assert_eq!(h["objects_by_type"]["2"], 2);
    assert_eq!(h["objects_by_type"]["3"], 1);
    assert_eq!(h["huge"], 1);
    assert_eq!(h["problems"].as_array().map(Vec::len), Some(0));
    assert_eq!(v["consistent"], true);
    // 1.5 MiB + header rounds up to 7 chunks of 256 KiB.
    assert!(h["used_bytes"].as_u64().unwrap() >= 7 * 256 * 1024, "{h}");
    assert!(h["runs"].as_u64().unwrap() >= 2, "{h}");

    let out = pmem(&["info", ps, "--heap"]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{t}{}", text(&out.stderr));
    assert!(
        t.contains("7 objects (by type 1: 3, 2: 2, 3: 1, root: 1)"),
        "{t}"
    );
    assert!(t.contains("class  block bytes  runs  used blocks"), "{t}");
    assert!(t.contains("largest free span"), "{t}");
    assert!(
        t.contains(
            "heap format version 3 (allocation headers of blocks from 256 bytes in run tables)"
        ),
        "{t}"
    );

    let out = pmem(&["info", ps, "--heap", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    let h = &v["heap"];
    // The header's heap fields stay beside the check's.
    assert!(h["offset"].as_u64().unwrap() > 0, "{h}");
    assert!(h["size"].as_u64().unwrap() > 0, "{h}");
    assert_eq!(h["objects_by_type"]["1"], 3);
    assert_eq!(h["objects_by_type"]["root"], 1);
    assert_eq!(h["heap_version"], 3, "{h}");
    // Per class, the used blocks add up to the objects in runs (all but
    // the huge one).
    let classes = h["classes"].as_array().unwrap();
    let used: u64 = classes
        .iter()
        .map(|c| c["used_blocks"].as_u64().unwrap())
        .sum();
    assert_eq!(used, 6, "{h}");
    assert!(classes.len() >= 2, "{h}");
    let frag = h["fragmentation"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&frag), "{h}");

    // Without --heap, info does not walk the heap.
    let v = json(&pmem(&["info", ps, "--json"]));
    assert!(v["heap"]["objects"].is_null(), "{v}");
}

#[test]
fn a_bitmap_bit_past_the_runs_blocks_is_a_heap_problem() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pool");
    let b = build(&p);
    let geo = geometry(&b);
    let c = geo.chunk_of(b.small.offset()).unwrap();
    let ChunkHeader::Run { class, .. } =
        ChunkHeader::decode(read_u64(&p, geo.header_off(c))).unwrap()
    else {
        panic!("the small object is not in a run");
    };
    let cl = classes(geo.layout)[usize::from(class)];
    let tail = cl.nblocks % 64;
    assert_ne!(tail, 0, "class {class} fills its last bitmap word");
    let word = geo.chunk_off(c) + RUN_HEADER_SIZE + (cl.bitmap_words() - 1) * 8;
    write_u64(&p, word, read_u64(&p, word) | 1 << tail);

    let out = pmem(&["check", p.to_str().unwrap()]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("heap: run at chunk {c}:")), "{t}");
    assert!(t.contains("bits set beyond the run's"), "{t}");
    assert!(t.contains("INCONSISTENT"), "{t}");

    let v = json(&pmem(&["check", p.to_str().unwrap(), "--json"]));
    assert_eq!(v["consistent"], false);
    let problems = v["heap"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].as_str().unwrap().contains("bitmap word"));
    assert!(
        v["heap"]["classes"].is_null(),
        "no usage from damaged metadata"
    );
}

#[test]
fn a_garbled_chunk_header_is_a_heap_problem() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pool");
    let b = build(&p);
    let geo = geometry(&b);
    let c = geo.chunk_of(b.huge.offset()).unwrap();
    let off = geo.header_off(c);
    let w = read_u64(&p, off);
    assert!(matches!(
        ChunkHeader::decode(w),
        Ok(ChunkHeader::Huge { .. })
    ));
    // Flip the tag's bits.
    write_u64(&p, off, w ^ 0xFFFF_0000);

    let out = pmem(&["check", p.to_str().unwrap()]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("heap: chunk {c}: chunk header")), "{t}");
    assert!(t.contains("lacks the tag"), "{t}");

    // info still runs (it inspects, it does not judge) and shows the problem.
    let out = pmem(&["info", p.to_str().unwrap(), "--heap"]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{t}{}", text(&out.stderr));
    assert!(t.contains("heap problem: chunk"), "{t}");
}

#[test]
fn a_pool_never_opened_has_an_unformatted_heap_and_is_consistent() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("new.pool");
    let ps = p.to_str().unwrap();
    let out = pmem(&["create", ps, "--layout", LAYOUT, "--size", "8MiB"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = pmem(&["check", ps]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("heap use:  not formatted yet (no object was ever allocated)"),
        "{t}"
    );
    let v = json(&pmem(&["check", ps, "--json"]));
    assert_eq!(v["heap"]["status"], "not_formatted");
    assert_eq!(v["consistent"], true);

    let v = json(&pmem(&["info", ps, "--heap", "--json"]));
    assert_eq!(v["heap"]["status"], "not_formatted");

    // Opening it formats the heap; the root is then its only object.
    let pool = Pool::open(&p, LAYOUT).unwrap();
    pool.root::<u64>().unwrap();
    pool.close().unwrap();
    let v = json(&pmem(&["check", ps, "--json"]));
    assert_eq!(v["heap"]["status"], "checked");
    assert_eq!(v["heap"]["objects"], 1);
    assert_eq!(v["heap"]["objects_by_type"]["root"], 1);
}
