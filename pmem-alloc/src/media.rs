//! Access to the heap's bytes: the live mapping (through the pool's
//! [`Persister`]) or a byte slice (offline check).
//!
//! # Safety
//! Live access goes through the persister's base address and length, which
//! describe a live mapping for the persister's whole life (pmem-pool's
//! contract). Every offset is checked against that length before a pointer
//! is formed. Metadata words (chunk headers, bitmap words) are 8-aligned
//! (the mapping is page-aligned and every word offset is a multiple of 8)
//! and are only ever accessed as `AtomicU64`, by this crate and by the
//! transaction layer applying redo ops, so concurrent readers and
//! read-modify-writers of the same word never race non-atomically. Other
//! bytes (run headers, allocation headers) are copied out with raw-pointer
//! reads and written only while no other thread can reach them (a chunk
//! being turned into a run is owned by the creating thread; a reserved
//! block by its reservation).

use crate::RedoOp;
use crate::error::Result;
use pmem_pool::Persister;
use std::sync::atomic::{AtomicU64, Ordering};

/// Read access to the pool's bytes at pool offsets.
pub trait Media {
    /// Length of the pool in bytes.
    fn len(&self) -> u64;
    /// The aligned u64 at `off`; 0 when `off + 8` is past the end (callers
    /// validate geometry first, so that never happens for a valid region).
    fn read_u64(&self, off: u64) -> u64;
    /// Copies `dst.len()` bytes from `off`; zeros when out of range.
    fn read(&self, off: u64, dst: &mut [u8]);
}

fn in_range(off: u64, n: usize, len: u64) -> bool {
    off.checked_add(n as u64).is_some_and(|e| e <= len)
}

impl Media for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_u64(&self, off: u64) -> u64 {
        let mut w = [0u8; 8];
        self.read(off, &mut w);
        u64::from_le_bytes(w)
    }

    fn read(&self, off: u64, dst: &mut [u8]) {
        if in_range(off, dst.len(), Media::len(self)) {
            let o = off as usize;
            dst.copy_from_slice(&self[o..o + dst.len()]);
        } else {
            dst.fill(0);
        }
    }
}

/// The live mapping behind a persister.
pub struct Live<'a> {
    p: &'a Persister,
}

impl<'a> Live<'a> {
    /// Live access through `p`.
    pub fn new(p: &'a Persister) -> Self {
        Live { p }
    }

    /// The word at `off` as an atomic, if in range and 8-aligned.
    fn atomic(&self, off: u64) -> Option<&AtomicU64> {
        if !off.is_multiple_of(8) || !in_range(off, 8, self.p.len() as u64) {
            debug_assert!(false, "word {off:#x} outside the pool or unaligned");
            return None;
        }
        // SAFETY: off..off+8 lies inside the live mapping (checked above),
        // is 8-aligned (the mapping base is page-aligned), and these words
        // are only ever accessed atomically (module docs). The reference
        // lives no longer than `self`, which borrows the persister.
        Some(unsafe { AtomicU64::from_ptr(self.p.base().add(off as usize).cast::<u64>()) })
    }

    /// Stores `val` into the metadata word at `off` (one failure-atomic
    /// 8-byte store) and flushes it; durable at the next drain.
    pub fn store_u64(&self, off: u64, val: u64) {
        if let Some(a) = self.atomic(off) {
            a.store(val, Ordering::Release);
            self.p.flush_word(off as usize);
        }
    }

    /// Copies `src` to `off` and flushes it (durable at the next drain).
    ///
    /// # Safety
    /// No other thread may access `off..off+src.len()` during the call, and
    /// no reference to those bytes may be alive.
    pub unsafe fn write(&self, off: u64, src: &[u8]) {
        if in_range(off, src.len(), self.p.len() as u64) {
            // SAFETY: in range; exclusivity is the caller's contract.
            unsafe { self.p.memcpy_nodrain(off as usize, src) };
        }
    }

    /// Copies `src` to `off` with plain stores and does not flush it: the
    /// caller flushes the range later, with what else it writes into the
    /// same lines.
    ///
    /// # Safety
    /// As for [`write`](Self::write).
    pub unsafe fn write_unflushed(&self, off: u64, src: &[u8]) {
        if in_range(off, src.len(), self.p.len() as u64) {
            // SAFETY: in range, inside the live mapping; exclusivity is the
            // caller's contract, and `src` is a distinct borrow.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    self.p.base().add(off as usize),
                    src.len(),
                )
            };
        }
    }

    /// Zeroes `off..off+len` and flushes it (durable at the next drain).
    ///
    /// # Safety
    /// As for [`write`](Self::write).
    pub unsafe fn zero(&self, off: u64, len: u64) {
        if in_range(off, len as usize, self.p.len() as u64) {
            // SAFETY: in range; exclusivity is the caller's contract.
            unsafe { self.p.memset_nodrain(off as usize, 0, len as usize) };
        }
    }

    /// Applies redo ops to the words they name (atomic read-modify-write,
    /// as the transaction layer does), flushes them and drains once.
    pub fn apply(&self, ops: &[RedoOp]) -> Result<()> {
        self.apply_nodrain(ops);
        self.p.drain()?;
        Ok(())
    }

    /// [`apply`](Self::apply) without the drain: every read-modify-write
    /// first, then the flushes (a locked instruction waits for the flushes
    /// in flight before it, so interleaving them would serialise each op
    /// behind the previous op's write-back).
    pub fn apply_nodrain(&self, ops: &[RedoOp]) {
        self.apply_unflushed(ops);
        // Consecutive words of one line (a pointer's two halves) are
        // flushed once.
        let mut last = u64::MAX;
        for op in ops {
            let line = op.off() / 64;
            if line != last && in_range(op.off(), 8, self.p.len() as u64) {
                self.p.flush_word(op.off() as usize);
                last = line;
            }
        }
    }

    /// [`apply_nodrain`](Self::apply_nodrain) without the flushes: the
    /// caller flushes the lines later (a parked lane's).
    pub fn apply_unflushed(&self, ops: &[RedoOp]) {
        for op in ops {
            let Some(a) = self.atomic(op.off()) else {
                continue;
            };
            match *op {
                RedoOp::Set64 { val, .. } => a.store(val, Ordering::Release),
                RedoOp::Or64 { mask, .. } => {
                    a.fetch_or(mask, Ordering::AcqRel);
                }
                RedoOp::AndNot64 { mask, .. } => {
                    a.fetch_and(!mask, Ordering::AcqRel);
                }
            }
        }
    }
}

impl Media for Live<'_> {
    fn len(&self) -> u64 {
        self.p.len() as u64
    }

    fn read_u64(&self, off: u64) -> u64 {
        self.atomic(off).map_or(0, |a| a.load(Ordering::Acquire))
    }

    fn read(&self, off: u64, dst: &mut [u8]) {
        if in_range(off, dst.len(), self.p.len() as u64) {
            // SAFETY: off..off+len lies inside the live mapping; raw-pointer
            // copy into a local buffer, no reference into the mapping is
            // formed; the bytes read are headers no thread writes
            // concurrently (module docs).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.p.base().add(off as usize),
                    dst.as_mut_ptr(),
                    dst.len(),
                )
            };
        } else {
            dst.fill(0);
        }
    }
}

/// Applies `ops` as the transaction layer does after a commit record is
/// durable: atomic read-modify-write of each word, flush, one drain. For
/// tests, tools and single-threaded callers.
///
/// # Safety
/// `p` is the persister of the pool the ops were made for, and the ops come
/// from this crate's `publish_ops`/`free_ops` (so they name heap metadata
/// words, which are only ever accessed atomically).
pub unsafe fn apply_ops(p: &Persister, ops: &[RedoOp]) -> Result<()> {
    Live::new(p).apply(ops)
}

/// [`apply_ops`] without the drain, for a caller that drains itself (the
/// transaction layer, whose drains also persist other lanes' state).
///
/// # Safety
/// `p` is the persister of the pool the ops were made for, and every op
/// names a word no other thread accesses non-atomically meanwhile: a heap
/// metadata word from `publish_ops`/`free_ops`, or a word the caller holds
/// exclusively.
pub unsafe fn apply_ops_nodrain(p: &Persister, ops: &[RedoOp]) {
    Live::new(p).apply_nodrain(ops)
}

/// [`apply_ops_nodrain`] without the flushes: the caller flushes the
/// lines the ops touch before its next drain (a parked lane's, in the
/// transaction layer).
///
/// # Safety
/// As for [`apply_ops_nodrain`].
pub unsafe fn apply_ops_unflushed(p: &Persister, ops: &[RedoOp]) {
    Live::new(p).apply_unflushed(ops)
}
