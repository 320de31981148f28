//! Micro-benchmarks of the Pmem-mode persistence primitives, on a file
//! mapped `MAP_SHARED` from /dev/shm (or `$PMEM_BENCH_DIR`), printed as a
//! table to set beside `/work/shared/peer/pmdk/primitives.c`.
//!
//! Run: `cargo bench -p pmem-pool --bench primitives [-- [line] [range]
//! [reload] [fence] [free] [copy] [size] [msync] [COPY_MIB]]`: the named sections only
//! (default all); COPY_MIB, default 512, is the total of the 8 MiB-chunk copy test.
//! The `msync` section means something only on a disk: run it with
//! `PMEM_BENCH_DIR=/some/ext4/dir` (on tmpfs msync makes nothing durable).
//!
//! Every figure is the median over blocks of calls (robust against other
//! tenants of a shared machine), as in primitives.c.

use pmem_pool::cpu;
use pmem_pool::persist::flush::{self, FlushInstr};
use pmem_pool::persist::nt::{self, NtKind};
use pmem_pool::persist::{CACHE_LINE, CacheFns, NT_THRESHOLD};
use std::hint::black_box;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const MIB: usize = 1 << 20;

/// A fresh file of `len` bytes in the bench directory, mapped shared and
/// faulted in (the file is unlinked at once; the mapping keeps it).
fn map_file(len: usize) -> memmap2::MmapMut {
    let dir = std::env::var_os("PMEM_BENCH_DIR").unwrap_or_else(|| "/dev/shm".into());
    let file = tempfile::tempfile_in(&dir).expect("create the bench file (set PMEM_BENCH_DIR)");
    file.set_len(len as u64).expect("size the bench file");
    // SAFETY: the file is private to this process and never resized.
    let mut m = unsafe { memmap2::MmapMut::map_mut(&file).expect("mmap the bench file") };
    m.fill(1);
    m
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `blocks` blocks of `per_block` calls of `f(i)`; returns the median
/// nanoseconds per call (after one untimed warm-up block).
fn per_call_ns(blocks: usize, per_block: usize, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..per_block {
        f(i);
    }
    let mut t = Vec::with_capacity(blocks);
    for b in 0..blocks {
        let t0 = Instant::now();
        for j in 0..per_block {
            f(b * per_block + j);
        }
        t.push(t0.elapsed().as_nanos() as f64 / per_block as f64);
    }
    median(&mut t)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let copy_mib: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(512)
        .max(8);
    let named = [
        "line", "range", "reload", "fence", "free", "copy", "size", "msync",
    ];
    let any_named = args.iter().any(|a| named.contains(&a.as_str()));
    let run = |s: &str| !any_named || args.iter().any(|a| a == s);
    let f = cpu::features();
    let best = CacheFns::detect();
    println!(
        "# cpu: clwb={} clflushopt={} avx={} avx512f={}; picked flush={} nt={}",
        f.clwb,
        f.clflushopt,
        f.avx,
        f.avx512f,
        best.flush.name(),
        best.nt.name()
    );

    if run("line") || run("range") {
        lines_and_ranges(f, run("line"), run("range"));
    }
    if run("reload") {
        reload(f);
    }
    if run("fence") {
        fence(best.flush);
    }
    if run("free") {
        free_skeleton(best.flush);
    }
    if run("copy") {
        bulk_copy(f, best, copy_mib);
    }
    if run("size") {
        for hot in [false, true] {
            per_size(best, hot);
        }
    }
    if run("msync") {
        msync_gaps();
    }
}

/// Sections 1 and 2: one line, and a dirty range.
fn lines_and_ranges(f: &cpu::CpuFeatures, line: bool, range: bool) {
    // 1. One line: 8-byte store, flush, sfence; lines cycle over 1 MiB.
    let mut m = map_file(MIB);
    let base = m.as_mut_ptr();
    let lines = MIB / CACHE_LINE;
    println!("\n## one line: store 8 B + flush + sfence (1 MiB region, 4 M iters)");
    println!("{:<28} {:>10}", "variant", "ns/line");
    let mut variants: Vec<Option<FlushInstr>> = vec![None];
    variants.extend(FlushInstr::available(f).into_iter().map(Some));
    for v in variants.iter().filter(|_| line) {
        let ns = per_call_ns(400, 10_000, |i| {
            // SAFETY: the line index is reduced modulo the 1 MiB mapping.
            unsafe {
                let l = base.add((i % lines) * CACHE_LINE);
                ptr::write_volatile(l.cast::<u64>(), i as u64);
                if let Some(instr) = v {
                    flush::flush_range(*instr, l, 8);
                }
            }
            flush::sfence();
        });
        let name = v.map_or("none", FlushInstr::name);
        println!("{:<28} {:>10.1}", format!("store+{name}+sfence"), ns);
    }

    // 2. A dirty range, then flush every line + one sfence.
    println!("\n## range: dirty (untimed), flush every line + one sfence");
    println!(
        "{:<28} {:>8} {:>12} {:>10}",
        "variant", "bytes", "ns/range", "ns/line"
    );
    let sizes = if range {
        &[(4096usize, 100_000usize), (MIB, 500)][..]
    } else {
        &[]
    };
    for &(size, reps) in sizes {
        for instr in FlushInstr::available(f) {
            let mut t = Vec::with_capacity(reps);
            for r in 0..reps {
                m[..size].fill(r as u8);
                let t0 = Instant::now();
                // SAFETY: 0..size lies inside the 1 MiB mapping.
                unsafe { flush::flush_range(instr, base, size) };
                flush::sfence();
                t.push(t0.elapsed().as_nanos() as f64);
            }
            let per = median(&mut t);
            let name = format!("range_{}+1sfence", instr.name());
            let per_line = per / (size / CACHE_LINE) as f64;
            println!("{name:<28} {size:>8} {per:>12.0} {per_line:>10.2}");
        }
    }
}

/// Section 2b: whether a flush leaves the line cached. A 256 KiB region
/// (inside L2) holds a random cycle through its lines; every line is
/// stored, flushed with each instruction (or not), then one `sfence`; the
/// time per load of a dependent walk of the cycle is the latency of a
/// line just written back: a cache hit if the instruction kept it, a
/// memory access if it evicted it.
fn reload(f: &cpu::CpuFeatures) {
    const REGION: usize = 256 * 1024;
    let lines = REGION / CACHE_LINE;
    let mut m = map_file(REGION);
    let base = m.as_mut_ptr();
    // A random cycle (splitmix64 shuffle): `next[i]` follows line i.
    let mut order: Vec<usize> = (0..lines).collect();
    let mut x = 42u64;
    for i in (1..lines).rev() {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        order.swap(i, ((z ^ (z >> 31)) % (i as u64 + 1)) as usize);
    }
    println!("\n## reload: store every line, flush it, sfence, then a dependent walk (256 KiB)");
    println!("{:<28} {:>10}", "variant", "ns/load");
    let mut variants: Vec<Option<FlushInstr>> = vec![None];
    variants.extend(FlushInstr::available(f).into_iter().map(Some));
    for v in variants {
        let mut t = Vec::with_capacity(50);
        for _ in 0..50 {
            for k in 0..lines {
                let (a, b) = (order[k], order[(k + 1) % lines]);
                // SAFETY: both line indices are below `lines`, inside the
                // mapping; the word is the line's first 8 bytes.
                unsafe {
                    let l = base.add(a * CACHE_LINE);
                    ptr::write_volatile(l.cast::<u64>(), b as u64);
                    if let Some(instr) = v {
                        flush::flush_range(instr, l, 8);
                    }
                }
            }
            flush::sfence();
            let t0 = Instant::now();
            let mut i = order[0];
            for _ in 0..lines {
                // SAFETY: every stored index is below `lines`.
                i = unsafe { ptr::read_volatile(base.add(i * CACHE_LINE).cast::<u64>()) } as usize;
            }
            t.push(t0.elapsed().as_nanos() as f64 / lines as f64);
            black_box(i);
        }
        let name = v.map_or("none", FlushInstr::name);
        println!(
            "{:<28} {:>10.1}",
            format!("store+{name}, walk"),
            median(&mut t)
        );
    }
    black_box(&mut m);
}

/// Puts `order` in a fresh pseudo-random order (Fisher-Yates driven by a
/// splitmix64-style step of `rng`): the order in which interleaved
/// variants take their turn, so that none always follows the same other.
fn shuffle(order: &mut [usize], rng: &mut u64) {
    for i in (1..order.len()).rev() {
        *rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (*rng ^ (*rng >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        order.swap(i, (z >> 33) as usize % (i + 1));
    }
}

/// [`per_call_ns`] for `nv` variants taking turns block by block (in a
/// fresh pseudo-random order each round), so that the machine's drift
/// from one second to the next hits every variant alike: the median
/// nanoseconds per call of `f(variant, i)` for each variant.
fn interleaved_ns(
    nv: usize,
    blocks: usize,
    per_block: usize,
    mut f: impl FnMut(usize, usize),
) -> Vec<f64> {
    for v in 0..nv {
        for i in 0..per_block {
            f(v, i);
        }
    }
    let mut t = vec![Vec::with_capacity(blocks); nv];
    let mut order: Vec<usize> = (0..nv).collect();
    let mut rng = 7u64;
    for b in 0..blocks {
        shuffle(&mut order, &mut rng);
        for &v in &order {
            let t0 = Instant::now();
            for j in 0..per_block {
                f(v, b * per_block + j);
            }
            t[v].push(t0.elapsed().as_nanos() as f64 / per_block as f64);
        }
    }
    t.iter_mut().map(|v| median(v)).collect()
}

/// A dependent chain of `n` multiply-adds: CPU work that touches no
/// memory, to set beside a fence's latency.
#[inline]
fn alu_work(mut x: u64, n: u32) -> u64 {
    for _ in 0..n {
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(x >> 7);
    }
    x
}

/// How the `fence` section's line L is written back before the work.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writeback {
    /// Not stored, not written back.
    Skip,
    /// Stored, flushed, then `sfence`.
    Fenced,
    /// Stored and flushed, no fence.
    Unfenced,
}

/// One access the `fence` section places before or after its ALU work.
#[derive(Clone, Copy)]
enum Access {
    /// No access.
    Nothing,
    /// A plain store to line L.
    StoreL,
    /// A load of line L.
    LoadL,
    /// A locked RMW on line L.
    LockedL,
    /// A locked RMW on a line that was not written back.
    LockedOther,
}

/// Section 2c: what one fence costs by the number of dirty lines it waits
/// for, and which instructions right after a fence wait for it. A commit
/// is one fence over the lines it wrote back; what the code does next
/// either overlaps that fence's latency or waits for it.
fn fence(instr: FlushInstr) {
    const REGION: usize = 4 * MIB;
    let mut m = map_file(REGION);
    let base = m.as_mut_ptr();
    println!(
        "\n## fence: k lines stored + {} each (4 KiB apart), then one sfence",
        instr.name()
    );
    println!("{:<28} {:>10}", "lines", "ns/fence");
    let by_lines = interleaved_ns(8, 200, 500, |v, i| {
        for j in 0..=v {
            // SAFETY: j * 12 KiB + 63 lines * 64 B < 4 MiB: inside the
            // mapping.
            unsafe {
                let l = base.add(j * 3 * 4096 + (i % 64) * CACHE_LINE);
                ptr::write_volatile(l.cast::<u64>(), i as u64);
                flush::flush_range(instr, l, 8);
            }
        }
        flush::sfence();
    });
    for (v, ns) in by_lines.iter().enumerate() {
        println!("{:<28} {ns:>10.0}", v + 1);
    }

    // One line L stored and written back (and fenced, but in the last two
    // variants), then the same ~135 ns chain of ALU work in every variant,
    // with one access placed before or after it; the first variant runs
    // the work alone.
    println!(
        "\n## after store + {} + sfence of line L: what waits for the fence",
        instr.name()
    );
    println!("{:<36} {:>10}", "then", "ns/op");
    let n = black_box(100u32);
    let mut acc = 1u64;
    use Access::{LoadL, LockedL, LockedOther, Nothing, StoreL};
    use Writeback::{Fenced, Skip, Unfenced};
    let variants: [(&str, Writeback, Access, Access); 9] = [
        ("work alone (no fence)", Skip, Nothing, Nothing),
        ("work", Fenced, Nothing, Nothing),
        ("store to L, work", Fenced, StoreL, Nothing),
        ("load of L, work", Fenced, LoadL, Nothing),
        ("locked or on L, work", Fenced, LockedL, Nothing),
        ("locked or elsewhere, work", Fenced, LockedOther, Nothing),
        ("work, locked or elsewhere", Fenced, Nothing, LockedOther),
        (
            "no sfence: locked or elsewhere, work",
            Unfenced,
            LockedOther,
            Nothing,
        ),
        (
            "no sfence: work, locked or elsewhere",
            Unfenced,
            Nothing,
            LockedOther,
        ),
    ];
    let after = interleaved_ns(variants.len(), 200, 500, |v, i| {
        let (_, writeback, before, after) = variants[v];
        // SAFETY: both lines lie inside the 4 MiB mapping (16 lines 4
        // KiB apart at its start, 16 more at 2 MiB); the atomic views
        // are of 8-aligned words of that shared mapping, which only
        // this thread accesses.
        unsafe {
            let l = base.add((i % 16) * 4096);
            let other = &*base.add(2 * MIB + (i % 16) * 4096).cast::<AtomicU64>();
            if writeback != Skip {
                ptr::write_volatile(l.cast::<u64>(), i as u64);
                flush::flush_range(instr, l, 8);
                if writeback == Fenced {
                    flush::sfence();
                }
            }
            let w = l.add(8);
            // The value a load read, for `acc` (so the load is not dead).
            let access = |a: Access| -> Option<u64> {
                match a {
                    Nothing => {}
                    StoreL => ptr::write_volatile(w.cast::<u64>(), i as u64),
                    LoadL => return Some(ptr::read_volatile(w.cast::<u64>())),
                    LockedL => {
                        (*w.cast::<AtomicU64>()).fetch_or(1, Ordering::AcqRel);
                    }
                    LockedOther => {
                        other.fetch_or(1, Ordering::AcqRel);
                    }
                }
                None
            };
            if let Some(x) = access(before) {
                acc = acc.wrapping_add(x);
            }
            acc = alu_work(acc, n);
            if let Some(x) = access(after) {
                acc = acc.wrapping_add(x);
            }
        }
    });
    for ((name, ..), ns) in variants.iter().zip(&after) {
        println!("{name:<36} {ns:>10.0}");
    }
    black_box(acc);
    black_box(&mut m);
}

/// What one atomic free's persistence costs with no bookkeeping at all:
/// the floor under `pmem-bench atomic_alloc_free ... 64`'s free phase.
///
/// Each call frees "object" `i` the way the library does, minus lanes'
/// and the heap's volatile state: reads slot `i` (16 bytes, four to a
/// line) for the object's offset, takes a lane word and a stripe word
/// (compare-and-swap), streams two log lines, writes back the lines the
/// previous call applied to (its bitmap word's, its slot's, the lane's
/// generation word's), starts loading this call's targets for writing,
/// fences once, then applies: a locked and-not on the bitmap word (64
/// consecutive objects share one), the slot nulled, the generation
/// bumped, and the two words released (plain stores). The variants
/// change one thing each, to show what the floor is made of.
fn free_skeleton(instr: FlushInstr) {
    use std::arch::x86_64::{_MM_HINT_ET0, _mm_prefetch};
    // Objects per variant: each variant walks its own slots and bitmap
    // once, so that slots are cold as in the benchmark's 16 MiB array.
    const BLOCKS: usize = 100;
    const PER_BLOCK: usize = 2000;
    const OBJECTS: usize = (BLOCKS + 1) * PER_BLOCK;
    const SLOTS: usize = OBJECTS * 16;
    const BITMAP: usize = OBJECTS / 8;
    // Per variant: slots, then the bitmap, then a page of lane words.
    const STRIDE: usize = (SLOTS + BITMAP + 4096).next_multiple_of(2 * MIB);
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Wb {
        /// At the next call, just before its fence (the library's way).
        BeforeNextFence,
        /// Right after the apply (the next call's locked instructions and
        /// its accesses to the shared bitmap line wait for it).
        AfterApply,
        /// The slot and the generation word streamed at the next call,
        /// just before its fence (the slot's words again, the generation's
        /// new value from a copy), the bitmap line written back only when
        /// the next call moves to another bitmap word: what a protocol
        /// that kept several operations' redo logs valid until one
        /// write-back of a bitmap word covered them all would cost.
        StreamedBatched,
        /// Never: not durable, only the rest's cost.
        Never,
    }
    let variants: [(&str, Wb, bool); 5] = [
        ("as the library does", Wb::BeforeNextFence, true),
        ("no prefetch before the fence", Wb::BeforeNextFence, false),
        ("write-back right after apply", Wb::AfterApply, true),
        (
            "bitmap once per word, rest streamed",
            Wb::StreamedBatched,
            true,
        ),
        ("no write-back (not durable)", Wb::Never, true),
    ];
    let mut m = map_file(STRIDE * variants.len());
    let base = m.as_mut_ptr();
    for v in 0..variants.len() {
        for i in 0..OBJECTS {
            // SAFETY: slot i of variant v lies inside the mapping
            // (v * STRIDE + 16 * i + 16 <= v * STRIDE + SLOTS).
            unsafe {
                let slot = base.add(v * STRIDE + i * 16).cast::<u64>();
                slot.write(1);
                slot.add(1).write((i * 128) as u64);
            }
        }
    }
    let log: Vec<u64> = (0..16).collect();
    println!(
        "\n## one atomic free's persistence alone ({}, 64 objects per bitmap word)",
        instr.name()
    );
    println!("{:<36} {:>10}", "variant", "ns/free");
    // Per variant: where the previous call applied (bitmap word, slot,
    // generation word), at first the variant's own first ones; and the
    // generation's value.
    let mut prev: Vec<[usize; 3]> = (0..variants.len())
        .map(|v| {
            [
                v * STRIDE + SLOTS,
                v * STRIDE,
                v * STRIDE + SLOTS + BITMAP + 64,
            ]
        })
        .collect();
    let mut generation = vec![0u64; variants.len()];
    let ns = interleaved_ns(variants.len(), BLOCKS, PER_BLOCK, |v, i| {
        let (_, wb, prefetch) = variants[v];
        let region = v * STRIDE;
        let lanes = region + SLOTS + BITMAP;
        let (lane_at, gen_at, stripe_at) = (lanes, lanes + 64, lanes + 128);
        // SAFETY: every offset formed below lies inside variant v's
        // region of the mapping (slot i < OBJECTS, bitmap word < BITMAP /
        // 8, the lane page after them), and `log`'s 128 bytes go to the
        // two lines at the region's end; the atomic views are of 8-aligned
        // words of the mapping, which only this thread accesses.
        unsafe {
            let at = |off: usize| base.add(off);
            let word = |off: usize| &*at(off).cast::<AtomicU64>();
            let slot = region + i * 16;
            let obj = at(slot + 8).cast::<u64>().read_volatile() as usize / 128;
            let bm = region + SLOTS + obj / 64 * 8;
            let _ = word(lane_at).compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed);
            let _ = word(stripe_at).compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed);
            let log_at = at(region + STRIDE - 128);
            nt::stream_words(log_at, log.as_ptr().cast(), 128);
            match wb {
                Wb::BeforeNextFence => {
                    for &l in &prev[v] {
                        flush::flush_range(instr, at(l), 8);
                    }
                }
                Wb::StreamedBatched => {
                    let [pbm, pslot, pgen] = prev[v];
                    if pbm != bm {
                        flush::flush_range(instr, at(pbm), 8);
                    }
                    nt::restream_words(at(pslot), 16);
                    let g = generation[v].to_le_bytes();
                    nt::stream_words(at(pgen), g.as_ptr(), 8);
                }
                Wb::AfterApply | Wb::Never => {}
            }
            if prefetch {
                _mm_prefetch::<_MM_HINT_ET0>(at(bm).cast());
                _mm_prefetch::<_MM_HINT_ET0>(at(slot).cast());
            }
            flush::sfence();
            word(bm).fetch_and(!(1 << (obj % 64)), Ordering::AcqRel);
            at(slot).cast::<[u64; 2]>().write_volatile([0, 0]);
            generation[v] += 1;
            if wb != Wb::StreamedBatched {
                let g = at(gen_at).cast::<u64>();
                g.write_volatile(g.read_volatile() + 1);
            }
            if wb == Wb::AfterApply {
                for l in [bm, slot, gen_at] {
                    flush::flush_range(instr, at(l), 8);
                }
            }
            word(stripe_at).store(0, Ordering::Release);
            word(lane_at).store(0, Ordering::Release);
            prev[v] = [bm, slot, gen_at];
        }
    });
    for ((name, ..), ns) in variants.iter().zip(&ns) {
        println!("{name:<36} {ns:>10.0}");
    }
    black_box(&mut m);
}

/// Section 3: bulk copy in 8 MiB chunks.
fn bulk_copy(f: &cpu::CpuFeatures, best: CacheFns, copy_mib: usize) {
    // 3. Bulk copy into the mapping in 8 MiB chunks, one sfence per chunk.
    const CHUNK: usize = 8 * MIB;
    let total = copy_mib / 8 * 8 * MIB;
    let nch = total / CHUNK;
    let big: Vec<u8> = (0..total).map(|i| (i * 7) as u8).collect();
    println!(
        "\n## copy {} MiB in 8 MiB chunks, sfence per chunk",
        total / MIB
    );
    println!(
        "{:<30} {:>6} {:>12} {:>14}",
        "variant", "src", "MiB/s(med)", "MiB/s(total)"
    );
    type CopyFn = Box<dyn Fn(*mut u8, *const u8)>;
    let mut copies: Vec<(String, CopyFn)> = vec![
        (
            "memcpy".into(),
            Box::new(|d, s| {
                // SAFETY: callers pass CHUNK-byte ranges inside `dst` and
                // `big`, which do not overlap.
                unsafe { ptr::copy_nonoverlapping(s, d, CHUNK) }
            }),
        ),
        (
            format!("memcpy+{}+sfence", best.flush.name()),
            Box::new(move |d, s| {
                // SAFETY: as above.
                unsafe {
                    ptr::copy_nonoverlapping(s, d, CHUNK);
                    flush::flush_range(best.flush, d, CHUNK);
                }
                flush::sfence();
            }),
        ),
    ];
    for kind in NtKind::available(f) {
        let c = CacheFns { nt: kind, ..best };
        copies.push((
            format!("nt_{}+sfence", kind.name()),
            Box::new(move |d, s| {
                // SAFETY: as above.
                unsafe { nt::memcpy_nt_nodrain(c, d, s, CHUNK) };
                flush::sfence();
            }),
        ));
    }
    // primitives.c's nt_copy_sse2, line by line: the reference our
    // streaming copy must reach 95% of (issue 5).
    copies.push((
        "ref_primitives.c_sse2+sfence".into(),
        Box::new(|d, s| {
            // SAFETY: as above; SSE2 is baseline on x86-64; d is 8 MiB
            // chunk aligned (so 16-byte aligned) and CHUNK a multiple of 64.
            unsafe { ref_nt_sse2(d, s, CHUNK) };
            flush::sfence();
        }),
    ));
    // Variants interleaved chunk by chunk (in a random order per chunk),
    // each into its own region of the mapping: on a shared machine the
    // noise then hits every variant alike, and the ratios between them
    // mean something even when the absolute figures wander.
    let nv = copies.len();
    let mut dst = map_file(nv * total);
    for src_big in [true, false] {
        let mut t = vec![Vec::with_capacity(nch); nv];
        let mut all = vec![0.0f64; nv];
        let mut order: Vec<usize> = (0..nv).collect();
        let mut rng = 42u64;
        for c in 0..nch {
            // A fresh pseudo-random order per chunk: no variant always
            // follows the same other one.
            shuffle(&mut order, &mut rng);
            for &v in &order {
                // SAFETY: region v, chunk c lies inside dst (nv * total).
                let d = unsafe { dst.as_mut_ptr().add(v * total + c * CHUNK) };
                let s = if src_big {
                    big[c * CHUNK..].as_ptr()
                } else {
                    big.as_ptr()
                };
                let t0 = Instant::now();
                copies[v].1(d, s);
                let e = t0.elapsed().as_secs_f64();
                t[v].push(e);
                all[v] += e;
            }
        }
        for (v, (name, _)) in copies.iter().enumerate() {
            let med = 8.0 / median(&mut t[v]);
            let tot = (total / MIB) as f64 / all[v];
            let src = if src_big { "big" } else { "8M" };
            println!("{name:<30} {src:>6} {med:>12.0} {tot:>14.0}");
        }
    }
    black_box(&dst);
}

/// `nt_copy_sse2` of `peer/pmdk/primitives.c`: per line, four unaligned
/// 16-byte loads then four `movntdq`.
///
/// # Safety
/// `d..d+len` writable and 16-byte aligned, `len % 64 == 0`, `s` readable
/// for `len` bytes and not overlapping.
unsafe fn ref_nt_sse2(d: *mut u8, s: *const u8, len: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
    let (d, s) = (d.cast::<__m128i>(), s.cast::<__m128i>());
    for o in (0..len / 16).step_by(4) {
        // SAFETY: o + 3 < len / 16: the four elements lie in both ranges.
        unsafe {
            let a = _mm_loadu_si128(s.add(o));
            let b = _mm_loadu_si128(s.add(o + 1));
            let c = _mm_loadu_si128(s.add(o + 2));
            let e = _mm_loadu_si128(s.add(o + 3));
            _mm_stream_si128(d.add(o), a);
            _mm_stream_si128(d.add(o + 1), b);
            _mm_stream_si128(d.add(o + 2), c);
            _mm_stream_si128(d.add(o + 3), e);
        }
    }
}

/// Section 4: per-call cost by size: what ships (memcpy_nodrain, streaming
/// from NT_THRESHOLD up) against each path forced, each + one sfence.
/// Cold: destinations advance through 32 MiB, so lines are not cached (as
/// for fresh objects). Hot: the same destination every call (as for a log
/// or a counter rewritten in a loop).
fn per_size(best: CacheFns, hot: bool) {
    const REGION: usize = 32 * MIB;
    let mut m = map_file(REGION);
    let base = m.as_mut_ptr();
    let src: Vec<u8> = (0..64 * 1024).map(|i| (i * 13) as u8).collect();
    println!(
        "\n## per call, + one sfence (ns), {} destination; memcpy_nodrain streams from {NT_THRESHOLD} B, nt = {}",
        if hot {
            "hot (same)"
        } else {
            "cold (cycling 32 MiB)"
        },
        best.nt.name()
    );
    println!(
        "{:>8} {:>16} {:>16} {:>16} {:>10}",
        "bytes", "memcpy_nodrain", "plain+flush", "nt(forced)", "nt/plain"
    );
    let mut size = 64;
    while size <= 64 * 1024 {
        let slots = if hot { 1 } else { REGION / size };
        let per_block = (256 * 1024 / size).max(16);
        let dst_of = move |i: usize| {
            // SAFETY: slot index reduced modulo the number of whole slots.
            unsafe { base.add((i % slots) * size) }
        };
        let sp = src.as_ptr();
        let shipped = per_call_ns(100, per_block, |i| {
            // SAFETY: dst_of(i)..+size is inside the mapping, sp..+size
            // inside src (size <= 64 KiB), distinct memory.
            unsafe { nt::memcpy_nodrain(best, dst_of(i), sp, size) };
            flush::sfence();
        });
        let plain = per_call_ns(100, per_block, |i| {
            let d = dst_of(i);
            // SAFETY: as above.
            unsafe {
                ptr::copy_nonoverlapping(sp, d, size);
                flush::flush_range(best.flush, d, size);
            }
            flush::sfence();
        });
        let forced = per_call_ns(100, per_block, |i| {
            // SAFETY: as above.
            unsafe { nt::memcpy_nt_nodrain(best, dst_of(i), sp, size) };
            flush::sfence();
        });
        let ratio = forced / plain;
        println!("{size:>8} {shipped:>16.1} {plain:>16.1} {forced:>16.1} {ratio:>10.2}");
        size *= 2;
    }
    black_box(&mut m);
}

/// `msync(MS_SYNC)` of `off..off+len` of the mapping at `base`.
fn msync(base: *mut u8, off: usize, len: usize) {
    // SAFETY: callers pass ranges inside the mapping, page aligned; msync
    // touches no memory through the pointer.
    let rc = unsafe { libc::msync(base.add(off).cast(), len, libc::MS_SYNC) };
    assert_eq!(rc, 0, "msync: {}", std::io::Error::last_os_error());
}

/// Section 5: what one `msync` costs, and whether a drain whose dirty pages
/// lie `gap` pages apart should issue one call spanning the clean pages
/// between them or one call per dirty page. Each rep dirties the two pages
/// (one byte each), then syncs them; the median per rep is printed.
fn msync_gaps() {
    const PAGE: usize = 4096;
    const REGION: usize = 64 * MIB;
    const REPS: usize = 300;
    let mut m = map_file(REGION);
    let base = m.as_mut_ptr();
    msync(base, 0, REGION);
    let dir = std::env::var("PMEM_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    println!("\n## msync (MS_SYNC) in {dir}: median us per rep, {REPS} reps");
    let mut t = Vec::with_capacity(REPS);
    for r in 0..REPS {
        let t0 = Instant::now();
        msync(base, PAGE, PAGE);
        t.push(t0.elapsed().as_secs_f64() * 1e6);
        black_box(r);
    }
    println!("{:<40} {:>10.1}", "clean 4 KiB page", median(&mut t));
    t.clear();
    for r in 0..REPS {
        m[0] = r as u8;
        let t0 = Instant::now();
        msync(base, 0, PAGE);
        t.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    println!("{:<40} {:>10.1}", "one dirty 4 KiB page", median(&mut t));
    println!(
        "{:>10} {:>14} {:>14} {:>10}",
        "gap_pages", "two_calls_us", "one_span_us", "span/two"
    );
    for gap in [1usize, 2, 8, 32, 128, 512, 2048, 8192, REGION / PAGE - 2] {
        let b = (gap + 1) * PAGE;
        let mut two = Vec::with_capacity(REPS);
        let mut one = Vec::with_capacity(REPS);
        for r in 0..REPS {
            m[0] = r as u8;
            m[b] = r as u8;
            let t0 = Instant::now();
            msync(base, 0, PAGE);
            msync(base, b, PAGE);
            two.push(t0.elapsed().as_secs_f64() * 1e6);
            m[0] = r as u8 ^ 1;
            m[b] = r as u8 ^ 1;
            let t0 = Instant::now();
            msync(base, 0, b + PAGE);
            one.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        let (two, one) = (median(&mut two), median(&mut one));
        println!("{gap:>10} {two:>14.1} {one:>14.1} {:>10.2}", one / two);
    }
}
