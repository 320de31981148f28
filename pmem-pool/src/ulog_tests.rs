//! Unit tests of the on-media log: what `LogWriter::append` writes is exactly
//! what `scan` reads back, and everything that is not a whole entry of the
//! current generation (torn, stale, never written) ends the log.
//!
//! The log lives in a heap buffer driven by a `Sim` persister, so the tests
//! also see which bytes an append made durable.

use super::*;

use crate::test_sim_buf::SimBuf;

/// A zeroed Sim buffer with log helpers.
struct SimPool(SimBuf);

impl std::ops::Deref for SimPool {
    type Target = SimBuf;
    fn deref(&self) -> &SimBuf {
        &self.0
    }
}

impl SimPool {
    fn new() -> Self {
        SimPool(SimBuf::zeroed())
    }

    fn scan(&self, area: LogArea, generation: u64) -> ScanResult {
        scan(&self.bytes(), area, generation, |_, _| true)
    }

    fn append(
        &self,
        w: &mut LogWriter,
        kind: EntryKind,
        target: u64,
        payload: &[u8],
    ) -> Result<usize> {
        // SAFETY: the test owns the whole buffer; `payload` is a Rust
        // allocation outside it.
        unsafe { w.append(&self.p, kind, target, payload) }
    }

    fn commit(&self, w: &mut LogWriter) -> Result<()> {
        // SAFETY: as in `append`.
        unsafe { w.append_commit(&self.p) }
    }
}

/// Deterministic non-zero payload bytes, distinct per entry.
fn payload(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((seed * 131 + j * 7 + 1) % 251) as u8 + 1)
        .collect()
}

const AREA: LogArea = LogArea {
    off: 0x8000,
    cap: 64 << 10,
};

/// `(kind, target, payload)` of the entries a scan found, payloads read
/// back from the image.
fn decoded(img: &[u8], r: &ScanResult) -> Vec<(EntryKind, u64, Vec<u8>)> {
    r.entries
        .iter()
        .map(|e| {
            (
                e.kind,
                e.target,
                img[e.payload_off..e.payload_off + e.len as usize].to_vec(),
            )
        })
        .collect()
}

#[test]
fn round_trip_various_kinds_and_sizes() {
    let sp = SimPool::new();
    let mut w = LogWriter::new(AREA, 42);
    let sizes = [
        0usize, 1, 7, 8, 13, 63, 64, 65, 255, 256, 257, 1000, 4095, 4096,
    ];
    let mut want = Vec::new();
    let mut offs = Vec::new();
    let mut used = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let kind = if i % 2 == 0 {
            EntryKind::Snapshot
        } else {
            EntryKind::Copy
        };
        let target = 0x10_0000 + i as u64 * 0x1001;
        let data = payload(i, n);
        offs.push(sp.append(&mut w, kind, target, &data).unwrap());
        want.push((kind, target, data));
        used += entry_size(n);
        // The 8-byte word kinds.
        for (k, kind) in [EntryKind::Set64, EntryKind::Or64, EntryKind::AndNot64]
            .into_iter()
            .enumerate()
        {
            let target = 0x2000 + (i * 3 + k) as u64 * 8;
            let data = payload(100 + i * 3 + k, 8);
            offs.push(sp.append(&mut w, kind, target, &data).unwrap());
            want.push((kind, target, data));
            used += entry_size(8);
        }
    }
    assert_eq!(w.count(), want.len() as u64);
    assert_eq!(w.remaining(), AREA.cap - used - CONTINUE_RESERVE);
    let img = sp.bytes();
    let r = scan(&img, AREA, 42, |_, _| true);
    assert!(!r.committed && !r.bad_target);
    assert_eq!(decoded(&img, &r), want);
    let got_offs: Vec<usize> = r.entries.iter().map(|e| e.payload_off).collect();
    assert_eq!(
        got_offs, offs,
        "append returns the payload offset scan reports"
    );
    for (e, (_, _, data)) in r.entries.iter().zip(&want) {
        assert_eq!(e.len as usize, data.len());
    }
    // Every byte an append wrote was flushed: one drain makes it durable.
    sp.p.drain().unwrap();
    let sim = sp.p.sim().unwrap();
    assert!(sim.is_fully_persisted(), "append left a line unflushed");
    let persisted = sim.persisted_image();
    assert_eq!(scan(&persisted, AREA, 42, |_, _| true), r);
}

#[test]
fn log_full_writes_nothing_and_writer_stays_usable() {
    let sp = SimPool::new();
    let area = LogArea {
        off: 0x8000,
        cap: 512,
    };
    let mut w = LogWriter::new(area, 3);
    sp.append(&mut w, EntryKind::Copy, 0x9000, &payload(1, 200))
        .unwrap();
    sp.append(&mut w, EntryKind::Copy, 0x9100, &payload(2, 100))
        .unwrap();
    let left = w.remaining();
    assert_eq!(
        left,
        512 - entry_size(200) - entry_size(100) - CONTINUE_RESERVE
    );
    let before = sp.bytes();
    let scan_before = sp.scan(area, 3);
    let flushes_before = sp.p.sim().unwrap().counters().flush_calls;

    // One byte too many (after padding) for what is left.
    let too_big = left - ENTRY_HEADER + 1;
    let err = sp
        .append(&mut w, EntryKind::Copy, 0x9200, &payload(3, too_big))
        .unwrap_err();
    assert!(
        matches!(err, Error::LogFull { needed, available }
            if needed == entry_size(too_big) as u64 && available == left as u64),
        "{err:?}"
    );
    assert_eq!(sp.bytes(), before, "a failed append wrote bytes");
    assert_eq!(sp.scan(area, 3), scan_before);
    assert_eq!(sp.p.sim().unwrap().counters().flush_calls, flushes_before);
    assert_eq!(w.remaining(), left);
    assert_eq!(w.count(), 2);

    // A smaller entry that fits exactly still goes in after the failure.
    let exact = left - ENTRY_HEADER;
    let data = payload(4, exact);
    let off = sp.append(&mut w, EntryKind::Copy, 0x9300, &data).unwrap();
    assert_eq!(w.remaining(), 0);
    let img = sp.bytes();
    let r = scan(&img, area, 3, |_, _| true);
    assert_eq!(r.entries.len(), 3);
    assert_eq!(r.entries[2].payload_off, off);
    assert_eq!(&img[off..off + exact], &data[..]);
    // And now even the smallest entry is refused.
    assert!(matches!(
        sp.commit(&mut w),
        Err(Error::LogFull { available: 0, .. })
    ));
}

/// Three entries; the middle one is then damaged by `damage`. The scan must
/// keep the first and stop before the middle one (the third is valid but
/// unreachable).
fn check_torn(damage: impl Fn(&SimPool, usize, usize)) {
    let sp = SimPool::new();
    let mut w = LogWriter::new(AREA, 9);
    let p0 = payload(0, 40);
    sp.append(&mut w, EntryKind::Snapshot, 0x9000, &p0).unwrap();
    let start = AREA.off + entry_size(40);
    let len = 301; // unaligned, >= 256: the non-temporal path in Pmem mode
    sp.append(&mut w, EntryKind::Snapshot, 0xa000, &payload(1, len))
        .unwrap();
    sp.append(&mut w, EntryKind::Snapshot, 0xb000, &payload(2, 24))
        .unwrap();
    assert_eq!(sp.scan(AREA, 9).entries.len(), 3);
    damage(&sp, start, entry_size(len));
    let img = sp.bytes();
    let r = scan(&img, AREA, 9, |_, _| true);
    assert!(!r.bad_target && !r.committed);
    assert_eq!(
        decoded(&img, &r),
        vec![(EntryKind::Snapshot, 0x9000, p0)],
        "scan must keep the entry before the torn one and stop there"
    );
}

#[test]
fn torn_payload_byte_ends_the_log() {
    for i in [0usize, 1, 150, 299, 300] {
        check_torn(|sp, start, _| {
            let at = start + ENTRY_HEADER + i;
            let b = sp.peek(at, 1)[0];
            sp.poke(at, &[b ^ 0x10]);
        });
    }
}

#[test]
fn torn_header_byte_ends_the_log() {
    for i in 0..ENTRY_HEADER {
        for flip in [0x01u8, 0x80] {
            check_torn(|sp, start, _| {
                let b = sp.peek(start + i, 1)[0];
                sp.poke(start + i, &[b ^ flip]);
            });
        }
    }
}

#[test]
fn truncated_entry_ends_the_log() {
    check_torn(|sp, start, size| sp.poke(start + size - 8, &[0u8; 8]));
    // Only the header made it (the payload still zero).
    check_torn(|sp, start, size| sp.poke(start + ENTRY_HEADER, &vec![0u8; size - ENTRY_HEADER]));
}

#[test]
fn entries_are_valid_only_for_their_generation() {
    let g = 7u64;
    let sp = SimPool::new();
    let mut w = LogWriter::new(AREA, g);
    for i in 0..5 {
        sp.append(
            &mut w,
            EntryKind::Copy,
            0x9000 + i * 64,
            &payload(i as usize, 24),
        )
        .unwrap();
    }
    assert_eq!(sp.scan(AREA, g).entries.len(), 5);
    assert!(sp.scan(AREA, g + 1).entries.is_empty());
    assert!(sp.scan(AREA, g - 1).entries.is_empty());
    assert!(sp.scan(AREA, 0).entries.is_empty());

    // Generation bump: two new entries of the same size land exactly on the
    // first two old ones; the old tail (entries 2..5) keeps a CRC valid for
    // G but must not be read at G+1.
    let mut w = LogWriter::new(AREA, g + 1);
    let new: Vec<_> = (0..2)
        .map(|i| (EntryKind::Copy, 0xc000 + i as u64 * 64, payload(50 + i, 24)))
        .collect();
    for (k, t, d) in &new {
        sp.append(&mut w, *k, *t, d).unwrap();
    }
    let img = sp.bytes();
    let old_tail = LogArea {
        off: AREA.off + 2 * entry_size(24),
        cap: AREA.cap - 2 * entry_size(24),
    };
    assert_eq!(
        scan(&img, old_tail, g, |_, _| true).entries.len(),
        3,
        "the old tail is still CRC-valid for G"
    );
    let r = scan(&img, AREA, g + 1, |_, _| true);
    assert_eq!(decoded(&img, &r), new);
    // At G the first entry is now foreign: nothing at all.
    assert!(scan(&img, AREA, g, |_, _| true).entries.is_empty());
}

#[test]
fn never_written_log_is_empty_at_every_generation() {
    let sp = SimPool::new();
    for g in [0, 1, u64::MAX] {
        assert_eq!(sp.scan(AREA, g), ScanResult::default());
    }
}

#[test]
fn commit_record_needs_the_exact_entry_count() {
    let redo = LogArea {
        off: 0x8000,
        cap: 1024,
    };
    let fill = |sp: &SimPool, w: &mut LogWriter| {
        for i in 0..3u64 {
            sp.append(w, EntryKind::Set64, 0x2000 + i * 8, &i.to_le_bytes())
                .unwrap();
        }
    };

    // Correct count: committed, and the commit record is not an entry.
    let sp = SimPool::new();
    let mut w = LogWriter::new(redo, 1);
    fill(&sp, &mut w);
    sp.commit(&mut w).unwrap();
    let r = sp.scan(redo, 1);
    assert!(r.committed && !r.bad_target);
    assert_eq!(r.entries.len(), 3);
    // Not at another generation.
    assert!(!sp.scan(redo, 2).committed);

    // Entries without a commit record.
    let sp = SimPool::new();
    let mut w = LogWriter::new(redo, 1);
    fill(&sp, &mut w);
    let r = sp.scan(redo, 1);
    assert!(!r.committed);
    assert_eq!(r.entries.len(), 3);

    // Wrong counts, too small and too large.
    for n in [0u64, 2, 4, 1 << 40] {
        let sp = SimPool::new();
        let mut w = LogWriter::new(redo, 1);
        fill(&sp, &mut w);
        sp.append(&mut w, EntryKind::Commit, n, &[]).unwrap();
        let r = sp.scan(redo, 1);
        assert!(!r.committed, "commit count {n} for 3 entries accepted");
        assert!(!r.bad_target);
    }

    // A torn commit record (its CRC byte damaged) does not commit.
    let sp = SimPool::new();
    let mut w = LogWriter::new(redo, 1);
    fill(&sp, &mut w);
    sp.commit(&mut w).unwrap();
    let crc_at = redo.off + 3 * entry_size(8) + 12;
    let b = sp.peek(crc_at, 1)[0];
    sp.poke(crc_at, &[b ^ 1]);
    let r = sp.scan(redo, 1);
    assert!(!r.committed);
    assert_eq!(r.entries.len(), 3);

    // Entries after a commit record are not part of the log.
    let sp = SimPool::new();
    let mut w = LogWriter::new(redo, 1);
    fill(&sp, &mut w);
    sp.commit(&mut w).unwrap();
    sp.append(&mut w, EntryKind::Set64, 0x2100, &[1; 8])
        .unwrap();
    let r = sp.scan(redo, 1);
    assert!(r.committed);
    assert_eq!(r.entries.len(), 3);
}

#[test]
fn badly_shaped_or_targeted_entries_are_reported() {
    // Word entries must be 8 bytes at an 8-aligned target; a commit record
    // carries no payload. Each is checksum-valid, so it is damage.
    let cases: [(EntryKind, u64, usize); 4] = [
        (EntryKind::Set64, 0x2004, 8),
        (EntryKind::Or64, 0x2000, 4),
        (EntryKind::AndNot64, 0x2000, 16),
        (EntryKind::Commit, 1, 8),
    ];
    for (kind, target, len) in cases {
        let sp = SimPool::new();
        let mut w = LogWriter::new(AREA, 5);
        sp.append(&mut w, EntryKind::Set64, 0x2000, &[1; 8])
            .unwrap();
        sp.append(&mut w, kind, target, &payload(0, len)).unwrap();
        let r = sp.scan(AREA, 5);
        assert!(r.bad_target, "{kind:?} {target:#x} len {len} accepted");
        assert_eq!(r.entries.len(), 1);
        assert!(!r.committed);
    }
    // `target_ok` is asked about the entry's whole range and its refusal
    // ends the scan.
    let sp = SimPool::new();
    let mut w = LogWriter::new(AREA, 5);
    sp.append(&mut w, EntryKind::Copy, 0x9000, &[1; 8]).unwrap();
    sp.append(&mut w, EntryKind::Copy, 0xa000, &[2; 20])
        .unwrap();
    sp.append(&mut w, EntryKind::Copy, 0x9100, &[3; 8]).unwrap();
    let asked = std::cell::RefCell::new(Vec::new());
    let r = scan(&sp.bytes(), AREA, 5, |o, l| {
        asked.borrow_mut().push((o, l));
        o != 0xa000
    });
    assert!(r.bad_target);
    assert_eq!(r.entries.len(), 1);
    assert_eq!(*asked.borrow(), vec![(0x9000, 8), (0xa000, 20)]);
}

#[test]
fn log_area_outside_the_pool_is_reported_not_a_panic() {
    let img = vec![0u8; 4096];
    for area in [
        LogArea {
            off: 4000,
            cap: 200,
        },
        LogArea {
            off: usize::MAX - 8,
            cap: 64,
        },
    ] {
        let r = scan(&img, area, 0, |_, _| true);
        assert!(r.bad_target && r.entries.is_empty());
    }
}

#[test]
fn targets_beyond_56_bits_are_refused() {
    let sp = SimPool::new();
    let mut w = LogWriter::new(AREA, 1);
    let before = sp.bytes();
    assert!(
        sp.append(&mut w, EntryKind::Copy, 1 << OFFSET_BITS, &[1; 8])
            .is_err()
    );
    assert_eq!(sp.bytes(), before);
    assert!(w.is_empty());
}

/// Regression: `append` accepted an empty `Snapshot`/`Copy` payload but
/// `scan` called such an entry damage (`bad_target`), so one empty append
/// made `lane::recover` refuse the whole pool with `LaneDamaged`.
#[test]
fn empty_payload_entry_is_not_damage() {
    for kind in [EntryKind::Snapshot, EntryKind::Copy] {
        let sp = SimPool::new();
        let mut w = LogWriter::new(AREA, 2);
        let off = sp.append(&mut w, kind, 0x9000, &[]).unwrap();
        assert_eq!(off, AREA.off + ENTRY_HEADER);
        sp.append(&mut w, kind, 0x9100, &[7; 8]).unwrap();
        let r = sp.scan(AREA, 2);
        assert!(!r.bad_target, "{kind:?} with an empty payload is damage");
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[0].len, 0);
        assert_eq!(r.entries[1].payload_off, AREA.off + 2 * ENTRY_HEADER);
    }
}

#[test]
fn a_log_continues_through_chained_areas() {
    let sp = SimPool::new();
    let first = LogArea {
        off: 0x8000,
        cap: 512,
    };
    let second = LogArea {
        off: 0x20000,
        cap: 1024,
    };
    let third = LogArea {
        off: 0x30000,
        cap: 4096,
    };
    let mut w = LogWriter::new(first, 11);
    let mut want = Vec::new();
    let mut chained = Vec::new();
    for i in 0..40u64 {
        let data = payload(i as usize, 40 + i as usize);
        if entry_size(data.len()) > w.remaining() {
            let next = if chained.is_empty() { second } else { third };
            // SAFETY: the test owns the whole buffer.
            unsafe { w.chain(&sp.p, next).unwrap() };
            chained.push(next);
        }
        sp.append(&mut w, EntryKind::Copy, 0x40000 + i * 256, &data)
            .unwrap();
        want.push((0x40000 + i * 256, data));
    }
    // SAFETY: as above.
    unsafe { w.append_commit(&sp.p).unwrap() };
    assert_eq!(chained, vec![second, third]);
    sp.p.drain().unwrap();
    let r = sp.scan(first, 11);
    assert!(r.committed, "the commit record counts entries across areas");
    assert!(!r.bad_target);
    assert_eq!(r.areas, chained);
    let img = sp.bytes();
    let got: Vec<(u64, Vec<u8>)> = r
        .entries
        .iter()
        .map(|e| {
            (
                e.target,
                img[e.payload_off..e.payload_off + e.len as usize].to_vec(),
            )
        })
        .collect();
    assert_eq!(got, want);
    // Another key (another lane or generation) does not follow the chain.
    assert!(sp.scan(first, 12).entries.is_empty());
}

#[test]
fn a_continue_entry_out_of_bounds_is_damage() {
    let sp = SimPool::new();
    let first = LogArea {
        off: 0x8000,
        cap: 512,
    };
    let mut w = LogWriter::new(first, 5);
    sp.append(&mut w, EntryKind::Copy, 0x40000, &[1; 16])
        .unwrap();
    // SAFETY: the test owns the whole buffer.
    unsafe {
        w.chain(
            &sp.p,
            LogArea {
                off: 0x20000,
                cap: 1024,
            },
        )
        .unwrap()
    };
    sp.p.drain().unwrap();
    let img = sp.bytes();
    // Reading with a target check that refuses the overflow area.
    let r = scan(&img, first, 5, |o, _| o >= 0x40000);
    assert!(r.bad_target);
    assert_eq!(r.entries.len(), 1, "entries before the bad link kept");
    // Too small areas cannot be chained to.
    // SAFETY: as above.
    let e = unsafe {
        w.chain(
            &sp.p,
            LogArea {
                off: 0x28000,
                cap: 64,
            },
        )
    };
    assert!(e.is_err());
}

#[test]
fn batched_appends_flush_each_line_once_and_only_on_flush() {
    let sp = SimPool::new();
    let area = LogArea {
        off: 4096,
        cap: 1024,
    };
    let mut w = LogWriter::new_batched(area, 9);
    let sim = sp.p.sim().unwrap();
    sim.reset_counters();
    for i in 0..5u64 {
        sp.append(&mut w, EntryKind::Set64, 0x2000 + 8 * i, &i.to_le_bytes())
            .unwrap();
    }
    let info = CommitInfo {
        seq: 3,
        n_undo: 0,
        data_crc: 0xabcd,
        flags: CommitInfo::DATA_CRC,
    };
    // SAFETY: as in `SimPool::append`.
    unsafe { w.append_commit_info(&sp.p, &info) }.unwrap();
    assert_eq!(sim.counters().flush_calls, 0, "appends flushed nothing");
    sp.p.drain().unwrap();
    let persisted = sim.persisted_image();
    assert!(
        scan(&persisted, area, 9, |_, _| true).entries.is_empty(),
        "unflushed entries became durable"
    );
    w.flush(&sp.p);
    // 5 entries of 24 bytes and a 40-byte record: 160 bytes, 3 lines.
    let c = sim.counters();
    assert_eq!((c.flush_calls, c.flushed_lines), (1, 3));
    sp.p.drain().unwrap();
    let r = scan(&sim.persisted_image(), area, 9, |_, _| true);
    assert_eq!(r.entries.len(), 5);
    assert!(r.committed);
    assert_eq!(r.commit, Some(info));
    // A second flush has nothing left to flush.
    sim.reset_counters();
    w.flush(&sp.p);
    assert_eq!(sim.counters().flush_calls, 0);
}

#[test]
fn batched_entries_of_every_small_size_round_trip_with_zero_padding() {
    // Every payload length a small entry can have (built a word at a
    // time), and the first lengths past it (copied in two pieces).
    let sp = SimPool::new();
    let mut w = LogWriter::new_batched(AREA, 5);
    // Garbage where the entries go: the padding must be written, not left.
    let junk = vec![0xa5u8; 64 << 10];
    sp.append(
        &mut LogWriter::new(AREA, 4),
        EntryKind::Snapshot,
        0,
        &junk[..40_000],
    )
    .unwrap();
    let mut want = Vec::new();
    for n in (0..=SMALL_ENTRY + 9).chain([SMALL_ENTRY + 100]) {
        let data = payload(n, n);
        let target = 0x1_0000 + 8 * n as u64;
        sp.append(&mut w, EntryKind::Snapshot, target, &data)
            .unwrap();
        want.push((EntryKind::Snapshot, target, data));
    }
    w.flush(&sp.p);
    sp.p.drain().unwrap();
    let img = sp.p.sim().unwrap().persisted_image();
    let r = scan(&img, AREA, 5, |_, _| true);
    assert_eq!(decoded(&img, &r), want);
    // A small entry is streamed in whole words, its padding zeroed; a
    // larger one's padding is neither written nor read (no checksum
    // covers it).
    for e in r.entries.iter().filter(|e| e.len as usize <= SMALL_ENTRY) {
        let end = e.payload_off + e.len as usize;
        assert!(
            img[end..end.next_multiple_of(8)].iter().all(|&b| b == 0),
            "padding after a {}-byte payload is not zero",
            e.len
        );
    }
}

#[test]
fn commit_info_round_trips_and_rejects_unknown_bits() {
    let info = CommitInfo {
        seq: u64::MAX - 1,
        n_undo: 7,
        data_crc: 0xdead_beef,
        flags: CommitInfo::DATA_CRC,
    };
    assert_eq!(CommitInfo::decode(&info.encode()), Some(info));
    let mut b = info.encode();
    b[16] |= 2; // an unknown flag
    assert_eq!(CommitInfo::decode(&b), None);
    let mut b = info.encode();
    b[23] = 1; // reserved bytes must be zero
    assert_eq!(CommitInfo::decode(&b), None);
    assert_eq!(CommitInfo::decode(&info.encode()[..20]), None);
}
