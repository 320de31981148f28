//! The on-media log ("ulog"), used as the undo log and as the redo log of a
//! lane. `FORMAT.md` ("Lanes and logs") has the byte layout; in short:
//!
//! - A log is a fixed area of a lane filled from its start with entries.
//!   An entry is a 16-byte header `{offset_kind: u64, len: u32, crc: u32}`
//!   and `len` payload bytes padded to 8.
//! - `crc` is CRC-32C ([`crate::crc`]) over the lane's
//!   generation (8 bytes LE), `offset_kind`, `len` and the payload. An entry
//!   is valid only for the generation it was written in, so bumping the
//!   lane generation (one 8-byte store) invalidates every entry of both logs
//!   in O(1): nothing is ever zeroed.
//! - A scan reads entries from the start and stops at the first one that is
//!   not valid (torn, stale, or never written). A torn append therefore
//!   simply ends the log.
//!
//! Entries are written with [`Persister::memcpy_nodrain`] (non-temporal for
//! long payloads), so an append costs no fence; the caller drains once per
//! batch.

use crate::error::{Error, Result};
use crate::persist::Persister;
use std::mem::MaybeUninit;

/// Bytes of an entry header.
pub const ENTRY_HEADER: usize = 16;
static_assertions::const_assert_eq!(ENTRY_HEADER, 16);
static_assertions::const_assert!(SMALL_ENTRY + ENTRY_HEADER <= 256);

/// Bytes every area keeps free at its end for a `Continue` entry.
pub const CONTINUE_RESERVE: usize = ENTRY_HEADER + 8;
/// Most areas one log may chain through (a bound for damaged pools).
const MAX_HOPS: usize = 1 << 20;
/// Smallest area a `Continue` entry may point to.
pub const MIN_AREA: usize = 256;

/// Payloads up to this size are copied together with their header.
const SMALL_ENTRY: usize = 240;
/// Bits of `offset_kind` holding the target offset.
pub const OFFSET_BITS: u32 = 56;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

/// What an entry means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// Undo: the payload is the old content of `target..target+len`.
    Snapshot = 1,
    /// Redo: store the 8-byte payload at `target` (8-aligned).
    Set64 = 2,
    /// Redo: OR the 8-byte payload into the u64 at `target`.
    Or64 = 3,
    /// Redo: clear the payload's bits in the u64 at `target`.
    AndNot64 = 4,
    /// Redo: copy the payload to `target`.
    Copy = 5,
    /// The log continues in another area (an overflow block in the heap):
    /// `target` is its pool offset, the 8-byte payload its capacity.
    Continue = 6,
    /// Not applied: `target..target + len` (the 8-byte payload) is a fresh
    /// object the transaction publishes; its bytes are covered by the
    /// commit record's data checksum.
    Fresh = 7,
    /// Commit record: `target` holds the number of entries before it; the
    /// payload is empty (the data was made durable before it) or a
    /// [`CommitInfo`].
    Commit = 0x7f,
}

/// Bytes of an encoded [`CommitInfo`].
pub const COMMIT_INFO: usize = 24;
static_assertions::const_assert_eq!(COMMIT_INFO, 24);

/// What a commit record with a payload says (`FORMAT.md`, "Commit
/// record").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// Commit order among the pool's lanes: recovery re-applies committed
    /// redo logs in increasing `seq`.
    pub seq: u64,
    /// Undo entries the transaction wrote (same generation, in the undo
    /// log of the same lane).
    pub n_undo: u32,
    /// CRC-32 of the committed data: the current bytes of every undo
    /// entry's range, in log order, then of every `Fresh` range, in log
    /// order. Valid only with [`CommitInfo::DATA_CRC`].
    pub data_crc: u32,
    /// Flag bits.
    pub flags: u32,
}

impl CommitInfo {
    /// `data_crc` is set: the data was flushed together with the record
    /// (one fence), and the record counts only if the data matches it.
    pub const DATA_CRC: u32 = 1;

    /// The 24-byte payload.
    pub fn encode(&self) -> [u8; COMMIT_INFO] {
        let mut b = [0u8; COMMIT_INFO];
        b[..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&self.n_undo.to_le_bytes());
        b[12..16].copy_from_slice(&self.data_crc.to_le_bytes());
        b[16..20].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// Decodes a payload (`None` unless it is exactly [`COMMIT_INFO`] bytes
    /// with the reserved bytes zero and no unknown flag).
    pub fn decode(b: &[u8]) -> Option<CommitInfo> {
        if b.len() != COMMIT_INFO || b[20..24] != [0; 4] {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[..8]);
        let info = CommitInfo {
            seq: u64::from_le_bytes(seq),
            n_undo: u32_at(8),
            data_crc: u32_at(12),
            flags: u32_at(16),
        };
        (info.flags & !Self::DATA_CRC == 0).then_some(info)
    }
}

impl EntryKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => EntryKind::Snapshot,
            2 => EntryKind::Set64,
            3 => EntryKind::Or64,
            4 => EntryKind::AndNot64,
            5 => EntryKind::Copy,
            6 => EntryKind::Continue,
            7 => EntryKind::Fresh,
            0x7f => EntryKind::Commit,
            _ => return None,
        })
    }
}

/// A log area inside the pool: `cap` bytes at pool offset `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogArea {
    /// Pool offset of the first entry.
    pub off: usize,
    /// Capacity in bytes.
    pub cap: usize,
}

/// A valid entry found by [`scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What it means.
    pub kind: EntryKind,
    /// Pool offset it applies to (entry count for `Commit`).
    pub target: u64,
    /// Payload length.
    pub len: u32,
    /// Pool offset of the payload.
    pub payload_off: usize,
}

/// Space an entry with `len` payload bytes takes in a log.
#[inline]
pub const fn entry_size(len: usize) -> usize {
    ENTRY_HEADER + len.next_multiple_of(8)
}

#[inline]
fn checksum(generation: u64, offset_kind: u64, len: u32, payload: &[u8]) -> u32 {
    crate::crc::crc32c_words_then(&[generation, offset_kind], len, payload)
}

/// Appends entries to one log for one generation. Volatile: it only
/// remembers where the next entry goes.
#[derive(Clone, Debug)]
pub struct LogWriter {
    area: LogArea,
    generation: u64,
    pos: usize,
    count: u64,
    /// Batched mode: pool range written with plain stores and not yet
    /// flushed (`None` in the default mode, where each append flushes).
    unflushed: Option<(usize, usize)>,
    batched: bool,
}

impl LogWriter {
    /// A writer for an empty log at `generation`.
    pub fn new(area: LogArea, generation: u64) -> Self {
        LogWriter {
            area,
            generation,
            pos: 0,
            count: 0,
            unflushed: None,
            batched: false,
        }
    }

    /// A writer whose appends store small entries without flushing them:
    /// [`flush`](Self::flush) then flushes every line written since, once.
    /// Consecutive entries share lines, and a flush may evict its line
    /// (clwb does on some CPUs), so flushing per entry would flush a line
    /// again and again and reload it in between.
    pub fn new_batched(area: LogArea, generation: u64) -> Self {
        LogWriter {
            batched: true,
            ..Self::new(area, generation)
        }
    }

    /// Flushes the lines appended since the last flush (batched mode; a
    /// no-op otherwise). Call it before the drain that must cover them.
    pub fn flush(&mut self, p: &Persister) {
        if let Some((a, b)) = self.unflushed.take() {
            p.flush(a, b - a);
        }
    }

    /// Writes `words` (a multiple of 8 bytes) at pool offset `off` (8-aligned,
    /// outside the log's areas, usually beside them) as this writer writes
    /// its entries: streamed where the persister streams words, else stored
    /// and flushed with the entries by the next [`flush`](Self::flush) (one
    /// flush for both when they share a line), or at once by an unbatched
    /// writer. Not drained.
    ///
    /// # Safety
    /// The caller owns `off..off + words.len()`, inside the mapping, and
    /// `words` does not overlap it.
    pub unsafe fn write_beside(&mut self, p: &Persister, off: usize, words: &[u8]) {
        let n = words.len();
        // SAFETY: forwarded from the caller.
        unsafe { p.stream_words(off, words) };
        if p.streams_words() {
            return;
        }
        if self.batched {
            self.note_unflushed(off, off + n);
        } else {
            p.flush(off, n);
        }
    }

    /// Adds `a..b`, stored with plain stores, to the range the next
    /// [`flush`](Self::flush) covers (batched mode).
    fn note_unflushed(&mut self, a: usize, b: usize) {
        self.unflushed = Some(match self.unflushed {
            Some((x, y)) => (x.min(a), y.max(b)),
            None => (a, b),
        });
    }

    /// Bytes still free for entries in the current area (the tail kept for
    /// a `Continue` entry excluded).
    pub fn remaining(&self) -> usize {
        self.area.cap.saturating_sub(self.pos + CONTINUE_RESERVE)
    }

    /// The area entries are being appended to.
    pub fn area(&self) -> LogArea {
        self.area
    }

    /// Continues the log in `next` (an overflow block the caller owns, at
    /// least [`MIN_AREA`] bytes, 8-aligned): writes a `Continue` entry into
    /// the tail every area keeps free, then appends to `next` from its
    /// start. Not drained, like `append`.
    ///
    /// # Safety
    /// As for [`append`](Self::append), for both areas.
    pub unsafe fn chain(&mut self, p: &Persister, next: LogArea) -> Result<()> {
        if next.cap < MIN_AREA || !next.off.is_multiple_of(8) || !next.cap.is_multiple_of(8) {
            return Err(Error::LogFull {
                needed: MIN_AREA as u64,
                available: next.cap as u64,
            });
        }
        debug_assert!(self.pos + CONTINUE_RESERVE <= self.area.cap);
        let at = self.area.off + self.pos;
        let cap = (next.cap as u64).to_le_bytes();
        // SAFETY: forwarded from the caller; `append` never uses the last
        // CONTINUE_RESERVE bytes, so the entry fits at `pos`.
        unsafe { self.write_entry(p, at, EntryKind::Continue, next.off as u64, &cap) };
        self.flush(p);
        self.area = next;
        self.pos = 0;
        Ok(())
    }

    /// Entries appended so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends an entry whose payload is `payload`, without draining, and
    /// returns the pool offset of the payload copy. Fails with
    /// [`Error::LogFull`] (writing nothing) if it does not fit.
    ///
    /// # Safety
    /// The caller owns the log area exclusively (it holds the lane) and
    /// `payload` does not overlap it.
    pub unsafe fn append(
        &mut self,
        p: &Persister,
        kind: EntryKind,
        target: u64,
        payload: &[u8],
    ) -> Result<usize> {
        let need = entry_size(payload.len());
        if need > self.remaining() || target > OFFSET_MASK || payload.len() > u32::MAX as usize {
            return Err(Error::LogFull {
                needed: need as u64,
                available: self.remaining() as u64,
            });
        }
        let at = self.area.off + self.pos;
        // SAFETY: forwarded from the caller; `need <= remaining` keeps the
        // entry inside the area.
        unsafe { self.write_entry(p, at, kind, target, payload) };
        self.pos += need;
        self.count += 1;
        Ok(at + ENTRY_HEADER)
    }

    /// Writes one entry at pool offset `at` (no bounds check).
    ///
    /// # Safety
    /// The caller owns `at..at + entry_size(payload.len())`, and `payload`
    /// does not overlap it.
    unsafe fn write_entry(
        &mut self,
        p: &Persister,
        at: usize,
        kind: EntryKind,
        target: u64,
        payload: &[u8],
    ) {
        let offset_kind = ((kind as u64) << OFFSET_BITS) | target;
        let len = payload.len() as u32;
        let crc = checksum(self.generation, offset_kind, len, payload);
        // The header's two words, as their bytes lie in memory: the
        // offset and kind, then the length and the checksum (little-endian).
        let head = [
            u64::from_ne_bytes(offset_kind.to_le_bytes()),
            u64::from_ne_bytes((u64::from(len) | (u64::from(crc) << 32)).to_le_bytes()),
        ];
        if payload.len() <= SMALL_ENTRY {
            // One copy of header and payload together, so the line they
            // share is flushed once. Built a word at a time: only the
            // words the entry takes are written (the last one padded with
            // zeros), not the whole buffer.
            let mut buf = [MaybeUninit::<u64>::uninit(); (ENTRY_HEADER + SMALL_ENTRY) / 8];
            let words = (ENTRY_HEADER + payload.len()).div_ceil(8);
            // The padding first (the payload then overwrites its start).
            buf[words - 1].write(0);
            let to = buf.as_mut_ptr().cast::<u8>().wrapping_add(ENTRY_HEADER);
            // A redo entry's word or pointer, the most frequent sizes, is
            // copied with a constant length: inline moves instead of a call
            // to `memcpy`.
            // SAFETY: `payload` fits in the buffer after the header
            // (`payload.len() <= SMALL_ENTRY`; each arm copies exactly
            // `payload.len()` bytes), and a local does not overlap it.
            unsafe {
                match payload.len() {
                    8 => std::ptr::copy_nonoverlapping(payload.as_ptr(), to, 8),
                    16 => std::ptr::copy_nonoverlapping(payload.as_ptr(), to, 16),
                    n => std::ptr::copy_nonoverlapping(payload.as_ptr(), to, n),
                }
            }
            buf[0].write(head[0]);
            buf[1].write(head[1]);
            // SAFETY: the first `words` words were written just above
            // (header, payload, the padding of the last one); `u64` has no
            // padding, so they are `words * 8` initialized bytes.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), words * 8) };
            let n = ENTRY_HEADER + payload.len();
            if self.batched {
                // Whole words: the payload padding is zero.
                let n = words * 8;
                // SAFETY: the caller owns the entry's bytes (its padded
                // size), inside the mapping; entries are 8-aligned;
                // `bytes` is a local.
                unsafe { p.stream_words(at, bytes) };
                if !p.streams_words() {
                    self.note_unflushed(at, at + n);
                }
            } else {
                // SAFETY: the caller owns the entry's bytes.
                unsafe { p.memcpy_nodrain(at, &bytes[..n]) };
            }
        } else {
            let mut bytes = [0u8; ENTRY_HEADER];
            bytes[..8].copy_from_slice(&head[0].to_ne_bytes());
            bytes[8..].copy_from_slice(&head[1].to_ne_bytes());
            // SAFETY: the caller owns the entry's bytes, and `payload` does
            // not overlap them.
            unsafe {
                p.memcpy_nodrain(at + ENTRY_HEADER, payload);
                p.memcpy_nodrain(at, &bytes);
            }
        }
    }

    /// Appends a commit record without payload (the number of entries
    /// before it): the caller made the data durable before it.
    ///
    /// # Safety
    /// As for [`append`](Self::append).
    pub unsafe fn append_commit(&mut self, p: &Persister) -> Result<()> {
        let n = self.count;
        // SAFETY: forwarded from the caller.
        unsafe { self.append(p, EntryKind::Commit, n, &[]) }.map(|_| ())
    }

    /// Appends a commit record carrying `info`.
    ///
    /// # Safety
    /// As for [`append`](Self::append).
    pub unsafe fn append_commit_info(&mut self, p: &Persister, info: &CommitInfo) -> Result<()> {
        let n = self.count;
        // SAFETY: forwarded from the caller.
        unsafe { self.append(p, EntryKind::Commit, n, &info.encode()) }.map(|_| ())
    }
}

/// Reads the valid entries of a log at `generation` from `pool` (the whole
/// pool's bytes), stopping at the first entry that is torn, stale or out of
/// bounds. `target_ok(offset, len)` says whether an entry may touch that
/// pool range; an entry failing it ends the scan and is reported through
/// the returned flag.
pub fn scan(
    pool: &[u8],
    area: LogArea,
    generation: u64,
    target_ok: impl Fn(u64, u64) -> bool,
) -> ScanResult {
    let mut out = ScanResult::default();
    let Some(mut log) = pool.get(area.off..area.off.saturating_add(area.cap)) else {
        out.bad_target = true;
        return out;
    };
    let mut area = area;
    let mut hops = 0usize;
    let mut pos = 0usize;
    while pos + ENTRY_HEADER <= log.len() {
        let h = &log[pos..pos + ENTRY_HEADER];
        let offset_kind = u64::from_le_bytes(h[..8].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(h[12..16].try_into().unwrap_or_default());
        let Some(kind) = EntryKind::from_u8((offset_kind >> OFFSET_BITS) as u8) else {
            break;
        };
        let need = entry_size(len as usize);
        if need > log.len() - pos {
            break;
        }
        let payload = &log[pos + ENTRY_HEADER..pos + ENTRY_HEADER + len as usize];
        if checksum(generation, offset_kind, len, payload) != crc {
            break;
        }
        let target = offset_kind & OFFSET_MASK;
        let shape_ok = match kind {
            EntryKind::Set64 | EntryKind::Or64 | EntryKind::AndNot64 => {
                len == 8 && target.is_multiple_of(8)
            }
            EntryKind::Commit => len == 0 || CommitInfo::decode(payload).is_some(),
            EntryKind::Continue | EntryKind::Fresh => len == 8,
            // An empty snapshot or copy is a no-op `append` accepts; it is
            // not damage (refusing it would make recovery refuse the pool).
            EntryKind::Snapshot | EntryKind::Copy => true,
        };
        if kind == EntryKind::Continue {
            let cap = u64::from_le_bytes(payload.try_into().unwrap_or_default());
            let next = pool.get(target as usize..(target as usize).saturating_add(cap as usize));
            match next {
                Some(next)
                    if shape_ok
                        && cap >= MIN_AREA as u64
                        && cap.is_multiple_of(8)
                        && target.is_multiple_of(8)
                        && target_ok(target, cap)
                        && hops < MAX_HOPS =>
                {
                    hops += 1;
                    log = next;
                    area = LogArea {
                        off: target as usize,
                        cap: cap as usize,
                    };
                    out.areas.push(area);
                    pos = 0;
                    continue;
                }
                _ => {
                    out.bad_target = true;
                    break;
                }
            }
        }
        // A `Fresh` entry's range is its payload, not the payload's bytes.
        let range = match kind {
            EntryKind::Fresh => u64::from_le_bytes(payload.try_into().unwrap_or_default()),
            _ => u64::from(len),
        };
        if !shape_ok || (kind != EntryKind::Commit && !target_ok(target, range)) {
            out.bad_target = true;
            break;
        }
        if kind == EntryKind::Commit {
            out.committed = target == out.entries.len() as u64;
            out.commit = CommitInfo::decode(payload);
            break;
        }
        out.entries.push(Entry {
            kind,
            target,
            len,
            payload_off: area.off + pos + ENTRY_HEADER,
        });
        pos += need;
    }
    out
}

/// What [`scan`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// The valid entries, oldest first (the commit record excluded).
    pub entries: Vec<Entry>,
    /// Whether a commit record closes them (redo logs).
    pub committed: bool,
    /// The commit record's payload, if it has one.
    pub commit: Option<CommitInfo>,
    /// Whether the scan stopped at a checksum-valid entry aiming outside the
    /// ranges a log may touch (a damaged or foreign pool).
    pub bad_target: bool,
    /// The overflow areas the log continued into, in order.
    pub areas: Vec<LogArea>,
}

#[cfg(all(test, feature = "sim"))]
#[path = "ulog_tests.rs"]
mod tests;
