//! Unit tests of lane recovery: rollback of undo logs, application of
//! committed redo logs, refusal of damaged lanes, idempotence under a crash
//! during recovery (every crash image of the Sim trace), and the fence cost.
//!
//! Each test drives a 1 MiB heap buffer through a `Sim` persister with a
//! hand-made [`LaneLayout`]: lanes at 0x3000, the heap right after them.

use super::*;
use crate::sim::CrashOptions;
use crate::ulog::{LogWriter, entry_size};
use std::ops::ControlFlow;

use crate::test_sim_buf::{POOL, SimBuf};

const LANES: u32 = 4;

/// A Sim buffer and the lane layout over it.
struct SimPool {
    b: SimBuf,
    l: LaneLayout,
}

impl std::ops::Deref for SimPool {
    type Target = SimBuf;
    fn deref(&self) -> &SimBuf {
        &self.b
    }
}

fn layout(lane_size: usize) -> LaneLayout {
    LaneLayout {
        offset: 0x3000,
        count: LANES,
        size: lane_size,
        pool_size: POOL as u64,
        heap_offset: (0x3000 + LANES as usize * lane_size) as u64,
        gen_copy: false,
    }
}

impl SimPool {
    /// A zeroed pool with 4 KiB lanes.
    fn new() -> Self {
        Self::with(&vec![0u8; POOL], layout(4096))
    }

    /// A pool whose volatile and persisted images are `img`.
    fn with(img: &[u8], l: LaneLayout) -> Self {
        SimPool {
            b: SimBuf::with(img),
            l,
        }
    }

    fn persisted(&self) -> Vec<u8> {
        self.p.sim().unwrap().persisted_image()
    }

    fn persist_all(&self) {
        self.p.persist(0, POOL).unwrap();
    }

    fn generation(&self, lane: u32) -> u64 {
        let o = self.l.generation_off(lane);
        u64::from_le_bytes(self.peek(o, 8).try_into().unwrap())
    }

    fn set_generation(&self, lane: u32, g: u64) {
        self.poke(self.l.generation_off(lane), &g.to_le_bytes());
    }

    fn undo(&self, lane: u32) -> LogWriter {
        LogWriter::new(self.l.undo(lane), log_key(lane, self.generation(lane)))
    }

    fn redo(&self, lane: u32) -> LogWriter {
        LogWriter::new(
            self.l.redo(lane, self.generation(lane)),
            log_key(lane, self.generation(lane)),
        )
    }

    /// Appends a `Snapshot` of the current bytes of `off..off+len`.
    fn snapshot(&self, w: &mut LogWriter, off: usize, len: usize) {
        let old = self.peek(off, len);
        self.append(w, EntryKind::Snapshot, off as u64, &old);
    }

    fn append(&self, w: &mut LogWriter, kind: EntryKind, target: u64, payload: &[u8]) {
        // SAFETY: the test owns the whole buffer; `payload` is a Rust
        // allocation outside it.
        unsafe { w.append(&self.p, kind, target, payload) }.unwrap();
    }

    fn commit(&self, w: &mut LogWriter) {
        // SAFETY: as in `append`.
        unsafe { w.append_commit(&self.p) }.unwrap();
    }

    fn inspect(&self, lane: u32) -> LaneState {
        inspect(&self.bytes(), &self.l, lane)
    }

    fn recover(&self) -> Result<Vec<Recovered>> {
        // SAFETY: the test owns the buffer and holds no reference into it.
        unsafe { recover(&self.p, &self.l) }
    }
}

/// Deterministic non-zero bytes.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((seed * 37 + j * 11 + 3) % 253) as u8 + 1)
        .collect()
}

/// Heap offsets used by the tests (the heap starts at 0x7000 with 4 KiB
/// lanes, at 0x13000 with 16 KiB ones).
const H: usize = 0x20000;
const H2: usize = 0x30000;
/// A word of the state block.
const S: usize = 0x2040;

/// Lane 1 of a fresh pool at generation 5 holds an uncommitted transaction:
/// overlapping snapshots A (`H..H+64`) and B (`H+32..H+96`) with a change in
/// between, a 300-byte snapshot at `H2` and an 8-byte one in the state
/// block; then everything is changed again. Returns the pool and the
/// original content of `H..H+128`, `H2..H2+300` and `S..S+8`.
fn pending_rollback() -> (SimPool, Vec<u8>, Vec<u8>, Vec<u8>) {
    let sp = SimPool::new();
    sp.set_generation(1, 5);
    let orig_h = pattern(1, 128);
    let orig_h2 = pattern(2, 300);
    let orig_s = pattern(3, 8);
    sp.poke(H, &orig_h);
    sp.poke(H2, &orig_h2);
    sp.poke(S, &orig_s);
    sp.persist_all();

    let mut w = sp.undo(1);
    sp.snapshot(&mut w, H, 64);
    sp.p.drain().unwrap();
    sp.poke(H, &pattern(10, 64));
    // B snapshots bytes 32..64 already changed: rollback must apply A last.
    sp.snapshot(&mut w, H + 32, 64);
    sp.snapshot(&mut w, H2, 300);
    sp.snapshot(&mut w, S, 8);
    sp.p.drain().unwrap();
    sp.poke(H, &pattern(11, 128));
    sp.poke(H2, &pattern(12, 300));
    sp.poke(S, &pattern(13, 8));
    (sp, orig_h, orig_h2, orig_s)
}

#[test]
fn rollback_restores_original_bytes_newest_first() {
    let (sp, orig_h, orig_h2, orig_s) = pending_rollback();
    let changed_tail = pattern(11, 128)[96..].to_vec();
    assert_eq!(
        sp.inspect(1),
        LaneState::UndoPending {
            entries: 4,
            bytes: 64 + 64 + 300 + 8
        }
    );
    sp.persist_all();

    let done = sp.recover().unwrap();
    assert_eq!(
        done,
        vec![Recovered {
            lane: 1,
            was: LaneState::UndoPending {
                entries: 4,
                bytes: 436
            }
        }]
    );
    assert_eq!(sp.peek(H, 96), orig_h[..96], "overlapping snapshots");
    assert_eq!(sp.peek(H + 96, 32), changed_tail, "bytes never snapshotted");
    assert_eq!(sp.peek(H2, 300), orig_h2);
    assert_eq!(sp.peek(S, 8), orig_s);
    assert_eq!(sp.generation(1), 6);
    // Everything recovery wrote is durable, the generation included.
    assert!(sp.p.sim().unwrap().is_fully_persisted());
    let gen_off = sp.l.generation_off(1);
    assert_eq!(sp.persisted()[gen_off..gen_off + 8], 6u64.to_le_bytes());
    assert_eq!(sp.inspect(1), LaneState::Idle);

    // A second recovery finds nothing and writes nothing.
    let before = sp.bytes();
    sp.p.sim().unwrap().reset_counters();
    assert!(sp.recover().unwrap().is_empty());
    assert_eq!(sp.bytes(), before);
    assert_eq!(sp.p.sim().unwrap().counters().flush_calls, 0);
    assert_eq!(sp.p.sim().unwrap().counters().fences, 0);
}

/// Lane 2 holds a committed redo log touching the state block and the heap
/// with every redo kind (several on the same word). Returns the pool and
/// the image expected after it is applied.
fn pending_redo(lane_size: usize) -> (SimPool, Vec<u8>) {
    let sp = SimPool::with(&vec![0u8; POOL], layout(lane_size));
    sp.set_generation(2, 41);
    sp.poke(S, &0xdead_beefu64.to_le_bytes());
    sp.poke(S + 8, &0b1010u64.to_le_bytes());
    sp.poke(H, &0xffu64.to_le_bytes());
    sp.poke(H + 8, &u64::MAX.to_le_bytes());
    sp.poke(H2, &pattern(5, 400));
    sp.persist_all();

    let mut r = sp.redo(2);
    sp.append(&mut r, EntryKind::Set64, S as u64, &7u64.to_le_bytes());
    sp.append(
        &mut r,
        EntryKind::Or64,
        (S + 8) as u64,
        &0b0101u64.to_le_bytes(),
    );
    sp.append(
        &mut r,
        EntryKind::AndNot64,
        H as u64,
        &0x0fu64.to_le_bytes(),
    );
    // Set then Or then AndNot on one word: 7 | 8 = 15, & !1 = 14.
    sp.append(
        &mut r,
        EntryKind::Set64,
        (H + 8) as u64,
        &7u64.to_le_bytes(),
    );
    sp.append(&mut r, EntryKind::Or64, (H + 8) as u64, &8u64.to_le_bytes());
    sp.append(
        &mut r,
        EntryKind::AndNot64,
        (H + 8) as u64,
        &1u64.to_le_bytes(),
    );
    let big = pattern(6, 100);
    sp.append(&mut r, EntryKind::Copy, (H2 + 3) as u64, &big);
    let small = pattern(7, 13);
    sp.append(&mut r, EntryKind::Copy, (S + 0x100 + 5) as u64, &small);
    // A later copy overwrites part of an earlier one: order matters.
    let over = pattern(8, 20);
    sp.append(&mut r, EntryKind::Copy, (H2 + 10) as u64, &over);
    sp.commit(&mut r);
    sp.p.drain().unwrap();

    // Expected: the image with the log in it, plus the applied changes.
    let mut want = sp.bytes();
    let mut put = |o: usize, v: &[u8]| want[o..o + v.len()].copy_from_slice(v);
    put(S, &7u64.to_le_bytes());
    put(S + 8, &0b1111u64.to_le_bytes());
    put(H, &0xf0u64.to_le_bytes());
    put(H + 8, &14u64.to_le_bytes());
    put(H2 + 3, &big);
    put(S + 0x105, &small);
    put(H2 + 10, &over);
    let g = sp.l.generation_off(2);
    put(g, &42u64.to_le_bytes());
    (sp, want)
}

#[test]
fn committed_redo_is_applied_exactly_and_idempotently() {
    let (sp, want) = pending_redo(4096);
    assert_eq!(sp.inspect(2), LaneState::RedoPending { entries: 9 });
    let done = sp.recover().unwrap();
    assert_eq!(
        done,
        vec![Recovered {
            lane: 2,
            was: LaneState::RedoPending { entries: 9 }
        }]
    );
    let got = sp.bytes();
    let diff: Vec<usize> = (0..POOL).filter(|&i| got[i] != want[i]).collect();
    assert!(
        diff.is_empty(),
        "redo applied wrongly at {:x?}",
        &diff[..diff.len().min(20)]
    );
    assert!(sp.p.sim().unwrap().is_fully_persisted());
    assert_eq!(sp.inspect(2), LaneState::Idle);

    // A crash after the redo was applied but before the generation bump
    // reached the media: the log is valid again and is applied a second
    // time over its own result.
    sp.set_generation(2, 41);
    sp.persist_all();
    assert_eq!(sp.inspect(2), LaneState::RedoPending { entries: 9 });
    assert_eq!(sp.recover().unwrap().len(), 1);
    assert!(sp.bytes() == want, "applying the redo log twice differs");
}

#[test]
fn committed_redo_wins_over_undo() {
    let sp = SimPool::new();
    sp.poke(H, &pattern(1, 64));
    sp.persist_all();
    let mut u = sp.undo(0);
    sp.snapshot(&mut u, H, 64);
    let mut r = sp.redo(0);
    sp.append(&mut r, EntryKind::Set64, H2 as u64, &99u64.to_le_bytes());
    sp.commit(&mut r);
    sp.p.drain().unwrap();
    let changed = pattern(2, 64);
    sp.poke(H, &changed);

    assert_eq!(sp.inspect(0), LaneState::RedoPending { entries: 1 });
    let done = sp.recover().unwrap();
    assert_eq!(done[0].was, LaneState::RedoPending { entries: 1 });
    assert_eq!(sp.peek(H2, 8), 99u64.to_le_bytes());
    assert_eq!(sp.peek(H, 64), changed, "undo must be ignored");
    assert_eq!(sp.generation(0), 1);
    assert_eq!(sp.inspect(0), LaneState::Idle);
}

#[test]
fn uncommitted_redo_is_not_applied_and_undo_rolls_back() {
    let sp = SimPool::new();
    let orig = pattern(1, 64);
    sp.poke(H, &orig);
    let mut u = sp.undo(3);
    sp.snapshot(&mut u, H, 64);
    let mut r = sp.redo(3);
    sp.append(&mut r, EntryKind::Set64, H2 as u64, &99u64.to_le_bytes());
    // A commit record with a wrong count commits nothing.
    sp.append(&mut r, EntryKind::Commit, 2, &[]);
    sp.poke(H, &pattern(2, 64));
    assert_eq!(
        sp.inspect(3),
        LaneState::UndoPending {
            entries: 1,
            bytes: 64
        }
    );
    sp.recover().unwrap();
    assert_eq!(sp.peek(H, 64), orig);
    assert_eq!(sp.peek(H2, 8), [0; 8], "uncommitted redo applied");
}

#[test]
fn uncommitted_redo_entries_are_made_stale_and_never_applied() {
    let sp = SimPool::new();
    let mut r = sp.redo(0);
    sp.append(&mut r, EntryKind::Set64, H2 as u64, &99u64.to_le_bytes());
    assert_eq!(
        sp.inspect(0),
        LaneState::UndoPending {
            entries: 0,
            bytes: 0
        }
    );
    let before = sp.bytes();
    assert_eq!(sp.recover().unwrap().len(), 1);
    let after = sp.bytes();
    // Only the lane's generation word changed: the entry was not applied...
    let g = sp.l.generation_off(0);
    assert_eq!(before[..g], after[..g]);
    assert_eq!(before[g + 8..], after[g + 8..]);
    // ...and it is stale now, so the lane is idle and a later transaction
    // on it cannot pick it up.
    assert_eq!(sp.inspect(0), LaneState::Idle);
    assert!(sp.recover().unwrap().is_empty());
}

/// Ranges a log may never touch: the headers, the lanes (their own logs
/// and generation words included), past the pool's end, and straddling the
/// state block's end into the lanes.
fn bad_targets(l: &LaneLayout) -> Vec<(u64, usize)> {
    let lanes_end = l.heap_offset as usize;
    vec![
        (0, 8),
        (0x1ff8, 8),
        (0x1ffc, 8),
        (0x2ff8, 16),
        (0x3000, 8),
        (l.generation_off(2) as u64, 8),
        (l.undo(1).off as u64, 64),
        ((lanes_end - 8) as u64, 8),
        ((lanes_end - 8) as u64, 16),
        ((POOL - 8) as u64, 16),
        (POOL as u64, 8),
        ((1 << crate::ulog::OFFSET_BITS) - 4, 8),
    ]
}

#[test]
fn bad_targets_are_damage_and_recovery_writes_nothing() {
    for (target, len) in bad_targets(&layout(4096)) {
        for redo in [false, true] {
            let sp = SimPool::new();
            let mut u = sp.undo(1);
            let mut r = sp.redo(1);
            sp.snapshot(&mut u, H, 16);
            if redo {
                sp.append(&mut r, EntryKind::Set64, H as u64, &[1; 8]);
                let kind = if len == 8 && target % 8 == 0 {
                    EntryKind::Set64
                } else {
                    EntryKind::Copy
                };
                sp.append(&mut r, kind, target, &pattern(0, len));
                sp.commit(&mut r);
            } else {
                sp.append(&mut u, EntryKind::Snapshot, target, &pattern(0, len));
            }
            sp.poke(H, &[9; 16]);
            sp.persist_all();
            let img = sp.bytes();
            let area = if redo { sp.l.redo(1, 0) } else { sp.l.undo(1) };
            let s = scan(&img, area, log_key(1, 0), |o, n| sp.l.target_ok(o, n));
            assert!(s.bad_target, "target {target:#x}+{len} accepted");
            assert_eq!(s.entries.len(), 1, "entries before the bad one kept");
            assert!(!s.committed);
            assert_eq!(sp.inspect(1), LaneState::Damaged);

            sp.p.sim().unwrap().reset_counters();
            let err = sp.recover().unwrap_err();
            assert!(matches!(err, Error::LaneDamaged { lane: 1 }), "{err:?}");
            assert!(sp.bytes() == img, "recovery of a damaged lane wrote");
            let c = sp.p.sim().unwrap().counters();
            assert_eq!((c.flush_calls, c.fences), (0, 0));
        }
    }
}

#[test]
fn good_targets_at_the_edges_are_accepted() {
    let l = layout(4096);
    for (off, len) in [
        (0x2000u64, 8u64),
        (0x2ff8, 8),
        (0x2000, 0x1000),
        (l.heap_offset, 8),
        (POOL as u64 - 8, 8),
    ] {
        assert!(l.target_ok(off, len), "{off:#x}+{len}");
    }
}

/// Regression: recovery applied the lanes before a damaged one and only
/// then returned `LaneDamaged`, so a refused pool was still half written
/// (and `pmem check` then saw a different pool than the one refused).
#[test]
fn damaged_lane_refuses_the_pool_before_any_lane_is_recovered() {
    let (sp, ..) = pending_rollback();
    let mut u = sp.undo(3);
    sp.append(&mut u, EntryKind::Snapshot, 0x100, &[1; 8]);
    sp.persist_all();
    assert!(matches!(sp.inspect(1), LaneState::UndoPending { .. }));
    assert_eq!(sp.inspect(3), LaneState::Damaged);
    let before = sp.bytes();
    sp.p.sim().unwrap().reset_counters();
    let err = sp.recover().unwrap_err();
    assert!(matches!(err, Error::LaneDamaged { lane: 3 }), "{err:?}");
    assert!(
        sp.bytes() == before,
        "lane 1 was recovered before the refusal"
    );
    assert_eq!(sp.p.sim().unwrap().counters().fences, 0);
}

/// Records `recover` of `sp` in a crash trace; for every crash image,
/// recovers a copy of it and checks it ends equal to the fully recovered
/// state. Returns the number of images checked.
fn crash_during_recovery(sp: SimPool) -> usize {
    sp.persist_all();
    let sim = sp.p.sim().unwrap().clone();
    sim.start_trace();
    sp.recover().unwrap();
    let mut trace = sim.take_trace().unwrap();
    let want = sp.bytes();
    assert!(sim.is_fully_persisted());
    let opts = CrashOptions {
        random_subsets: 64,
        seed: 0x1a7e,
        exhaustive_up_to: 12,
    };
    let mut n = 0;
    let mut rebooted = 0;
    let flow = trace.for_each_image(&opts, |img| {
        n += 1;
        let again = SimPool::with(img.bytes, sp.l);
        if again.recover().unwrap().is_empty() {
            rebooted += 1;
        }
        if again.bytes() != want {
            return ControlFlow::Break(format!(
                "point {} {:?} lines {:?}: recovery from this image differs",
                img.point, img.selection, img.added_lines
            ));
        }
        if !again.p.sim().unwrap().is_fully_persisted() {
            return ControlFlow::Break(format!("point {}: unflushed store", img.point));
        }
        ControlFlow::Continue(())
    });
    if let ControlFlow::Break(msg) = flow {
        panic!("{msg}");
    }
    assert_eq!(n, trace.image_count(&opts));
    assert!(trace.points() >= 3, "drain, generation persist, end");
    // Only images past the generation bump need no recovery.
    assert!(rebooted > 0 && rebooted < n);
    n
}

#[test]
fn crash_during_rollback_recovers_to_the_same_state() {
    let (sp, ..) = pending_rollback();
    let n = crash_during_recovery(sp);
    println!("crash images checked (rollback): {n}");
    assert!(n >= 64);
}

#[test]
fn crash_during_redo_recovers_to_the_same_state() {
    let (sp, _) = pending_redo(16384);
    let n = crash_during_recovery(sp);
    println!("crash images checked (redo): {n}");
    // Two drain points (apply, generation), every subset of their dirty
    // lines or 16 random ones each.
    assert!(n >= 32);
}

#[test]
fn recover_costs_two_fences_per_lane_and_none_when_idle() {
    let sp = SimPool::new();
    // Stale entries of an older generation do not count as work.
    let mut old = LogWriter::new(sp.l.undo(0), log_key(0, 0));
    sp.set_generation(0, 1);
    sp.snapshot(&mut old, H, 64);
    sp.persist_all();
    let sim = sp.p.sim().unwrap();
    sim.reset_counters();
    assert!(sp.recover().unwrap().is_empty());
    assert_eq!(sim.counters().fences, 0, "idle pool");
    assert_eq!(sim.counters().flush_calls, 0, "idle pool");

    let mut u = sp.undo(2);
    sp.snapshot(&mut u, H, 64);
    sp.poke(H, &[5; 64]);
    sp.persist_all();
    sim.reset_counters();
    assert_eq!(sp.recover().unwrap().len(), 1);
    assert_eq!(sim.counters().fences, 2, "drain + generation persist");
}

/// Regression: the generation bump was `generation + 1`, which panics (in
/// debug builds) on a lane whose generation word is `u64::MAX`: a corrupt
/// or hostile pool crashed recovery instead of being recovered.
#[test]
fn recover_at_the_largest_generation_does_not_panic() {
    let sp = SimPool::new();
    sp.set_generation(0, u64::MAX);
    let orig = pattern(1, 8);
    sp.poke(H, &orig);
    let mut u = sp.undo(0);
    sp.snapshot(&mut u, H, 8);
    sp.poke(H, &[0; 8]);
    assert_eq!(sp.recover().unwrap().len(), 1);
    assert_eq!(sp.peek(H, 8), orig);
    assert_eq!(sp.generation(0), 0);
    assert_eq!(sp.inspect(0), LaneState::Idle);
}

#[test]
fn lane_areas_do_not_overlap() {
    for size in [4096usize, 16384] {
        let l = layout(size);
        for i in 0..LANES {
            let g = l.generation_off(i);
            let u = l.undo(i);
            let (r0, r1) = (l.redo(i, 0), l.redo(i, 1));
            assert_eq!(u.off, g + LANE_HEADER);
            assert_eq!(u.off + u.cap, r0.off);
            assert_eq!(r0.off + r0.cap, r1.off);
            assert_eq!(r1.off + r1.cap, g + size);
            assert_eq!(l.redo(i, 7), r1, "odd generations use the second half");
            assert_eq!(r0.cap % 8, 0);
            assert!(entry_size(8) <= r0.cap);
        }
        assert_eq!(l.generation_off(LANES), l.heap_offset as usize);
    }
}

/// A checksummed commit record for lane `lane`'s redo writer `r`.
fn commit_with_crc(sp: &SimPool, r: &mut LogWriter, seq: u64, n_undo: u32, data: &[&[u8]]) {
    let mut h = crate::crc::Crc32c::new();
    for d in data {
        h.update(d);
    }
    let info = CommitInfo {
        seq,
        n_undo,
        data_crc: h.finalize(),
        flags: CommitInfo::DATA_CRC,
    };
    // SAFETY: as in `SimPool::append`.
    unsafe { r.append_commit_info(&sp.p, &info) }.unwrap();
}

/// Lane `lane` at `generation` snapshots `at..` holding `old`, then
/// writes `written` there. Returns the lane's redo writer, for its commit.
fn snapshot_then_write(
    sp: &SimPool,
    lane: u32,
    generation: u64,
    at: usize,
    old: &[u8],
    written: &[u8],
) -> LogWriter {
    sp.set_generation(lane, generation);
    sp.poke(at, old);
    let mut u = sp.undo(lane);
    sp.snapshot(&mut u, at, old.len());
    sp.poke(at, written);
    sp.redo(lane)
}

#[test]
fn checksummed_commits_are_judged_by_their_data() {
    let sp = SimPool::new();
    let (old, new) = (pattern(20, 64), pattern(21, 64));
    // Lane 0: the data matches its record: committed, kept.
    let mut r = snapshot_then_write(&sp, 0, 3, H, &old, &new);
    commit_with_crc(&sp, &mut r, 1, 1, &[&new]);
    // Lane 1: the record reached the media, the data did not: rolled back.
    let mut r = snapshot_then_write(&sp, 1, 8, H2, &old, &pattern(22, 64));
    commit_with_crc(&sp, &mut r, 2, 1, &[&new]);
    // Lane 2: the record counts two undo entries but one is valid: the
    // lane's next transaction is rewriting the undo log, so this one
    // finished; its data is not checked.
    sp.set_generation(2, 5);
    let mut u = sp.undo(2);
    sp.snapshot(&mut u, H + 0x100, 64);
    let mut r = sp.redo(2);
    commit_with_crc(&sp, &mut r, 3, 2, &[b"anything else"]);
    sp.persist_all();
    assert_eq!(sp.inspect(0), LaneState::RedoPending { entries: 0 });
    assert_eq!(
        sp.inspect(1),
        LaneState::UndoPending {
            entries: 1,
            bytes: 64
        }
    );
    assert_eq!(sp.inspect(2), LaneState::RedoPending { entries: 0 });
    assert_eq!(sp.recover().unwrap().len(), 3);
    assert_eq!(sp.peek(H, 64), new, "committed data kept");
    assert_eq!(sp.peek(H2, 64), old, "torn commit rolled back");
    for lane in 0..3 {
        assert_eq!(sp.inspect(lane), LaneState::Idle);
    }
}

/// Lane 0 committed a change of `H..H+64` with a data checksum; lane 1
/// committed later (higher `seq`) a redo `Set64` into that range (an
/// `alloc_into` destination inside it). Re-applying lane 1 breaks lane 0's
/// checksum, so recovery must record lane 0's verdict before it writes.
fn checksum_then_redo_into_it() -> SimPool {
    let sp = SimPool::new();
    let (old, new) = (pattern(30, 64), pattern(31, 64));
    let mut r = snapshot_then_write(&sp, 0, 11, H, &old, &new);
    commit_with_crc(&sp, &mut r, 1, 1, &[&new]);
    sp.set_generation(1, 2);
    let mut r = sp.redo(1);
    sp.append(
        &mut r,
        EntryKind::Set64,
        (H + 8) as u64,
        &77u64.to_le_bytes(),
    );
    commit_with_crc(&sp, &mut r, 2, 0, &[]);
    sp
}

#[test]
fn checksum_verdicts_survive_a_crash_during_recovery() {
    let sp = checksum_then_redo_into_it();
    let mut want = pattern(31, 64);
    want[8..16].copy_from_slice(&77u64.to_le_bytes());
    let n = crash_during_recovery(sp);
    println!("crash images checked (checksum verdicts): {n}");
    // Three drain points (verdict, re-apply, generations), every subset of
    // their dirty lines.
    assert!(n >= 8);
    let sp = checksum_then_redo_into_it();
    sp.persist_all();
    sp.recover().unwrap();
    assert_eq!(sp.peek(H, 64), want);
}

/// The layout of a pool with `INCOMPAT_GEN_COPY`: the generation copy at
/// the start of each undo area, the undo log after it.
fn copy_layout() -> LaneLayout {
    LaneLayout {
        gen_copy: true,
        ..layout(4096)
    }
}

#[test]
fn generation_copy_is_read_with_the_word() {
    let l = copy_layout();
    let copy = l.generation_off(1) + LANE_HEADER;
    assert_eq!(l.generation_copy_off(1), Some(copy));
    assert_eq!(l.undo(1).off, copy + GEN_COPY);
    assert_eq!(l.undo(1).cap, layout(4096).undo(1).cap - GEN_COPY);
    assert_eq!(layout(4096).generation_copy_off(1), None);
    let sp = SimPool::with(&vec![0u8; POOL], l);
    let generation = |sp: &SimPool| {
        let from_bytes = generation_in(&sp.bytes(), &sp.l, 1);
        // SAFETY: the test owns the buffer and holds no reference into it.
        assert_eq!(unsafe { generation_at(&sp.p, &sp.l, 1) }, from_bytes);
        from_bytes
    };
    sp.set_generation(1, 7);
    assert_eq!(generation(&sp), 7);
    sp.poke(copy, &9u64.to_le_bytes());
    assert_eq!(generation(&sp), 9, "a copy ahead of the word wins");
    sp.set_generation(1, 12);
    assert_eq!(generation(&sp), 12, "a word ahead of the copy wins");
    // Without the feature the same bytes are the undo log's: ignored.
    let old = SimPool::with(&sp.bytes(), layout(4096));
    assert_eq!(generation_in(&old.bytes(), &old.l, 1), 12);
    old.set_generation(1, 3);
    assert_eq!(generation_in(&old.bytes(), &old.l, 1), 3);
}

/// Lane 1 committed a checksummed change of `H` at generation 4; its bump
/// to 5 reached the media only through the copy, which the lane's next
/// transaction streamed with its first undo entry (a snapshot of `H2`,
/// which it then changed) before it crashed. Recovery judges the lane at
/// generation 5: the committed log is retired (its data kept), the
/// unfinished one rolled back, and the bump lands in the word.
#[test]
fn a_copy_ahead_of_the_word_retires_the_committed_log() {
    let sp = SimPool::with(&vec![0u8; POOL], copy_layout());
    let l = sp.l;
    let (old, new) = (pattern(40, 64), pattern(41, 64));
    let h2_orig = pattern(42, 64);
    sp.poke(H2, &h2_orig);
    // Transaction A, generation 4: snapshot, write, checksummed commit.
    let mut r = snapshot_then_write(&sp, 1, 4, H, &old, &new);
    commit_with_crc(&sp, &mut r, 1, 1, &[&new]);
    sp.persist_all();
    assert_eq!(sp.inspect(1), LaneState::RedoPending { entries: 0 });
    // Transaction B, generation 5: the copy and its first undo entry (over
    // A's), then its change of `H2`; the word stays at 4 on the media.
    sp.poke(l.generation_copy_off(1).unwrap(), &5u64.to_le_bytes());
    let mut u = LogWriter::new(l.undo(1), log_key(1, 5));
    sp.snapshot(&mut u, H2, 64);
    sp.poke(H2, &pattern(43, 64));
    sp.persist_all();
    assert_eq!(sp.generation(1), 4);
    assert_eq!(
        sp.inspect(1),
        LaneState::UndoPending {
            entries: 1,
            bytes: 64
        }
    );
    sp.recover().unwrap();
    assert_eq!(sp.peek(H, 64), new, "A's committed data is kept");
    assert_eq!(sp.peek(H2, 64), h2_orig, "B is rolled back");
    assert_eq!(sp.generation(1), 6, "the bump goes into the word");
    assert_eq!(sp.inspect(1), LaneState::Idle);
}
