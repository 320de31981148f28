//! A tour of a pmem-obj pool: create it, see which persistence mode was
//! chosen and why, make a greeting durable, close, reopen, read it back.
//!
//! ```text
//! cargo run --release --example tour [PATH]
//! ```
//!
//! Without PATH the pool lives in a temporary directory and is removed at
//! the end. With PATH it is created there, or reopened if it exists, so
//! running twice shows the run id growing. Try `PMEM_MODE=msync` or a path
//! on a DAX mount to see the mode change.

use pmem_obj::pool::{PoolOptions, RawPool, Result};
use std::path::PathBuf;

const LAYOUT: &str = "tour-v1";

fn main() {
    if let Err(e) = tour() {
        eprintln!("tour: {e}");
        std::process::exit(1);
    }
}

fn tour() -> Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| pmem_obj::pool::Error::io("temp dir", e))?;
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("tour.pool"));
    let opts = PoolOptions::new();

    // 1. Create (or reopen) the pool. The mode is picked once, here.
    let pool = if path.exists() {
        RawPool::open(&path, Some(LAYOUT), &opts)?
    } else {
        RawPool::create(&path, LAYOUT, 8 << 20, &opts)?
    };
    let mode = pool.mode_choice();
    println!("pool {} ({} bytes)", path.display(), pool.size());
    println!("mode {}: {}", mode.mode, mode.reason);

    // 2. Write a greeting at the start of the heap and make it durable:
    //    non-temporal stores or clwb + sfence on pmem, msync elsewhere.
    let off = pool.header().heap_offset as usize;
    println!("found {:?}", read_greeting(&pool, off));
    let greeting = format!("hello from run {}", pool.run_id());
    let mut record = [0u8; 64];
    record[..greeting.len()].copy_from_slice(greeting.as_bytes());
    // SAFETY: off..off+64 lies inside the heap of this pool, which we opened
    // read-write; nothing else references those bytes.
    unsafe { pool.persister().memcpy_persist(off, &record)? };
    println!("wrote {greeting:?}");
    pool.close()?;

    // 3. Reopen: the greeting survived, the run id moved on, and the pool
    //    knows it was closed cleanly.
    let pool = RawPool::open(&path, Some(LAYOUT), &opts)?;
    println!("read back {:?}", read_greeting(&pool, off));
    println!(
        "run id {}, previous shutdown {:?}",
        pool.run_id(),
        pool.previous_shutdown()
    );
    pool.close()
}

/// The greeting record at `off` (64 bytes, NUL-padded), as text.
fn read_greeting(pool: &RawPool, off: usize) -> String {
    let mut back = [0u8; 64];
    // SAFETY: off..off+64 is inside the heap (as written above); no writer
    // is active while we copy.
    unsafe { std::ptr::copy_nonoverlapping(pool.base().add(off), back.as_mut_ptr(), 64) };
    String::from_utf8_lossy(&back)
        .trim_end_matches('\0')
        .to_string()
}
