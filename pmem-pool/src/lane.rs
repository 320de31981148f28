//! Lanes: the per-transaction log slots of a pool, and their recovery.
//!
//! A lane is `lane_size` bytes (a multiple of 4 KiB, recorded in the header):
//!
//! | offset | size | what |
//! | --- | --- | --- |
//! | 0 | 8 | `generation`: entries of both logs are valid only for it |
//! | 8 | 8 | `verified`: !generation whose commit recovery checked (see [`recover`]) |
//! | 16 | 48 | reserved, zero |
//! | 64 | 8 | `generation` copy (pools with `INCOMPAT_GEN_COPY` only) |
//! | 64 or 72 | up to lane_size − 1024 | undo log |
//! | lane_size − 1024 | 512 | redo log of even generations |
//! | lane_size − 512 | 512 | redo log of odd generations |
//!
//! A transaction that logged anything ends with a commit record in its redo
//! log (with no redo entries for one that only changed snapshotted data).
//! The record carries a checksum of the committed data, so data and record
//! share one fence; its generation bump is stored and flushed but fenced
//! only by the next drain of any transaction (FORMAT.md, "Commit
//! protocol", says why that is safe).
//!
//! Recovery of one lane (run at open, before anyone sees the pool):
//! 1. If the redo log holds a commit record for the current generation and
//!    the data matches its checksum (or the lane's undo log was already
//!    being reused by the next transaction, which starts only after this
//!    one finished), the transaction committed: re-apply its redo entries
//!    (idempotent), in commit order across lanes.
//! 2. Otherwise, if the undo log holds entries, the transaction did not
//!    commit: copy the snapshots back, newest first.
//! 3. In both cases, bump the generation and persist it: both logs are now
//!    empty.

use crate::error::{Error, Result};
use crate::header::HeaderInfo;
use crate::layout::STATE_OFFSET;
use crate::persist::Persister;
use crate::ulog::{CommitInfo, Entry, EntryKind, LogArea, ScanResult, scan};

/// Bytes of the lane header.
pub const LANE_HEADER: usize = 64;
/// Bytes of the generation copy at the start of the undo area, in pools
/// with `header::INCOMPAT_GEN_COPY`.
pub const GEN_COPY: usize = 8;
/// Bytes of each lane's redo area: two halves of [`REDO_HALF`] bytes.
pub const REDO_AREA: usize = 1024;
/// Bytes of one redo log: generation `g` uses half `g % 2`, so the commit
/// record of a transaction survives while the next one of the lane writes
/// its log (its generation may not be durable yet).
pub const REDO_HALF: usize = REDO_AREA / 2;
/// Offset in the lane header of `verified`: the bitwise NOT of the
/// generation whose commit record recovery found backed by its data (see
/// [`recover`]; NOT, so that a never-written zero matches no real
/// generation).
pub const VERIFIED_FIELD: usize = 8;

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
    /// Whether each lane keeps a copy of its generation in the first word
    /// of its undo area (`header::INCOMPAT_GEN_COPY`): the lane's
    /// generation is then the larger of the two words.
    pub gen_copy: bool,
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
            gen_copy: h.incompat & crate::header::INCOMPAT_GEN_COPY != 0,
        }
    }

    /// Pool offset of lane `i`'s generation word.
    pub fn generation_off(&self, i: u32) -> usize {
        self.offset + i as usize * self.size
    }

    /// Pool offset of lane `i`'s copy of its generation, the first word of
    /// its undo area, if the pool keeps one ([`gen_copy`](Self::gen_copy)).
    pub fn generation_copy_off(&self, i: u32) -> Option<usize> {
        self.gen_copy.then(|| self.generation_off(i) + LANE_HEADER)
    }

    /// Lane `i`'s undo log (after the generation copy, if any).
    pub fn undo(&self, i: u32) -> LogArea {
        let copy = if self.gen_copy { GEN_COPY } else { 0 };
        LogArea {
            off: self.generation_off(i) + LANE_HEADER + copy,
            cap: self.size - LANE_HEADER - REDO_AREA - copy,
        }
    }

    /// Lane `i`'s redo log at `generation`.
    pub fn redo(&self, i: u32, generation: u64) -> LogArea {
        LogArea {
            off: self.generation_off(i) + self.size - REDO_AREA
                + (generation % 2) as usize * REDO_HALF,
            cap: REDO_HALF,
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
    /// A committed transaction whose log is still valid: recovery
    /// re-applies its redo entries (idempotent; none for a transaction
    /// that only changed snapshotted data) and keeps its data.
    RedoPending {
        /// Redo entries.
        entries: usize,
    },
    /// An uncommitted transaction, or one whose commit record reached the
    /// media without all of its data: recovery rolls its undo log back.
    UndoPending {
        /// Undo entries.
        entries: usize,
        /// Bytes of snapshots.
        bytes: u64,
    },
    /// A checksum-valid entry aims outside the heap and state block.
    Damaged,
}

/// Reads the u64 at `off` of the pool's bytes.
fn u64_in(pool: &[u8], off: usize) -> Option<u64> {
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

/// CRC-32 of the committed data a commit record's `data_crc` covers: the
/// current bytes of `undo`'s ranges, then of the `Fresh` entries' ranges
/// in `redo`, each in log order. `None` if a range lies outside `pool`.
pub fn data_crc(pool: &[u8], undo: &[Entry], redo: &[Entry]) -> Option<u32> {
    let mut h = crate::crc::Crc32c::new();
    for e in undo {
        h.update(pool.get(e.target as usize..(e.target as usize).checked_add(e.len as usize)?)?);
    }
    for e in redo.iter().filter(|e| e.kind == EntryKind::Fresh) {
        let len = u64_in(pool, e.payload_off)? as usize;
        h.update(pool.get(e.target as usize..(e.target as usize).checked_add(len)?)?);
    }
    Some(h.finalize())
}

/// One lane, read and judged.
struct Analysis {
    generation: u64,
    state: LaneState,
    /// Commit order (committed lanes).
    seq: u64,
    /// Whether the verdict rests on a data checksum recovery must record
    /// (in the lane's `verified` word) before it writes anything.
    needs_verdict: bool,
    redo: ScanResult,
    /// Undo entries to roll back (a prefix of the scanned ones).
    undo: Vec<Entry>,
}

/// Lane `i`'s generation in `pool` (the whole pool's bytes): its
/// generation word, or the larger of the word and its copy where the pool
/// keeps one. Both only ever hold values the lane reached, and each is
/// written with the current generation after the bump to it: the word at
/// the commit that bumps it (flushed by later drains), the copy by the
/// next transaction's first snapshot (streamed with that snapshot). The
/// larger one is the latest bump either made durable.
pub fn generation_in(pool: &[u8], layout: &LaneLayout, i: u32) -> u64 {
    generation_from(layout, i, |off| u64_in(pool, off).unwrap_or(0))
}

/// The rule of [`generation_in`], with the words read by `read` (pool
/// offset to value).
fn generation_from(layout: &LaneLayout, i: u32, read: impl Fn(usize) -> u64) -> u64 {
    let word = read(layout.generation_off(i));
    layout
        .generation_copy_off(i)
        .map_or(word, |copy| word.max(read(copy)))
}

/// [`generation_in`] of the live mapping behind `p`, read word by word.
///
/// # Safety
/// `layout` is the layout of the pool `p` maps, and no one writes lane
/// `i`'s words meanwhile (the caller holds the lane, or the pool is being
/// opened).
pub unsafe fn generation_at(p: &Persister, layout: &LaneLayout, i: u32) -> u64 {
    generation_from(layout, i, |off| {
        // SAFETY: `off` is lane `i`'s generation word or its copy, both
        // 8-aligned inside the lane area of the mapping (`layout` is the
        // pool's); no one writes them (caller).
        unsafe { read_u64(p, off) }
    })
}

fn analyze(pool: &[u8], layout: &LaneLayout, i: u32) -> Analysis {
    let base = layout.generation_off(i);
    let generation = generation_in(pool, layout, i);
    let verified = u64_in(pool, base + VERIFIED_FIELD).unwrap_or(0);
    let ok = |o, l| layout.target_ok(o, l);
    let key = log_key(i, generation);
    let redo = scan(pool, layout.redo(i, generation), key, ok);
    let undo = scan(pool, layout.undo(i), key, ok);
    let mut a = Analysis {
        generation,
        state: LaneState::Idle,
        seq: 0,
        needs_verdict: false,
        redo,
        undo: Vec::new(),
    };
    if a.redo.bad_target || undo.bad_target {
        a.state = LaneState::Damaged;
        return a;
    }
    let rollback = |entries: &[Entry]| LaneState::UndoPending {
        entries: entries.len(),
        bytes: entries.iter().map(|e| u64::from(e.len)).sum(),
    };
    if a.redo.committed {
        let info = a.redo.commit.unwrap_or_default();
        a.seq = info.seq;
        let n = info.n_undo as usize;
        let checked = info.flags & CommitInfo::DATA_CRC != 0;
        // Fewer undo entries than the record counts: the next transaction
        // of this lane is overwriting the undo log, so this one finished.
        // A recorded verdict: an earlier recovery checked the data.
        if checked && undo.entries.len() >= n && verified != !generation {
            let undo_n = &undo.entries[..n];
            if data_crc(pool, undo_n, &a.redo.entries) != Some(info.data_crc) {
                // The record reached the media, not all of the data.
                a.state = rollback(undo_n);
                a.undo = undo_n.to_vec();
                return a;
            }
            a.needs_verdict = true;
        }
        a.state = LaneState::RedoPending {
            entries: a
                .redo
                .entries
                .iter()
                .filter(|e| e.kind != EntryKind::Fresh)
                .count(),
        };
    } else if !undo.entries.is_empty() || !a.redo.entries.is_empty() {
        // An uncommitted transaction. Redo entries without a commit record
        // are dropped with it: the generation bump makes them stale, so a
        // later transaction on this lane can never read them as its own.
        a.state = rollback(&undo.entries);
        a.undo = undo.entries;
    }
    a
}

/// The state of lane `i` in `pool` (the whole pool's bytes).
pub fn inspect(pool: &[u8], layout: &LaneLayout, i: u32) -> LaneState {
    analyze(pool, layout, i).state
}

/// What recovery did to one lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The lane.
    pub lane: u32,
    /// `RedoPending` (applied) or `UndoPending` (rolled back).
    pub was: LaneState,
}

/// Stores `generation + 1` into lane `i`'s generation word, without
/// flushing it: the O(1) invalidation of both of its logs, durable once a
/// later flush and drain cover the word.
pub fn write_generation(p: &Persister, layout: &LaneLayout, i: u32, generation: u64) {
    let off = layout.generation_off(i);
    debug_assert!(off + 8 <= p.len() && off.is_multiple_of(8));
    // SAFETY: the caller holds lane `i` (or is the only user of the pool,
    // during recovery); the generation word is 8-aligned inside the
    // mapping, so this is one failure-atomic 8-byte store.
    unsafe {
        (p.base().add(off) as *mut u64).write_volatile(generation.wrapping_add(1).to_le());
    }
}

/// Stores `generation + 1` into lane `i`'s generation word and flushes it,
/// without a fence: the O(1) invalidation of both of its logs, durable at
/// the next drain. The generation wraps from `u64::MAX` to 0 (only a
/// corrupt pool gets there; it must be recovered, not panic).
pub fn store_generation(p: &Persister, layout: &LaneLayout, i: u32, generation: u64) {
    write_generation(p, layout, i, generation);
    p.flush(layout.generation_off(i), 8);
}

/// Recovers every lane of a pool opened read-write, before anyone else
/// uses it. Returns the lanes that needed work.
///
/// Every lane is inspected first: if one is [`LaneState::Damaged`], this
/// fails with [`Error::LaneDamaged`] before writing anything, so a refused
/// pool is left exactly as it was found. Then, with one drain after each
/// step: the verdicts that rest on a data checksum are recorded (replaying
/// one lane's redo may change bytes another lane's checksum covers, and a
/// crash during recovery must not change a verdict); uncommitted lanes are
/// rolled back and committed redo logs re-applied in commit order; the
/// generations are bumped.
///
/// # Safety
/// The caller has exclusive access to the whole mapping behind `p` (the
/// pool was just opened and no reference into it exists).
pub unsafe fn recover(p: &Persister, layout: &LaneLayout) -> Result<Vec<Recovered>> {
    // Pass 1: read only. Judge every lane and refuse a damaged pool; copy
    // out what to write.
    type Op = (EntryKind, usize, Vec<u8>);
    let mut work: Vec<(u32, Analysis, Vec<Op>)> = Vec::new();
    {
        // SAFETY: exclusive access (caller); nothing writes the mapping
        // while this slice lives (it ends with this block).
        let pool = unsafe { std::slice::from_raw_parts(p.base(), p.len()) };
        for i in 0..layout.count {
            let a = analyze(pool, layout, i);
            let payload = |e: &Entry| pool[e.payload_off..e.payload_off + e.len as usize].to_vec();
            let ops: Vec<Op> = match a.state {
                LaneState::Idle => continue,
                LaneState::Damaged => return Err(Error::LaneDamaged { lane: i }),
                // A snapshot has no meaning in a redo log: not applied.
                LaneState::RedoPending { .. } => a
                    .redo
                    .entries
                    .iter()
                    .filter(|e| !matches!(e.kind, EntryKind::Snapshot | EntryKind::Fresh))
                    .map(|e| (e.kind, e.target as usize, payload(e)))
                    .collect(),
                // Newest first: an older snapshot of the same bytes holds
                // older content and must land last.
                LaneState::UndoPending { .. } => a
                    .undo
                    .iter()
                    .rev()
                    .map(|e| (EntryKind::Snapshot, e.target as usize, payload(e)))
                    .collect(),
            };
            work.push((i, a, ops));
        }
    }
    if work.is_empty() {
        return Ok(Vec::new());
    }
    // Pass 2: record checksum verdicts.
    let mut recorded = false;
    for (i, a, _) in &work {
        if a.needs_verdict {
            let off = layout.generation_off(*i) + VERIFIED_FIELD;
            // SAFETY: exclusive access; the lane header's `verified` word
            // is 8-aligned inside the mapping.
            unsafe { write_u64(p, off, !a.generation) };
            p.flush(off, 8);
            recorded = true;
        }
    }
    if recorded {
        p.drain()?;
    }
    // Pass 3: roll back, then re-apply committed redo logs oldest first
    // (lanes with live logs never touch the same data, except heap words
    // that later commits change again).
    work.sort_by_key(|(i, a, _)| (matches!(a.state, LaneState::RedoPending { .. }), a.seq, *i));
    for (_, _, ops) in &work {
        for (kind, t, data) in ops {
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
                EntryKind::Commit | EntryKind::Continue | EntryKind::Fresh => continue,
            }
            p.flush(t, 8);
        }
    }
    p.drain()?;
    // Pass 4: every log recovered is stale.
    work.sort_by_key(|(i, _, _)| *i);
    for (i, a, _) in &work {
        store_generation(p, layout, *i, a.generation);
    }
    p.drain()?;
    Ok(work
        .into_iter()
        .map(|(lane, a, _)| Recovered { lane, was: a.state })
        .collect())
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
