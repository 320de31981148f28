//! Walking the persistent heap metadata: the consistency check (live and
//! offline), the object listing, and the scan rebuild starts from.

use crate::class::{Class, classes};
use crate::heap::{AllocInfo, Heap, HeapRegion};
use crate::layout::{
    ALLOC_HEADER_SIZE, AllocHeader, CHUNK_SIZE, ChunkHeader, Geometry, HEAP_HEADER_SIZE,
    HeapHeader, RUN_HEADER_SIZE, RunHeader,
};
use crate::media::{Live, Media};
use pmem_pool::Persister;
use std::collections::BTreeMap;

/// The result of a heap consistency check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeapReport {
    /// Every inconsistency found, one sentence each; empty when consistent.
    pub problems: Vec<String>,
    /// Allocated objects.
    pub objects: u64,
    /// Allocated objects per type number.
    pub objects_by_type: BTreeMap<u64, u64>,
    /// Bytes of allocated blocks and huge spans (headers included).
    pub used_bytes: u64,
    /// Bytes of free chunks and free blocks in runs.
    pub free_bytes: u64,
    /// Runs.
    pub runs: u64,
    /// Huge objects.
    pub huge: u64,
    /// Free chunks.
    pub free_chunks: u64,
}

impl HeapReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One span found by the walk.
pub(crate) enum Span {
    /// Free chunks `start..start+len`.
    Free { start: u32, len: u32 },
    /// A valid run; `bitmap` holds its persistent bitmap words.
    Run {
        first: u32,
        class: &'static Class,
        bitmap: Vec<u64>,
    },
    /// A used huge span.
    Huge { first: u32, span: u32 },
}

/// Walks the chunk table of `geo` in `m`, calling `f` with each
/// well-formed span and pushing a sentence to `problems` for each
/// malformed one (which is then skipped, as far as its header says, or one
/// chunk when that is unusable).
pub(crate) fn walk<M: Media + ?Sized>(
    m: &M,
    geo: &Geometry,
    problems: &mut Vec<String>,
    mut f: impl FnMut(Span),
) {
    let n = geo.chunk_count as u32;
    let mut c = 0u32;
    let mut free_start: Option<u32> = None;
    let flush_free = |free_start: &mut Option<u32>, end: u32, f: &mut dyn FnMut(Span)| {
        if let Some(s) = free_start.take() {
            f(Span::Free {
                start: s,
                len: end - s,
            });
        }
    };
    while c < n {
        let w = m.read_u64(geo.header_off(c));
        let h = match ChunkHeader::decode(w) {
            Ok(h) => h,
            Err(e) => {
                problems.push(format!("chunk {c}: {e}"));
                flush_free(&mut free_start, c, &mut f);
                c += 1;
                continue;
            }
        };
        let span = match h {
            ChunkHeader::Free => {
                free_start.get_or_insert(c);
                c += 1;
                continue;
            }
            ChunkHeader::Run { span, .. } | ChunkHeader::Huge { span } => span,
        };
        flush_free(&mut free_start, c, &mut f);
        if u64::from(c) + u64::from(span) > u64::from(n) {
            problems.push(format!(
                "chunk {c}: span of {span} chunks runs past the last chunk ({n} chunks)"
            ));
            c += 1;
            continue;
        }
        for inner in c + 1..c + span {
            let w = m.read_u64(geo.header_off(inner));
            if w != 0 {
                problems.push(format!(
                    "chunk {inner}: header {w:#018x} inside the span starting at chunk {c} (must be 0)"
                ));
            }
        }
        match h {
            ChunkHeader::Run { class, span } => match check_run(m, geo, c, class, span) {
                Ok((class, bitmap)) => f(Span::Run {
                    first: c,
                    class,
                    bitmap,
                }),
                Err(e) => problems.push(format!("run at chunk {c}: {e}")),
            },
            ChunkHeader::Huge { span } => {
                let h = alloc_header(m, geo.chunk_off(c) + geo.huge_data - ALLOC_HEADER_SIZE);
                if h.size > geo.huge_usable(span) {
                    problems.push(format!(
                        "huge object at chunk {c}: allocation header size {} exceeds its span of {span} chunks",
                        h.size
                    ));
                }
                f(Span::Huge { first: c, span });
            }
            ChunkHeader::Free => {}
        }
        c += span;
    }
    flush_free(&mut free_start, n, &mut f);
}

/// The allocation header at pool offset `at`.
fn alloc_header<M: Media + ?Sized>(m: &M, at: u64) -> AllocHeader {
    let mut b = [0u8; ALLOC_HEADER_SIZE as usize];
    m.read(at, &mut b);
    AllocHeader::from_bytes(&b)
}

/// Validates the run at chunk `c` and reads its bitmap.
fn check_run<M: Media + ?Sized>(
    m: &M,
    geo: &Geometry,
    c: u32,
    class: u8,
    span: u32,
) -> Result<(&'static Class, Vec<u64>), String> {
    let cl = classes(geo.layout)
        .get(usize::from(class))
        .ok_or_else(|| format!("size class {class} does not exist"))?;
    if cl.chunks != span {
        return Err(format!(
            "spans {span} chunks but class {class} runs span {}",
            cl.chunks
        ));
    }
    let start = geo.chunk_off(c);
    let mut b = [0u8; RUN_HEADER_SIZE as usize];
    m.read(start, &mut b);
    let h = RunHeader::from_bytes(&b)?;
    if h.block_size != cl.block
        || h.nblocks != cl.nblocks
        || h.class != u16::from(class)
        || u32::from(h.chunks) != span
        || u64::from(h.data_off) != cl.data_off
        || h.reserved.iter().any(|&x| x != 0)
    {
        return Err(format!(
            "run header ({} blocks of {} bytes, class {}, {} chunks, data at {:#x}) does not match class {class}",
            h.nblocks, h.block_size, h.class, h.chunks, h.data_off
        ));
    }
    let words = cl.bitmap_words();
    let bitmap: Vec<u64> = (0..words)
        .map(|w| m.read_u64(start + RUN_HEADER_SIZE + w * 8))
        .collect();
    let tail = cl.nblocks % 64;
    if tail != 0
        && let Some(&last) = bitmap.last()
        && last >> tail != 0
    {
        return Err(format!(
            "bitmap word {} has bits set beyond the run's {} blocks: {last:#018x}",
            words - 1,
            cl.nblocks
        ));
    }
    Ok((cl, bitmap))
}

/// The blocks set in a bitmap.
fn set_bits(bitmap: &[u64]) -> impl Iterator<Item = u32> + '_ {
    bitmap.iter().enumerate().flat_map(|(w, &bits)| {
        (0..64u32)
            .filter(move |b| bits >> b & 1 == 1)
            .map(move |b| w as u32 * 64 + b)
    })
}

/// Checks the heap header against `geo`, then walks everything.
fn check_media<M: Media + ?Sized>(
    m: &M,
    geo: &Geometry,
    per_chunk: Option<&mut Vec<u8>>,
) -> HeapReport {
    let mut r = HeapReport::default();
    let mut hb = vec![0u8; HEAP_HEADER_SIZE as usize];
    m.read(geo.region_offset, &mut hb);
    let geo = &match HeapHeader::validate(&hb, geo) {
        Ok(version) => geo.with_version(version),
        Err(e) => {
            r.problems.push(e.to_string());
            return r;
        }
    };
    let mut owner = vec![0u8; geo.chunk_count as usize];
    let mut problems = Vec::new();
    let mut header_problems = Vec::new();
    walk(m, geo, &mut problems, |s| match s {
        Span::Free { len, .. } => {
            r.free_chunks += u64::from(len);
            r.free_bytes += u64::from(len) * CHUNK_SIZE;
        }
        Span::Run {
            first,
            class,
            bitmap,
        } => {
            r.runs += 1;
            owner[first as usize] = 1;
            let start = geo.chunk_off(first);
            let mut used = 0u64;
            for i in set_bits(&bitmap) {
                used += 1;
                let data = class.data(start, i);
                let h = alloc_header(m, class.header(start, i));
                if h.size > class.usable() {
                    header_problems.push(format!(
                        "object at {data:#x} (run at chunk {first}, block {i}): allocation header size {} exceeds the block's {} usable bytes",
                        h.size,
                        class.usable()
                    ));
                }
                *r.objects_by_type.entry(h.type_num).or_default() += 1;
            }
            r.objects += used;
            r.used_bytes += used * class.block;
            r.free_bytes += (u64::from(class.nblocks) - used) * class.block;
        }
        Span::Huge { first, span } => {
            owner[first as usize] = 2;
            r.huge += 1;
            r.objects += 1;
            r.used_bytes += u64::from(span) * CHUNK_SIZE;
            let h = alloc_header(m, geo.chunk_off(first) + geo.huge_data - ALLOC_HEADER_SIZE);
            *r.objects_by_type.entry(h.type_num).or_default() += 1;
        }
    });
    r.problems.extend(problems);
    r.problems.extend(header_problems);
    if let Some(out) = per_chunk {
        *out = owner;
    }
    r
}

/// Checks the heap of a whole pool file's bytes, offline (`pmem check`).
pub fn check_bytes(pool: &[u8], region: HeapRegion) -> HeapReport {
    match Geometry::new(region.offset, region.size, pool.len() as u64) {
        Ok(geo) => check_media(pool, &geo, None),
        Err(e) => HeapReport {
            problems: vec![e.to_string()],
            ..HeapReport::default()
        },
    }
}

impl Heap {
    /// Checks the persistent metadata and that the volatile state agrees
    /// with it (no allocated block reservable, free chunks free on media,
    /// every persistent run and huge span known). Call it while no other
    /// thread uses the heap.
    pub fn check(&self, p: &Persister) -> HeapReport {
        let geo = self.geometry();
        let live = Live::new(p);
        let mut owner = Vec::new();
        let mut r = check_media(&live, &geo, Some(&mut owner));
        if !r.is_ok() {
            return r;
        }
        let v = self.volatile_view();
        let mut vol = vec![0u8; geo.chunk_count as usize];
        for (s, l) in v.free {
            for c in s..s + l {
                if live.read_u64(geo.header_off(c)) != 0 {
                    r.problems.push(format!(
                        "chunk {c} is in the volatile free pool but its header is not 0"
                    ));
                }
            }
        }
        for (first, class, avail) in v.runs {
            vol[first as usize] = 1;
            let cl = &classes(geo.layout)[usize::from(class)];
            let w = live.read_u64(geo.header_off(first));
            if w != (ChunkHeader::Run {
                class,
                span: cl.chunks,
            })
            .encode()
            {
                r.problems.push(format!(
                    "volatile run of class {class} at chunk {first} but its chunk header is {w:#018x}"
                ));
                continue;
            }
            let start = geo.chunk_off(first);
            for i in avail {
                let word = live.read_u64(start + RUN_HEADER_SIZE + u64::from(i / 64) * 8);
                if word >> (i % 64) & 1 == 1 {
                    r.problems.push(format!(
                        "block {i} of the run at chunk {first} is allocated but reservable"
                    ));
                }
            }
        }
        for (first, _) in v.huge {
            vol[first as usize] = 2;
        }
        for (c, (&o, &v)) in owner.iter().zip(&vol).enumerate() {
            if o != 0 && o != v {
                r.problems.push(format!(
                    "chunk {c} starts a {} on media that the volatile state does not know",
                    if o == 1 { "run" } else { "huge object" }
                ));
            }
        }
        r
    }

    /// Every allocated object (per the persistent metadata), optionally
    /// only those of `type_num`, in offset order.
    pub fn objects(&self, p: &Persister, type_num: Option<u64>) -> Vec<AllocInfo> {
        let geo = self.geometry();
        let live = Live::new(p);
        let mut out = Vec::new();
        let mut problems = Vec::new();
        walk(&live, &geo, &mut problems, |s| {
            let mut push = |data: u64, hdr: u64, usable: u64| {
                let h = alloc_header(&live, hdr);
                if type_num.is_none_or(|t| t == h.type_num) {
                    out.push(AllocInfo {
                        off: data,
                        size: h.size,
                        usable,
                        type_num: h.type_num,
                    });
                }
            };
            match s {
                Span::Free { .. } => {}
                Span::Run {
                    first,
                    class,
                    bitmap,
                } => {
                    let start = geo.chunk_off(first);
                    for i in set_bits(&bitmap) {
                        push(class.data(start, i), class.header(start, i), class.usable());
                    }
                }
                Span::Huge { first, span } => {
                    let data = geo.chunk_off(first) + geo.huge_data;
                    push(data, data - ALLOC_HEADER_SIZE, geo.huge_usable(span))
                }
            }
        });
        out
    }
}
