//! Pool open time and the volatile memory an open pool uses (issue 5):
//! a 1 GiB pool holding 1,000,000 objects of 64 bytes, created through the
//! public API, closed, then opened several times (`Pool::open`: header
//! checks, lane recovery, heap rebuild from the chunk/run headers and
//! bitmaps).
//!
//! Run: `cargo run --release -p pmem-tx --example open_time [-- OBJECTS
//! [OPENS]]` (defaults 1,000,000 and 7). The pool goes to `$PMEM_BENCH_DIR`
//! (default /dev/shm) and runs in `Mode::Pmem` forced, so that the fill is
//! quick and the open measures the scan, not msync.
//!
//! Prints plain `key=value` lines: the median and minimum open time, the
//! bytes the open allocated on the Rust heap and still holds (counted by a
//! global allocator wrapping `System`: this is the volatile state of the
//! open pool), the peak during the open, and `VmRSS`/`RssAnon`/`RssShmem`
//! from /proc/self/status before and after (RssShmem grows with the pool
//! pages the open reads, which are the page cache of the file, not
//! memory the library allocates).

use pmem_tx::{Mode, Pool, PoolOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Counts the bytes live on the heap and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, and only adds bookkeeping on plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
            let now = LIVE.fetch_add(new, Ordering::Relaxed) + new;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `VmRSS`, `RssAnon`, `RssShmem` of this process in KiB (0 if absent).
fn rss() -> [u64; 3] {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    [get("VmRSS:"), get("RssAnon:"), get("RssShmem:")]
}

const LAYOUT: &str = "open-time";
const BATCH: u64 = 100;

type Obj = [u64; 8];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let objects = args.first().copied().unwrap_or(1_000_000);
    let opens = args.get(1).copied().unwrap_or(7).max(1);
    let dir = std::env::var("PMEM_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let tmp = tempfile::tempdir_in(&dir)?;
    let path = tmp.path().join("open_time.pool");
    let opts = PoolOptions::new().mode(Mode::Pmem);

    let t = Instant::now();
    let pool = Pool::create_with(&path, LAYOUT, 1 << 30, &opts)?;
    let mut made = 0;
    while made < objects {
        let n = BATCH.min(objects - made);
        pool.transaction(|tx| -> pmem_tx::Result<()> {
            for i in 0..n {
                let p = tx.zalloc::<Obj>(1)?;
                tx.write(p, [made + i; 8])?;
            }
            Ok(())
        })?;
        made += n;
    }
    let got = pool.objects(Some(1))?.len() as u64;
    assert_eq!(got, objects, "objects after the fill");
    pool.close()?;
    println!(
        "fill objects={objects} size=64 pool_GiB=1 secs={:.2}",
        t.elapsed().as_secs_f64()
    );

    let mut times = Vec::with_capacity(opens as usize);
    let (mut held, mut peak) = (0, 0);
    let (mut before, mut after) = ([0; 3], [0; 3]);
    for k in 0..opens {
        let live0 = LIVE.load(Ordering::Relaxed);
        PEAK.store(live0, Ordering::Relaxed);
        let r0 = rss();
        let t = Instant::now();
        let pool = Pool::open_with(&path, Some(LAYOUT), &opts)?;
        times.push(t.elapsed().as_secs_f64());
        if k == 0 {
            // The first open after the fill: process RSS as a user sees it.
            (before, after) = (r0, rss());
            held = LIVE.load(Ordering::Relaxed) - live0;
            peak = PEAK.load(Ordering::Relaxed) - live0;
        }
        pool.close()?;
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    println!(
        "open objects={objects} opens={opens} median_ms={:.2} min_ms={:.2} max_ms={:.2}",
        med * 1e3,
        times[0] * 1e3,
        times[times.len() - 1] * 1e3
    );
    println!(
        "volatile heap_bytes_held={held} heap_KiB_held={:.1} heap_bytes_peak_during_open={peak}",
        held as f64 / 1024.0
    );
    println!(
        "rss_KiB before: VmRSS={} RssAnon={} RssShmem={} after_open: VmRSS={} RssAnon={} RssShmem={}",
        before[0], before[1], before[2], after[0], after[1], after[2]
    );
    Ok(())
}
