//! Opening a heap: format on first use, else validate the heap header and
//! rebuild the volatile state from the persistent metadata alone.

use crate::check::{Span, walk};
use crate::error::Result;
use crate::heap::{Heap, HeapRegion, Rebuilt};
use crate::layout::{Geometry, HEAP_HEADER_SIZE, HeapHeader, corrupt};
use crate::media::{Live, Media};
use pmem_pool::Persister;

impl Heap {
    /// Opens the heap in `region` of the pool behind `p`: formats it if its
    /// header magic is all zero (never formatted, or a crash during the
    /// format), else validates the header and rebuilds the volatile state
    /// from chunk headers, run headers and bitmaps. Empty runs become free
    /// chunks (one persisted 8-byte store each, one fence for all).
    /// Inconsistent metadata gives `Error::Corrupt`.
    ///
    /// # Safety
    /// The pool is mapped read-write (open may format the heap or free
    /// empty runs). `p` is the persister of the pool holding `region`, and every later
    /// call on the returned heap passes the same persister. While the heap
    /// is open, nothing else writes the heap region except through this
    /// heap's redo ops (applied atomically) and into the data of objects
    /// the caller reserved or allocated.
    pub unsafe fn open(p: &Persister, region: HeapRegion) -> Result<Heap> {
        let mut geo = Geometry::new(region.offset, region.size, p.len() as u64)?;
        let live = Live::new(p);
        let mut magic = [0u8; 8];
        live.read(geo.region_offset, &mut magic);
        if magic == [0; 8] {
            format(p, &geo)?;
        } else {
            let mut hb = vec![0u8; HEAP_HEADER_SIZE as usize];
            live.read(geo.region_offset, &mut hb);
            geo = geo.with_version(HeapHeader::validate(&hb, &geo)?);
        }
        let mut problems = Vec::new();
        let mut r = Rebuilt {
            free: Vec::new(),
            runs: Vec::new(),
            huge: Vec::new(),
        };
        let mut empty = Vec::new();
        walk(&live, &geo, &mut problems, |s| match s {
            Span::Free { start, len } => r.free.push((start, len)),
            Span::Run {
                first,
                class,
                bitmap,
            } => {
                if bitmap.iter().all(|&w| w == 0) {
                    empty.push((first, class.chunks));
                } else {
                    r.runs.push((first, class, bitmap));
                }
            }
            Span::Huge { first, span } => r.huge.push((first, span)),
        });
        if let Some(first) = problems.first() {
            return Err(corrupt(format!(
                "{first}{}",
                if problems.len() > 1 {
                    format!(" (and {} more problems)", problems.len() - 1)
                } else {
                    String::new()
                }
            )));
        }
        if !empty.is_empty() {
            for &(first, _) in &empty {
                live.store_u64(geo.header_off(first), 0);
            }
            p.drain()?;
            r.free.extend(empty);
        }
        Ok(Heap::assemble(geo, r))
    }
}

/// Formats a never-formatted heap: zero the chunk table and write the
/// header without its magic (persist), then the magic (persist). A crash
/// before the second persist leaves the magic zero: formatted again at the
/// next open.
fn format(p: &Persister, geo: &Geometry) -> Result<()> {
    let live = Live::new(p);
    let h = HeapHeader::new(geo).to_bytes();
    // SAFETY: `open`'s contract: nothing else accesses the heap region; the
    // header and table lie inside it (Geometry::new checked the region).
    unsafe {
        live.zero(geo.table_offset, geo.chunks_offset - geo.table_offset);
        live.write(geo.region_offset + 8, &h[8..]);
    }
    p.drain()?;
    // SAFETY: as above.
    unsafe { live.write(geo.region_offset, &h[..8]) };
    p.drain()?;
    Ok(())
}
