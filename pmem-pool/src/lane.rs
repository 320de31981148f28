//! Lanes: the per-transaction log slots of a pool, and their recovery.
//!
//! A lane is `lane_size` bytes (a multiple of 4 KiB, recorded in the header):
//!
//! | offset | size | what |
//! | --- | --- | --- |
//! | 0 | 8 | `generation`: entries of both logs are valid only for it |
//! | 8 | 56 | reserved, zero |
//! | 64 | lane_size − 64 − 1024 | undo log |
//! | lane_size − 1024 | 1024 | redo log |
//!
//! Recovery of one lane (run at open, before anyone sees the pool):
//! 1. If the redo log holds a commit record for the current generation, the
//!    transaction committed: apply the redo entries (idempotent), drain.
//! 2. Otherwise, if the undo log holds entries, the transaction did not
//!    commit: copy the snapshots back, newest first, drain.
//! 3. In both cases, bump the generation and persist it: both logs are now
//!    empty.

use crate::error::{Error, Result};
use crate::header::HeaderInfo;
use crate::layout::STATE_OFFSET;
use crate::persist::Persister;
use crate::ulog::{EntryKind, LogArea, ScanResult, scan};

/// Bytes of the lane header.
pub const LANE_HEADER: usize = 64;
/// Bytes of each lane's redo log.
pub const REDO_AREA: usize = 1024;

// The lane table in FORMAT.md: header 64 bytes, the redo log the last
// 1 KiB, and the smallest lane leaves the undo log 3 KiB.
static_assertions::const_assert_eq!(LANE_HEADER, 64);
static_assertions::const_assert_eq!(
    crate::layout::LANE_SIZE as usize - LANE_HEADER - REDO_AREA,
    3008
);

/// Where each lane and its logs live, from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneLayout {
    /// Pool offset of lane 0.
    pub offset: usize,
    /// Number of lanes.
    pub count: u32,
    /// Bytes per lane.
    pub size: usize,
    /// Pool size (bounds for log targets).
    pub pool_size: u64,
    /// Start of the heap (logs may target the state block and the heap).
    pub heap_offset: u64,
}

impl LaneLayout {
    /// The lane layout recorded in a validated header.
    pub fn from_header(h: &HeaderInfo) -> Self {
        LaneLayout {
            offset: h.lanes_offset as usize,
            count: h.lane_count,
            size: h.lane_size as usize,
            pool_size: h.size,
            heap_offset: h.heap_offset,
        }
    }

    /// Pool offset of lane `i`'s generation word.
    pub fn generation_off(&self, i: u32) -> usize {
        self.offset + i as usize * self.size
    }

    /// Lane `i`'s undo log.
    pub fn undo(&self, i: u32) -> LogArea {
        LogArea {
            off: self.generation_off(i) + LANE_HEADER,
            cap: self.size - LANE_HEADER - REDO_AREA,
        }
    }

    /// Lane `i`'s redo log.
    pub fn redo(&self, i: u32) -> LogArea {
        LogArea {
            off: self.generation_off(i) + self.size - REDO_AREA,
            cap: REDO_AREA,
        }
    }

    /// Whether a log entry may touch `off..off+len`: the state block or the
    /// heap, never the headers or the lanes.
    pub fn target_ok(&self, off: u64, len: u64) -> bool {
        let Some(end) = off.checked_add(len) else {
            return false;
        };
        let lanes_end = self.offset as u64 + u64::from(self.count) * self.size as u64;
        let in_state = off >= STATE_OFFSET && end <= STATE_OFFSET + 0x1000;
        let in_heap = off >= self.heap_offset.max(lanes_end) && end <= self.pool_size;
        in_state || in_heap
    }
}

/// What a lane holds, as `pmem check` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaneState {
    /// No pending log.
    Idle,
    /// A committed redo log not yet applied: recovery applies it.
    RedoPending {
        /// Redo entries.
        entries: usize,
    },
    /// An uncommitted transaction: recovery rolls its undo log back.
    UndoPending {
        /// Undo entries.
        entries: usize,
        /// Bytes of snapshots.
        bytes: u64,
    },
    /// A checksum-valid entry aims outside the heap and state block.
    Damaged,
}

/// Reads the generation of lane `i` from the pool's bytes.
fn generation_in(pool: &[u8], layout: &LaneLayout, i: u32) -> Option<u64> {
    let off = layout.generation_off(i);
    let b = pool.get(off..off + 8)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// The key lane `i`'s log entries are checksummed with at `generation`:
/// the generation with the lane number in its top 16 bits. Overflow blocks
/// move between lanes through the heap; salting the checksum with the lane
/// keeps another lane's stale entries in a reused block from ever reading
/// as valid (for generations below 2^48, which at a million transactions a
/// second on one lane takes nine years to reach).
pub fn log_key(lane: u32, generation: u64) -> u64 {
    generation ^ ((u64::from(lane) + 1) << 48)
}

fn scan_lane(pool: &[u8], layout: &LaneLayout, i: u32) -> (u64, ScanResult, ScanResult) {
    let generation = generation_in(pool, layout, i).unwrap_or(0);
    let ok = |o, l| layout.target_ok(o, l);
    let key = log_key(i, generation);
    let redo = scan(pool, layout.redo(i), key, ok);
    let undo = scan(pool, layout.undo(i), key, ok);
    (generation, redo, undo)
}

/// The state of lane `i` in `pool` (the whole pool's bytes).
pub fn inspect(pool: &[u8], layout: &LaneLayout, i: u32) -> LaneState {
    let (_, redo, undo) = scan_lane(pool, layout, i);
    if redo.committed {
        LaneState::RedoPending {
            entries: redo.entries.len(),
        }
    } else if redo.bad_target || undo.bad_target {
        LaneState::Damaged
    } else if !undo.entries.is_empty() || !redo.entries.is_empty() {
        // An uncommitted transaction. Redo entries without a commit record
        // are dropped with it: the generation bump makes them stale, so a
        // later transaction on this lane can never read them as its own.
        LaneState::UndoPending {
            entries: undo.entries.len(),
            bytes: undo.entries.iter().map(|e| u64::from(e.len)).sum(),
        }
    } else {
        LaneState::Idle
    }
}

/// What recovery did to one lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The lane.
    pub lane: u32,
    /// `RedoPending` (applied) or `UndoPending` (rolled back).
    pub was: LaneState,
}

/// Persists `generation + 1` into lane `i`: the O(1) invalidation of both
/// of its logs (and the commit point of an undo-only transaction). The
/// generation wraps from `u64::MAX` to 0 (only a corrupt pool gets there;
/// it must be recovered, not panic).
pub fn bump_generation(p: &Persister, layout: &LaneLayout, i: u32, generation: u64) -> Result<()> {
    let off = layout.generation_off(i);
    debug_assert!(off + 8 <= p.len() && off.is_multiple_of(8));
    // SAFETY: the caller holds lane `i` (or is the only user of the pool,
    // during recovery); the generation word is 8-aligned inside the
    // mapping, so this is one failure-atomic 8-byte store.
    unsafe {
        (p.base().add(off) as *mut u64).write_volatile(generation.wrapping_add(1).to_le());
    }
    p.persist(off, 8)
}

/// Recovers every lane of a pool opened read-write, before anyone else
/// uses it. Returns the lanes that needed work.
///
/// Every lane is inspected first: if one is [`LaneState::Damaged`], this
/// fails with [`Error::LaneDamaged`] before writing anything, so a refused
/// pool is left exactly as it was found.
///
/// # Safety
/// The caller has exclusive access to the whole mapping behind `p` (the
/// pool was just opened and no reference into it exists).
pub unsafe fn recover(p: &Persister, layout: &LaneLayout) -> Result<Vec<Recovered>> {
    // Pass 1: read only. Find the lanes with work and refuse a damaged pool.
    let mut pending = Vec::new();
    {
        // SAFETY: exclusive access (caller); nothing writes the mapping
        // while this slice lives (it ends with this block).
        let pool = unsafe { std::slice::from_raw_parts(p.base(), p.len()) };
        for i in 0..layout.count {
            match inspect(pool, layout, i) {
                LaneState::Idle => {}
                LaneState::Damaged => return Err(Error::LaneDamaged { lane: i }),
                state => pending.push((i, state)),
            }
        }
    }
    // Pass 2: for each lane, copy out what to write, then write it.
    let mut done = Vec::new();
    for (i, state) in pending {
        let (generation, ops) = {
            // SAFETY: exclusive access (caller); the slice ends with this
            // block, before anything below writes to the mapping.
            let pool = unsafe { std::slice::from_raw_parts(p.base(), p.len()) };
            let (generation, redo, undo) = scan_lane(pool, layout, i);
            let payload = |e: &crate::ulog::Entry| {
                pool[e.payload_off..e.payload_off + e.len as usize].to_vec()
            };
            let ops: Vec<(EntryKind, usize, Vec<u8>)> = match state {
                // A snapshot has no meaning in a redo log: not applied.
                LaneState::RedoPending { .. } => redo
                    .entries
                    .iter()
                    .filter(|e| e.kind != EntryKind::Snapshot)
                    .map(|e| (e.kind, e.target as usize, payload(e)))
                    .collect(),
                // Newest first: an older snapshot of the same bytes holds
                // older content and must land last.
                _ => undo
                    .entries
                    .iter()
                    .rev()
                    .map(|e| (EntryKind::Snapshot, e.target as usize, payload(e)))
                    .collect(),
            };
            (generation, ops)
        };
        for (kind, t, data) in &ops {
            let t = *t;
            let word = u64::from_le_bytes(
                data.get(..8)
                    .and_then(|w| w.try_into().ok())
                    .unwrap_or([0; 8]),
            );
            match kind {
                // SAFETY: exclusive access; `scan` checked the 8-byte size
                // and alignment and that the target lies in the state block
                // or the heap, inside the mapping.
                EntryKind::Set64 => unsafe { write_u64(p, t, word) },
                // SAFETY: as above.
                EntryKind::Or64 => unsafe { write_u64(p, t, read_u64(p, t) | word) },
                // SAFETY: as above.
                EntryKind::AndNot64 => unsafe { write_u64(p, t, read_u64(p, t) & !word) },
                EntryKind::Copy | EntryKind::Snapshot => {
                    // SAFETY: exclusive access; `scan` checked the target
                    // range; `data` is a private copy.
                    unsafe { p.memcpy_nodrain(t, data) };
                    continue;
                }
                EntryKind::Commit | EntryKind::Continue => continue,
            }
            p.flush(t, 8);
        }
        p.drain()?;
        bump_generation(p, layout, i, generation)?;
        done.push(Recovered {
            lane: i,
            was: state,
        });
    }
    Ok(done)
}

/// # Safety
/// `off..off+8` is 8-aligned inside the mapping and not aliased.
unsafe fn read_u64(p: &Persister, off: usize) -> u64 {
    // SAFETY: forwarded from the caller.
    u64::from_le(unsafe { (p.base().add(off) as *const u64).read_volatile() })
}

/// # Safety
/// As for [`read_u64`].
unsafe fn write_u64(p: &Persister, off: usize, v: u64) {
    // SAFETY: forwarded from the caller.
    unsafe { (p.base().add(off) as *mut u64).write_volatile(v.to_le()) }
}

#[cfg(all(test, feature = "sim"))]
#[path = "lane_tests.rs"]
mod tests;
