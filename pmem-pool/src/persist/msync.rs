//! The `msync` fallback (`Mode::Msync`): a flush records the dirty page
//! range, per thread and pool; a drain msyncs (`MS_SYNC`) the merged ranges
//! this thread recorded for that pool, and nothing else.
//!
//! State is thread-local, like the CPU's flush/fence pairing it replaces: a
//! drain makes durable what *this thread* flushed. A transaction dirties a
//! handful of ranges, so each pool keeps a short sorted vector of disjoint,
//! non-adjacent page ranges; inserting merges with its neighbours.
//!
//! One drain, one system call: the drain's ranges are joined into spans
//! whenever the clean gap between two of them is at most [`JOIN_GAP`], and
//! each span is one `msync`. On a disk file system the cost of an `msync` is
//! the device cache flush it ends with (ext4: ~120 µs unloaded, several ms
//! when the disk is shared), paid per call, even for a clean page; the
//! clean pages inside a span cost nothing measurable, because the kernel
//! finds the dirty pages of a range through the page cache's dirty tags and
//! writes only those (`cargo bench -p pmem-pool --bench primitives --
//! msync` with `PMEM_BENCH_DIR` on a disk: two dirty pages 4 KiB to 32 MiB
//! apart cost one call either way in one span, two calls' worth in two).
//! So every page a drain writes back is still a dirty page; the span only
//! lets one call carry them. A hashmap insert drains 5 times but dirtied
//! 8 separate page ranges, so this takes it from 8 calls to 5.
//!
//! Counters of `msync` calls and bytes ([`msync_stats`]) are thread-local
//! too, so parallel tests do not see each other's calls.
//!
//! # Safety
//! Ranges are recorded by the [`Persister`](super::Persister) from addresses
//! inside its live mapping, rounded out to whole pages (a mapping starts on
//! a page boundary and its length is rounded up to pages by the kernel, so
//! the rounded range stays inside it). The persister calls [`forget`] before
//! the mapping goes away, so `sync` never msyncs an unmapped range of its
//! thread; ranges other threads recorded and never drained are dropped with
//! their thread-local state (msync of them would be harmless anyway: msync
//! of an unmapped range fails with `ENOMEM`, it touches no memory).

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::Range;
use std::sync::OnceLock;

/// Two dirty ranges of one drain whose clean gap is at most this many bytes
/// are synced by one `msync` spanning both (see the module docs). Bounded
/// so that a span does not sweep up much of what other threads dirtied in
/// a large pool (harmless for crash consistency, but their write-back would
/// be paid by this call); 64 MiB covers the log, the root object and the
/// fresh objects of the benchmarked workloads in one call.
pub const JOIN_GAP: usize = 64 << 20;

/// `msync` activity of the calling thread since its start or the last
/// [`reset_msync_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsyncStats {
    /// Number of `msync` system calls made.
    pub calls: u64,
    /// Total bytes passed to them (whole pages, the clean gaps inside a
    /// joined span included).
    pub bytes: u64,
    /// Bytes of the dirty page ranges recorded by flushes and synced by
    /// those calls (whole pages; at most `bytes`).
    pub dirty_bytes: u64,
}

thread_local! {
    /// Per pool id, this thread's dirty page ranges (sorted, disjoint,
    /// non-adjacent, as addresses).
    static DIRTY: RefCell<Vec<(u64, Vec<Range<usize>>)>> = const { RefCell::new(Vec::new()) };
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
    static DIRTY_BYTES: Cell<u64> = const { Cell::new(0) };
}

#[cfg(test)]
thread_local! {
    /// Test hook: every range this thread passed to `msync`, in order.
    static SYNCED: RefCell<Vec<Range<usize>>> = const { RefCell::new(Vec::new()) };
}

/// The `msync` calls and bytes of the calling thread.
pub fn msync_stats() -> MsyncStats {
    MsyncStats {
        calls: CALLS.with(Cell::get),
        bytes: BYTES.with(Cell::get),
        dirty_bytes: DIRTY_BYTES.with(Cell::get),
    }
}

/// Sets the calling thread's [`msync_stats`] to zero.
pub fn reset_msync_stats() {
    CALLS.with(|c| c.set(0));
    BYTES.with(|c| c.set(0));
    DIRTY_BYTES.with(|c| c.set(0));
}

/// The system page size, asked once.
fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        // sysconf cannot fail for _SC_PAGESIZE on Linux; fall back to the
        // x86 page size rather than panic if it ever did.
        usize::try_from(p)
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// Inserts `r` into the sorted, disjoint, non-adjacent list `v`, merging it
/// with every range it overlaps or touches.
fn insert_merged(v: &mut Vec<Range<usize>>, mut r: Range<usize>) {
    // First range that ends at or after r.start (could merge with r).
    let lo = v.partition_point(|x| x.end < r.start);
    // First range that starts after r.end (cannot merge).
    let hi = lo + v[lo..].partition_point(|x| x.start <= r.end);
    if lo < hi {
        r.start = r.start.min(v[lo].start);
        r.end = r.end.max(v[hi - 1].end);
    }
    v.splice(lo..hi, std::iter::once(r));
}

/// Records `addr..addr+len`, rounded out to whole pages, as dirty for pool
/// `id` on this thread.
pub(crate) fn record(id: u64, addr: *mut u8, len: usize) {
    if len == 0 {
        return;
    }
    let ps = page_size();
    let a = addr as usize;
    let start = a & !(ps - 1);
    let end = a.saturating_add(len).saturating_add(ps - 1) & !(ps - 1);
    DIRTY.with(|d| {
        let mut d = d.borrow_mut();
        let i = match d.iter().position(|(pid, _)| *pid == id) {
            Some(i) => i,
            None => {
                // Drop the entries of pools with nothing pending (pools
                // closed on another thread leave one behind here).
                d.retain(|(_, v)| !v.is_empty());
                d.push((id, Vec::new()));
                d.len() - 1
            }
        };
        insert_merged(&mut d[i].1, start..end);
    });
}

/// Joins the sorted, disjoint ranges `v` into spans: consecutive ranges
/// whose gap is at most `gap` bytes end up in one span. Yields each span
/// with the bytes of the ranges it covers.
fn spans(v: &[Range<usize>], gap: usize) -> impl Iterator<Item = (Range<usize>, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let first = v.get(i)?;
        let mut span = first.clone();
        let mut dirty = first.len();
        i += 1;
        while let Some(r) = v.get(i).filter(|r| r.start - span.end <= gap) {
            span.end = r.end;
            dirty += r.len();
            i += 1;
        }
        Some((span, dirty))
    })
}

/// msyncs (`MS_SYNC`) every range this thread recorded for pool `id`, then
/// forgets them: one call per span of ranges at most [`JOIN_GAP`] apart.
/// Every span is attempted; the first error is returned.
pub(crate) fn sync(id: u64) -> io::Result<()> {
    let ranges = DIRTY.with(|d| {
        let mut d = d.borrow_mut();
        d.iter_mut()
            .find(|(pid, _)| *pid == id)
            .map(|(_, v)| std::mem::take(v))
    });
    let Some(mut ranges) = ranges else {
        return Ok(());
    };
    let mut first_err = None;
    for (span, dirty) in spans(&ranges, JOIN_GAP) {
        let len = span.end - span.start;
        // SAFETY: the span runs from the start of one range to the end of
        // another, both recorded from the live mapping of pool `id` (one
        // `mmap`) and rounded to pages inside it (module docs), so it lies
        // inside that mapping too; msync reads no memory through the
        // pointer, the kernel checks the range.
        let rc = unsafe { libc::msync(span.start as *mut libc::c_void, len, libc::MS_SYNC) };
        CALLS.with(|c| c.set(c.get() + 1));
        BYTES.with(|c| c.set(c.get() + len as u64));
        DIRTY_BYTES.with(|c| c.set(c.get() + dirty as u64));
        #[cfg(test)]
        SYNCED.with(|s| s.borrow_mut().push(span.clone()));
        if rc != 0 && first_err.is_none() {
            first_err = Some(io::Error::last_os_error());
        }
    }
    // Hand the emptied vector back to keep its allocation.
    ranges.clear();
    DIRTY.with(|d| {
        if let Some((_, v)) = d.borrow_mut().iter_mut().find(|(pid, _)| *pid == id)
            && v.is_empty()
        {
            *v = ranges;
        }
    });
    first_err.map_or(Ok(()), Err)
}

/// Forgets the ranges this thread recorded for pool `id` (the pool is being
/// unmapped).
pub(crate) fn forget(id: u64) {
    // try_with: during thread teardown the thread local may be gone, and
    // then there is nothing to forget.
    let _ = DIRTY.try_with(|d| d.borrow_mut().retain(|(pid, _)| *pid != id));
}

/// This thread's recorded ranges for `id` (tests).
#[cfg(test)]
fn recorded(id: u64) -> Vec<Range<usize>> {
    DIRTY.with(|d| {
        d.borrow()
            .iter()
            .find(|(pid, _)| *pid == id)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use memmap2::MmapMut;

    /// A shared mapping of a fresh file in /dev/shm (tmpfs; falls back to
    /// the default temp dir where /dev/shm does not exist).
    fn shared_map(pages: usize) -> (tempfile::NamedTempFile, MmapMut) {
        let f = tempfile::NamedTempFile::new_in("/dev/shm")
            .or_else(|_| tempfile::NamedTempFile::new())
            .unwrap();
        f.as_file().set_len((pages * page_size()) as u64).unwrap();
        // SAFETY: the file is private to this test and outlives the map.
        let m = unsafe { MmapMut::map_mut(f.as_file()) }.unwrap();
        (f, m)
    }

    // Ids far from the Persister's counter, one per test (tests run in
    // parallel threads, but the state is thread-local anyway).

    #[test]
    fn two_far_apart_bytes_give_two_single_page_msyncs() {
        // Farther apart than JOIN_GAP: one single-page msync each. The file
        // is sparse; only the two touched pages are ever allocated.
        let ps = page_size();
        let far = JOIN_GAP / ps + 2;
        let (_f, mut m) = shared_map(far + 1);
        let p = m.as_mut_ptr();
        reset_msync_stats();
        m[3] = 1;
        m[far * ps + 7] = 2;
        // SAFETY: both offsets lie inside the mapping of far + 1 pages.
        let (a, b) = unsafe { (p.add(3), p.add(far * ps + 7)) };
        record(1 << 40, a, 1);
        record(1 << 40, b, 1);
        assert_eq!(recorded(1 << 40).len(), 2);
        sync(1 << 40).unwrap();
        assert_eq!(
            msync_stats(),
            MsyncStats {
                calls: 2,
                bytes: 2 * ps as u64,
                dirty_bytes: 2 * ps as u64,
            }
        );
        assert!(recorded(1 << 40).is_empty(), "sync clears the ranges");
        sync(1 << 40).unwrap();
        assert_eq!(msync_stats().calls, 2, "nothing left to sync");
    }

    #[test]
    fn two_near_bytes_give_one_msync_spanning_the_gap() {
        let ps = page_size();
        let (_f, mut m) = shared_map(16);
        let p = m.as_mut_ptr();
        let id = (1 << 40) + 7;
        reset_msync_stats();
        SYNCED.with(|s| s.borrow_mut().clear());
        m[3] = 1;
        m[10 * ps + 7] = 2;
        // SAFETY: both offsets lie inside the 16-page mapping.
        let (a, b) = unsafe { (p.add(3), p.add(10 * ps + 7)) };
        record(id, b, 1);
        record(id, a, 1);
        assert_eq!(recorded(id).len(), 2, "recorded apart");
        sync(id).unwrap();
        assert_eq!(
            msync_stats(),
            MsyncStats {
                calls: 1,
                bytes: 11 * ps as u64,
                dirty_bytes: 2 * ps as u64,
            }
        );
        let base = p as usize;
        assert_eq!(SYNCED.with(|s| s.take()), vec![base..base + 11 * ps]);
    }

    /// splitmix64, for reproducible random dirty sets.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn spans_cover_every_dirty_page_and_join_only_small_gaps() {
        // Random sorted disjoint page ranges (as insert_merged keeps them),
        // random join gaps: every dirty byte lies in exactly one span; each
        // span starts and ends on a dirty range; spans are disjoint and in
        // order; two spans are apart by more than the gap (else they would
        // be one); the dirty count per span is the sum of its ranges.
        let mut st = 42;
        for _ in 0..2000 {
            let mut v = Vec::new();
            for _ in 0..next(&mut st) % 12 {
                let a = (next(&mut st) % 200) as usize;
                let l = 1 + (next(&mut st) % 4) as usize;
                insert_merged(&mut v, a * 4096..(a + l) * 4096);
            }
            let gap = (next(&mut st) % 20) as usize * 4096;
            let sp: Vec<_> = spans(&v, gap).collect();
            for r in &v {
                let n = sp
                    .iter()
                    .filter(|(s, _)| s.start <= r.start && r.end <= s.end);
                assert_eq!(n.count(), 1, "{r:?} in {sp:?} (gap {gap})");
            }
            for (s, dirty) in &sp {
                assert!(v.iter().any(|r| r.start == s.start), "{s:?} starts clean");
                assert!(v.iter().any(|r| r.end == s.end), "{s:?} ends clean");
                let inside: usize = v
                    .iter()
                    .filter(|r| s.start <= r.start && r.end <= s.end)
                    .map(|r| r.len())
                    .sum();
                assert_eq!(*dirty, inside);
                // Inside a span, no clean gap exceeds `gap`.
                let mut end = s.start;
                for r in v.iter().filter(|r| s.start <= r.start && r.end <= s.end) {
                    assert!(
                        r.start - end <= gap,
                        "gap {end:#x}..{:#x} in {s:?}",
                        r.start
                    );
                    end = r.end;
                }
            }
            for w in sp.windows(2) {
                assert!(w[1].0.start - w[0].0.end > gap, "{w:?} should be one span");
            }
        }
    }

    #[test]
    fn every_dirty_page_is_synced_by_its_drain() {
        // End to end through record/sync and the SYNCED hook: random byte
        // ranges over 64 pages, several drains; after each drain, every page
        // recorded since the previous drain lies inside an msync'ed range of
        // this drain, and there is one call (all gaps are under JOIN_GAP).
        let ps = page_size();
        let pages = 64;
        let (_f, mut m) = shared_map(pages);
        let p = m.as_mut_ptr();
        let base = p as usize;
        let id = (1 << 40) + 8;
        let mut st = 7;
        for _ in 0..200 {
            reset_msync_stats();
            SYNCED.with(|s| s.borrow_mut().clear());
            let mut want = Vec::new();
            for _ in 0..1 + next(&mut st) % 8 {
                let off = (next(&mut st) % (pages * ps) as u64) as usize;
                let len = 1 + (next(&mut st) % (3 * ps as u64)) as usize;
                let len = len.min(pages * ps - off);
                m[off..off + len].fill(1);
                // SAFETY: off..off+len lies inside the mapping.
                record(id, unsafe { p.add(off) }, len);
                want.extend(off / ps..(off + len).div_ceil(ps));
            }
            sync(id).unwrap();
            let got = SYNCED.with(|s| s.take());
            assert_eq!(got.len(), 1, "one msync per drain: {got:?}");
            for page in want {
                let a = base + page * ps;
                assert!(
                    got.iter().any(|r| r.start <= a && a + ps <= r.end),
                    "dirty page {page} not synced by {got:?}"
                );
            }
            assert_eq!(msync_stats().calls, 1);
            assert!(msync_stats().dirty_bytes <= msync_stats().bytes);
        }
    }

    #[test]
    fn three_adjacent_pages_give_one_msync() {
        let ps = page_size();
        let (_f, mut m) = shared_map(8);
        let p = m.as_mut_ptr();
        reset_msync_stats();
        // Out of order, each record inside one page, touching neighbours.
        for page in [3, 1, 2] {
            m[page * ps + 100] = page as u8;
            // SAFETY: inside the 8-page mapping.
            record((1 << 40) + 1, unsafe { p.add(page * ps + 100) }, 8);
        }
        assert_eq!(recorded((1 << 40) + 1).len(), 1);
        sync((1 << 40) + 1).unwrap();
        assert_eq!(
            msync_stats(),
            MsyncStats {
                calls: 1,
                bytes: 3 * ps as u64,
                dirty_bytes: 3 * ps as u64,
            }
        );
    }

    #[test]
    fn nothing_dirty_gives_no_msync() {
        reset_msync_stats();
        sync((1 << 40) + 2).unwrap();
        record((1 << 40) + 2, std::ptr::null_mut(), 0);
        sync((1 << 40) + 2).unwrap();
        assert_eq!(msync_stats(), MsyncStats::default());
    }

    #[test]
    fn other_pool_untouched_and_forget_drops() {
        let ps = page_size();
        let (_f, mut m) = shared_map(4);
        let p = m.as_mut_ptr();
        let (a, b) = ((1 << 40) + 3, (1 << 40) + 4);
        reset_msync_stats();
        // SAFETY: inside the 4-page mapping.
        record(a, unsafe { p.add(ps) }, 1);
        // SAFETY: as above.
        record(b, unsafe { p.add(2 * ps) }, ps + 1); // spans pages 2 and 3
        sync(a).unwrap();
        assert_eq!(msync_stats().calls, 1);
        assert_eq!(recorded(b), vec![p as usize + 2 * ps..p as usize + 4 * ps]);
        forget(b);
        assert!(recorded(b).is_empty());
        sync(b).unwrap();
        assert_eq!(msync_stats().calls, 1, "forgotten ranges are not synced");
    }

    #[test]
    fn ranges_are_per_thread() {
        let ps = page_size();
        let (_f, mut m) = shared_map(2);
        let addr = m.as_mut_ptr() as usize;
        let id = (1 << 40) + 5;
        record(id, addr as *mut u8, ps);
        std::thread::spawn(move || {
            reset_msync_stats();
            sync(id).unwrap();
            assert_eq!(msync_stats().calls, 0, "another thread's ranges");
        })
        .join()
        .unwrap();
        assert_eq!(recorded(id).len(), 1);
        forget(id);
    }

    #[test]
    fn msync_error_is_reported() {
        // The second page of the address space lies below mmap_min_addr, so
        // it is never mapped: msync fails with ENOMEM.
        let id = (1 << 40) + 6;
        record(id, page_size() as *mut u8, 1);
        let e = sync(id).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));
        assert!(recorded(id).is_empty());
    }

    #[test]
    fn insert_merged_keeps_sorted_disjoint() {
        let mut v = Vec::new();
        insert_merged(&mut v, 10..20);
        insert_merged(&mut v, 30..40);
        insert_merged(&mut v, 0..5);
        assert_eq!(v, vec![0..5, 10..20, 30..40]);
        insert_merged(&mut v, 20..30); // touches both neighbours
        assert_eq!(v, vec![0..5, 10..40]);
        insert_merged(&mut v, 3..12);
        assert_eq!(v, vec![0..40]);
        insert_merged(&mut v, 50..60);
        insert_merged(&mut v, 45..46);
        assert_eq!(v, vec![0..40, 45..46, 50..60]);
    }
}
