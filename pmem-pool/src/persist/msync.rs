//! The `msync` fallback: flushes record dirty page ranges per thread and
//! pool; drain msyncs the merged ranges.
//!
//! TODO(H2): real implementation with merging and counters.

/// Records `addr..addr+len` as dirty for pool `id` on this thread.
pub(crate) fn record(id: u64, addr: *mut u8, len: usize) {
    let _ = (id, addr, len);
    todo!("H2")
}

/// msyncs every range this thread recorded for pool `id`, then forgets them.
pub(crate) fn sync(id: u64) -> std::io::Result<()> {
    let _ = id;
    todo!("H2")
}

/// Forgets ranges recorded for pool `id` (the pool is being unmapped).
pub(crate) fn forget(id: u64) {
    let _ = id;
}
