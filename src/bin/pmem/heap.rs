//! The heap part of `pmem check` and `pmem info --heap`: runs
//! `pmem_alloc::check_bytes` on the pool's bytes and, when the heap is
//! consistent, walks the chunk table once more (through the public layout
//! API) for per-size-class usage and the largest free span, which the
//! offline report does not carry. Nothing here writes to the pool.

use crate::size::human_size;
use pmem_alloc::class::classes;
use pmem_alloc::layout::{
    ChunkHeader, Geometry, HEAP_HEADER_SIZE, HEAP_MAGIC, HeapHeader, Layout, RUN_HEADER_SIZE,
};
use pmem_alloc::{HeapRegion, HeapReport, check_bytes};
use pmem_pool::{HeaderInfo, LaneState};
use serde_json::{Map, Value, json};
use std::fmt::Write as _;

/// Usage of one size class, from the persistent bitmaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassUse {
    /// Class index.
    pub class: u8,
    /// Bytes per block (allocation header included in heaps of version 1
    /// and 2).
    pub block: u64,
    /// Runs of the class.
    pub runs: u64,
    /// Allocated blocks.
    pub used: u64,
    /// Free blocks.
    pub free: u64,
}

/// What the chunk walk adds to a consistent heap's report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// The heap header's format version (3: allocation headers of blocks
    /// of 256 bytes or more in a table per run; 1 and 2: before every
    /// block).
    pub heap_version: u32,
    /// Classes with at least one run, in class order.
    pub classes: Vec<ClassUse>,
    /// Chunks in the heap.
    pub total_chunks: u64,
    /// Chunks in huge spans.
    pub huge_chunks: u64,
    /// Longest run of consecutive free chunks.
    pub largest_free_chunks: u64,
}

/// The heap as the CLI sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum HeapView {
    /// Not checked, and why (no valid header, truncated file...).
    NotChecked(String),
    /// The heap header's magic is all zero: the pool was never opened by
    /// pmem-tx, so the heap was never formatted. Not a problem.
    NotFormatted,
    /// Checked.
    Checked {
        /// What `check_bytes` found.
        report: HeapReport,
        /// Per-class usage (`None` when the report has problems: the walk
        /// would read damaged metadata).
        usage: Option<Usage>,
        /// Lanes hold pending logs: the next open's recovery may change
        /// the heap.
        provisional: bool,
    },
}

/// True when `lanes` holds a log the next open recovers.
pub fn has_pending(lanes: &[(u32, LaneState)]) -> bool {
    lanes.iter().any(|(_, s)| {
        matches!(
            s,
            LaneState::UndoPending { .. } | LaneState::RedoPending { .. }
        )
    })
}

fn u64_at(b: &[u8], off: u64) -> Option<u64> {
    let o = usize::try_from(off).ok()?;
    let w: [u8; 8] = b.get(o..o.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(w))
}

/// Checks the heap of a pool whose bytes are `pool` and validated header
/// `h`.
pub fn inspect(pool: &[u8], h: &HeaderInfo, provisional: bool) -> HeapView {
    let magic_off = usize::try_from(h.heap_offset).ok();
    let magic = magic_off.and_then(|o| pool.get(o..o.checked_add(HEAP_MAGIC.len())?));
    match magic {
        None => {
            return HeapView::NotChecked(format!(
                "the heap offset {:#x} lies past the end of the pool",
                h.heap_offset
            ));
        }
        Some(m) if m.iter().all(|&b| b == 0) => return HeapView::NotFormatted,
        Some(_) => {}
    }
    let report = check_bytes(
        pool,
        HeapRegion {
            offset: h.heap_offset,
            size: h.heap_size,
        },
    );
    let usage = if report.is_ok() { usage(pool, h) } else { None };
    HeapView::Checked {
        report,
        usage,
        provisional,
    }
}

/// Walks the chunk table of a heap `check_bytes` found consistent.
/// `None` if anything does not decode after all.
fn usage(pool: &[u8], h: &HeaderInfo) -> Option<Usage> {
    let geo = Geometry::new(h.heap_offset, h.heap_size, pool.len() as u64).ok()?;
    let start = usize::try_from(geo.region_offset).ok()?;
    let header = pool.get(start..start.checked_add(HEAP_HEADER_SIZE as usize)?)?;
    let heap_version = HeapHeader::validate(header, &geo).ok()?;
    let geo = geo.with_version(heap_version);
    let n = u32::try_from(geo.chunk_count).ok()?;
    let mut per_class: Vec<ClassUse> = classes(geo.layout)
        .iter()
        .map(|c| ClassUse {
            class: c.index,
            block: c.block,
            runs: 0,
            used: 0,
            free: 0,
        })
        .collect();
    let mut u = Usage {
        heap_version,
        total_chunks: geo.chunk_count,
        ..Usage::default()
    };
    let mut free_len = 0u64;
    let mut c = 0u32;
    while c < n {
        let span = match ChunkHeader::decode(u64_at(pool, geo.header_off(c))?).ok()? {
            ChunkHeader::Free => {
                free_len += 1;
                u.largest_free_chunks = u.largest_free_chunks.max(free_len);
                c += 1;
                continue;
            }
            ChunkHeader::Run { class, span } => {
                let cl = classes(geo.layout).get(usize::from(class))?;
                let start = geo.chunk_off(c);
                let mut used = 0u64;
                for w in 0..cl.bitmap_words() {
                    used += u64::from(u64_at(pool, start + RUN_HEADER_SIZE + w * 8)?.count_ones());
                }
                let cu = per_class.get_mut(usize::from(class))?;
                cu.runs += 1;
                cu.used += used;
                cu.free += u64::from(cl.nblocks).saturating_sub(used);
                span
            }
            ChunkHeader::Huge { span } => {
                u.huge_chunks += u64::from(span);
                span
            }
        };
        free_len = 0;
        c = c.checked_add(span)?;
    }
    u.classes = per_class.into_iter().filter(|c| c.runs > 0).collect();
    Some(u)
}

/// `root` for the root object's type number, else the number.
pub fn type_name(t: u64) -> String {
    if t == u64::MAX {
        "root".into()
    } else {
        t.to_string()
    }
}

/// Heap problems as they join the check's problem list.
pub fn problems(v: &HeapView) -> Vec<String> {
    match v {
        HeapView::Checked { report, .. } => report
            .problems
            .iter()
            .map(|p| format!("heap: {p}"))
            .collect(),
        _ => Vec::new(),
    }
}

const NOT_FORMATTED: &str = "not formatted yet (no object was ever allocated)";
const PROVISIONAL: &str = "provisional: lanes hold pending logs, and recovery at the next open may change the heap (a pending transaction's unpublished blocks are free already)";

/// External fragmentation of the free chunks: 1 − largest free span /
/// free chunks (0 when at most one span is free).
fn fragmentation(free_chunks: u64, largest: u64) -> f64 {
    if free_chunks == 0 {
        0.0
    } else {
        1.0 - largest as f64 / free_chunks as f64
    }
}

/// Human text, one `heap:` block; `classes` adds the per-class table and
/// the heap problems (`info --heap`; `check` lists problems itself).
pub fn text(out: &mut String, v: &HeapView, classes: bool) {
    match v {
        HeapView::NotChecked(why) => {
            let _ = writeln!(out, "heap use:  not checked: {why}");
        }
        HeapView::NotFormatted => {
            let _ = writeln!(out, "heap use:  {NOT_FORMATTED}");
        }
        HeapView::Checked {
            report: r,
            usage,
            provisional,
        } => {
            let by_type: Vec<String> = r
                .objects_by_type
                .iter()
                .map(|(t, n)| format!("{}: {n}", type_name(*t)))
                .collect();
            let _ = writeln!(
                out,
                "heap use:  {} object{} (by type {})",
                r.objects,
                if r.objects == 1 { "" } else { "s" },
                if by_type.is_empty() {
                    "none".to_string()
                } else {
                    by_type.join(", ")
                }
            );
            let _ = writeln!(
                out,
                "           used {} bytes ({}), free {} bytes ({})",
                r.used_bytes,
                human_size(r.used_bytes),
                r.free_bytes,
                human_size(r.free_bytes)
            );
            let _ = writeln!(
                out,
                "           runs {}, huge spans {}, free chunks {}",
                r.runs, r.huge, r.free_chunks
            );
            if let Some(u) = usage {
                let _ = writeln!(
                    out,
                    "           largest free span {} of {} free chunks (fragmentation {:.2}), {} chunks in all",
                    u.largest_free_chunks,
                    r.free_chunks,
                    fragmentation(r.free_chunks, u.largest_free_chunks),
                    u.total_chunks
                );
                let _ = writeln!(
                    out,
                    "           heap format version {} ({})",
                    u.heap_version,
                    match Layout::of_version(u.heap_version) {
                        Layout::Table =>
                            "allocation headers of blocks from 256 bytes in run tables",
                        Layout::Inline => "allocation headers before every block",
                    }
                );
                if classes {
                    if u.classes.is_empty() {
                        let _ = writeln!(out, "           size classes: no runs");
                    } else {
                        let _ = writeln!(
                            out,
                            "           class  block bytes  runs  used blocks  free blocks"
                        );
                        for c in &u.classes {
                            let _ = writeln!(
                                out,
                                "           {:>5}  {:>11}  {:>4}  {:>11}  {:>11}",
                                c.class, c.block, c.runs, c.used, c.free
                            );
                        }
                    }
                }
            }
            if *provisional {
                let _ = writeln!(out, "           {PROVISIONAL}");
            }
            if classes {
                for p in &r.problems {
                    let _ = writeln!(out, "  - heap problem: {p} (run `pmem check`)");
                }
            }
        }
    }
}

/// JSON: `{status, objects, objects_by_type: {"<type>"|"root": n}, used_bytes,
/// free_bytes, runs, huge, free_chunks, largest_free_chunks, total_chunks,
/// heap_version, fragmentation, classes: [{class, block_size, runs, used_blocks,
/// free_blocks}], provisional, problems}`; `status` is `checked`,
/// `not_formatted` or `not_checked` (with `reason`).
pub fn json(v: &HeapView) -> Value {
    match v {
        HeapView::NotChecked(why) => {
            json!({ "status": "not_checked", "reason": why, "problems": [] })
        }
        HeapView::NotFormatted => {
            json!({ "status": "not_formatted", "reason": NOT_FORMATTED, "problems": [] })
        }
        HeapView::Checked {
            report: r,
            usage,
            provisional,
        } => {
            let by_type: Map<String, Value> = r
                .objects_by_type
                .iter()
                .map(|(t, n)| (type_name(*t), json!(n)))
                .collect();
            let (largest, total, version, frag, classes) = match usage {
                Some(u) => (
                    json!(u.largest_free_chunks),
                    json!(u.total_chunks),
                    json!(u.heap_version),
                    json!(fragmentation(r.free_chunks, u.largest_free_chunks)),
                    Value::Array(
                        u.classes
                            .iter()
                            .map(|c| {
                                json!({
                                    "class": c.class,
                                    "block_size": c.block,
                                    "runs": c.runs,
                                    "used_blocks": c.used,
                                    "free_blocks": c.free,
                                })
                            })
                            .collect(),
                    ),
                ),
                None => (
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ),
            };
            json!({
                "status": "checked",
                "objects": r.objects,
                "objects_by_type": by_type,
                "used_bytes": r.used_bytes,
                "free_bytes": r.free_bytes,
                "runs": r.runs,
                "huge": r.huge,
                "free_chunks": r.free_chunks,
                "largest_free_chunks": largest,
                "total_chunks": total,
                "heap_version": version,
                "fragmentation": frag,
                "classes": classes,
                "provisional": provisional,
                "problems": r.problems,
            })
        }
    }
}
