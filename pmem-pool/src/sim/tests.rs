use super::*;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

const L: usize = CACHE_LINE;

/// A heap buffer standing in for a mapping, written only through its raw
/// pointer (as the pool writes the mapping), freed after the domain.
struct Buf {
    ptr: *mut u8,
    len: usize,
}

impl Buf {
    fn new(len: usize) -> Self {
        let b = vec![0u8; len].into_boxed_slice();
        Buf {
            ptr: Box::into_raw(b).cast::<u8>(),
            len,
        }
    }

    fn fill(&self, off: usize, byte: u8, len: usize) {
        assert!(off + len <= self.len);
        // SAFETY: off..off+len lies inside the buffer; tests write from one
        // thread at a time.
        unsafe { std::ptr::write_bytes(self.ptr.add(off), byte, len) };
    }

    fn domain(&self) -> SimDomain {
        // SAFETY: the buffer outlives the domain (declared after it, so
        // dropped before it) and nothing writes it during the call.
        unsafe { SimDomain::new(self.ptr, self.len) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from Box::into_raw of a boxed slice of len.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
    }
}

/// An image of `lines` lines, line `i` filled with `content[i]`.
fn image(content: &[u8]) -> Vec<u8> {
    content.iter().flat_map(|&b| [b; L]).collect()
}

#[test]
fn counters_exact_for_known_sequence() {
    let buf = Buf::new(4 * L);
    let d = buf.domain();
    buf.fill(L - 1, 1, 2);
    // 1 byte at the end of line 0, 1 byte at the start of line 1.
    d.flush(L - 1, 1);
    d.flush(L, 1);
    assert_eq!(
        d.counters(),
        SimCounters {
            flush_calls: 2,
            flushed_lines: 2,
            fences: 0,
            persisted_bytes: 0
        }
    );
    // One flush straddling the same two lines: 2 more lines.
    d.flush(L - 1, 2);
    d.drain();
    assert_eq!(
        d.counters(),
        SimCounters {
            flush_calls: 3,
            flushed_lines: 4,
            fences: 1,
            persisted_bytes: 2 * L as u64
        }
    );
    // Empty flushes and flushes past the end count nothing.
    d.flush(0, 0);
    d.flush(4 * L, 8);
    d.drain();
    assert_eq!(d.counters().flush_calls, 3);
    assert_eq!(d.counters().fences, 2);
    assert_eq!(d.counters().persisted_bytes, 2 * L as u64);
    d.reset_counters();
    assert_eq!(d.counters(), SimCounters::default());
    assert!(d.is_fully_persisted());
}

#[test]
fn unflushed_line_stays_dirty_flushed_line_persists() {
    let buf = Buf::new(8 * L);
    let d = buf.domain();
    buf.fill(2 * L + 5, 7, 1);
    buf.fill(5 * L, 9, L);
    d.flush(2 * L + 5, 1);
    assert_eq!(d.dirty_lines(), vec![2, 5]);
    d.drain();
    let p = d.persisted_image();
    assert_eq!(p[2 * L + 5], 7, "flushed and drained line is persisted");
    assert!(
        p[5 * L..6 * L].iter().all(|&b| b == 0),
        "unflushed line is not"
    );
    assert_eq!(d.dirty_lines(), vec![5]);
    assert!(!d.is_fully_persisted());
    d.flush(5 * L, L);
    d.drain();
    assert!(d.dirty_lines().is_empty());
    assert!(d.is_fully_persisted());
}

#[test]
fn flush_without_drain_is_not_persisted() {
    let buf = Buf::new(2 * L);
    let d = buf.domain();
    buf.fill(0, 3, 1);
    d.flush(0, 1);
    assert_eq!(d.persisted_image()[0], 0);
    assert_eq!(d.dirty_lines(), vec![0]);
}

#[test]
fn drain_copies_content_at_drain_time() {
    let buf = Buf::new(2 * L);
    let d = buf.domain();
    buf.fill(0, 1, 1);
    d.flush(0, 1);
    // A store after the flush but before the drain lands in the same line:
    // the drain makes the line's current content durable.
    buf.fill(1, 2, 1);
    d.drain();
    assert_eq!(&d.persisted_image()[..2], &[1, 2]);
}

#[test]
fn partial_last_line() {
    let buf = Buf::new(L + 36);
    let d = buf.domain();
    assert_eq!(d.lines(), 2);
    buf.fill(L + 35, 4, 1);
    assert_eq!(d.dirty_lines(), vec![1]);
    d.flush(L + 35, 10); // clamped to the pool
    d.drain();
    assert_eq!(d.counters().persisted_bytes, 36);
    assert_eq!(d.persisted_image()[L + 35], 4);
    assert!(d.is_fully_persisted());
}

#[test]
fn flush_of_thread_a_is_not_completed_by_drain_of_thread_b() {
    let buf = Buf::new(2 * L);
    let d = buf.domain();
    buf.fill(0, 5, L);
    std::thread::scope(|s| {
        s.spawn(|| d.flush(0, L)).join().unwrap();
    });
    d.drain(); // this thread flushed nothing
    assert_eq!(d.persisted_image()[0], 0);
    assert_eq!(d.counters().persisted_bytes, 0);
    // The same flush and drain on one thread persist the line.
    std::thread::scope(|s| {
        s.spawn(|| {
            d.flush(0, L);
            d.drain();
        })
        .join()
        .unwrap();
    });
    assert_eq!(d.persisted_image()[0], 5);
    assert!(d.is_fully_persisted());
}

#[test]
fn merge_ranges_sorts_and_merges() {
    let mut v = vec![5..7, 0..1, 1..2, 6..9, 11..12];
    merge_ranges(&mut v);
    assert_eq!(v, vec![0..2, 5..9, 11..12]);
}

#[test]
fn drain_hook_sees_every_drain_in_order() {
    use std::sync::Arc;
    let buf = Buf::new(L);
    let d = buf.domain();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    d.set_drain_hook(Some(Box::new(move |p: DrainPoint| {
        s2.lock().unwrap().push(p.seq)
    })));
    d.drain();
    d.drain();
    d.set_drain_hook(None);
    d.drain();
    assert_eq!(*seen.lock().unwrap(), vec![0, 1]);
}

#[test]
fn drain_hook_can_crash_the_workload_and_stays_installed() {
    let buf = Buf::new(L);
    let d = buf.domain();
    d.set_drain_hook(Some(Box::new(|p: DrainPoint| {
        if p.seq == 1 {
            panic!("simulated crash at drain 1");
        }
    })));
    buf.fill(0, 1, 1);
    d.flush(0, 1);
    d.drain();
    buf.fill(0, 2, 1);
    d.flush(0, 1);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.drain()));
    assert!(r.is_err());
    assert_eq!(
        d.persisted_image()[0],
        1,
        "the crashed drain persisted nothing"
    );
    assert_eq!(d.counters().fences, 1);
    // The hook is still called (seq 2 does not panic) and the pending line
    // of the crashed drain is completed now.
    d.drain();
    assert_eq!(d.persisted_image()[0], 2);
}

/// The two-drain scenario, 4 lines, all zero at start:
/// - write line 0 (=1) and line 1 (=2); flush line 0; drain  -> point 0
/// - write line 2 (=3); flush lines 1 and 2; drain             -> point 1
/// - write line 3 (=4), never flushed; take the trace          -> point 2
fn two_drain_trace() -> CrashTrace {
    let buf = Buf::new(4 * L);
    let d = buf.domain();
    d.start_trace();
    buf.fill(0, 1, L);
    buf.fill(L, 2, L);
    d.flush(0, L);
    d.drain();
    buf.fill(2 * L, 3, L);
    d.flush(L, 2 * L);
    d.drain();
    buf.fill(3 * L, 4, L);
    let t = d.take_trace().unwrap();
    assert!(d.take_trace().is_none());
    t
}

/// Every possible post-crash image, by hand.
fn two_drain_expected() -> BTreeSet<(usize, Vec<u8>)> {
    let mut e = BTreeSet::new();
    // Point 0: persisted = all zero; lines 0 and 1 dirty.
    for img in [[0, 0, 0, 0], [1, 0, 0, 0], [0, 2, 0, 0], [1, 2, 0, 0]] {
        e.insert((0, image(&img)));
    }
    // Point 1: persisted = line 0; lines 1 and 2 dirty.
    for img in [[1, 0, 0, 0], [1, 2, 0, 0], [1, 0, 3, 0], [1, 2, 3, 0]] {
        e.insert((1, image(&img)));
    }
    // Point 2 (end): persisted = lines 0..3; line 3 dirty.
    for img in [[1, 2, 3, 0], [1, 2, 3, 4]] {
        e.insert((2, image(&img)));
    }
    e
}

#[test]
fn trace_records_points_as_diffs() {
    let t = two_drain_trace();
    assert_eq!(t.points(), 3);
    let p0 = t.point(0).unwrap();
    assert_eq!(
        (p0.dirty_lines, &p0.persisted_lines[..]),
        (&[0, 1][..], &[0][..])
    );
    assert_eq!(p0.drain_seq, Some(0));
    let p1 = t.point(1).unwrap();
    assert_eq!(
        (p1.dirty_lines, &p1.persisted_lines[..]),
        (&[1, 2][..], &[1, 2][..])
    );
    let p2 = t.point(2).unwrap();
    assert_eq!(
        (p2.dirty_lines, &p2.persisted_lines[..]),
        (&[3][..], &[][..])
    );
    assert_eq!(p2.drain_seq, None);
    assert!(t.point(3).is_none());
    assert_eq!(t.initial_image(), &image(&[0, 0, 0, 0])[..]);
}

#[test]
fn exhaustive_crash_images_are_exactly_the_possible_ones() {
    let mut t = two_drain_trace();
    let opts = CrashOptions {
        exhaustive_up_to: 4,
        ..CrashOptions::default()
    };
    let mut got = Vec::new();
    let mut persisted_only = Vec::new();
    let r = t.for_each_image(&opts, |img| {
        got.push((img.point, img.bytes.to_vec()));
        if img.selection == Selection::Persisted {
            assert!(img.added_lines.is_empty());
            persisted_only.push((img.point, img.bytes.to_vec()));
        }
        ControlFlow::<()>::Continue(())
    });
    assert!(r.is_continue());
    assert_eq!(got.len(), 10, "no image twice");
    assert_eq!(got.len(), t.image_count(&opts));
    let got: BTreeSet<_> = got.into_iter().collect();
    assert_eq!(got, two_drain_expected());
    assert_eq!(
        persisted_only,
        vec![
            (0, image(&[0, 0, 0, 0])),
            (1, image(&[1, 0, 0, 0])),
            (2, image(&[1, 2, 3, 0]))
        ]
    );
}

#[test]
fn random_crash_images_are_possible_and_deterministic() {
    let opts = CrashOptions {
        random_subsets: 16,
        seed: 42,
        exhaustive_up_to: 0,
    };
    let expected = two_drain_expected();
    let run = || {
        let mut t = two_drain_trace();
        let mut got = Vec::new();
        let _ = t.for_each_image(&opts, |img| {
            got.push((img.point, img.selection, img.bytes.to_vec()));
            ControlFlow::<()>::Continue(())
        });
        assert_eq!(got.len(), t.image_count(&opts));
        got
    };
    let a = run();
    assert_eq!(a.len(), 3 * (1 + 16));
    for (point, _, bytes) in &a {
        assert!(
            expected.contains(&(*point, bytes.clone())),
            "impossible image at point {point}"
        );
    }
    // 16 draws over 4 subsets: with this seed every subset of point 0 shows.
    let at0: BTreeSet<_> = a.iter().filter(|x| x.0 == 0).map(|x| x.2.clone()).collect();
    assert_eq!(at0.len(), 4);
    assert_eq!(a, run(), "same seed, same images");
}

#[test]
fn with_image_builds_a_chosen_subset_at_any_point() {
    let mut t = two_drain_trace();
    let img = t.with_image(
        1,
        |line| line == 2,
        |img| {
            assert_eq!(img.selection, Selection::Chosen);
            assert_eq!(img.added_lines, &[2]);
            img.bytes.to_vec()
        },
    );
    assert_eq!(img.unwrap(), image(&[1, 0, 3, 0]));
    // Lines not dirty at the point are never added.
    let img = t.with_image(2, |_| true, |img| img.bytes.to_vec());
    assert_eq!(img.unwrap(), image(&[1, 2, 3, 4]));
    // Going back to an earlier point rebuilds from the initial image, and
    // the subset of the previous call was reverted.
    let img = t.with_image(0, |_| false, |img| img.bytes.to_vec());
    assert_eq!(img.unwrap(), image(&[0, 0, 0, 0]));
    assert!(t.with_image(3, |_| true, |_| ()).is_none());
}

#[test]
fn for_each_image_stops_at_break() {
    let mut t = two_drain_trace();
    let mut n = 0;
    let r = t.for_each_image(&CrashOptions::default(), |img| {
        n += 1;
        if img.point == 1 {
            ControlFlow::Break(img.point)
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(r, ControlFlow::Break(1));
    assert_eq!(n, 4 + 1, "point 0's 4 images, then the first of point 1");
}

#[test]
fn trace_of_nothing_has_one_clean_end_point() {
    let buf = Buf::new(2 * L);
    let d = buf.domain();
    d.start_trace();
    let mut t = d.take_trace().unwrap();
    assert_eq!(t.points(), 1);
    let mut n = 0;
    let _ = t.for_each_image(&CrashOptions::default(), |img| {
        assert_eq!(img.bytes, &[0u8; 2 * L][..]);
        n += 1;
        ControlFlow::<()>::Continue(())
    });
    assert_eq!(n, 1);
}

#[test]
fn partial_last_line_in_crash_images() {
    let buf = Buf::new(L + 8);
    let d = buf.domain();
    d.start_trace();
    buf.fill(L, 6, 8);
    let mut t = d.take_trace().unwrap();
    let mut imgs = Vec::new();
    let _ = t.for_each_image(&CrashOptions::default(), |img| {
        imgs.push(img.bytes.to_vec());
        ControlFlow::<()>::Continue(())
    });
    let mut full = vec![0u8; L + 8];
    full[L..].fill(6);
    assert_eq!(imgs, vec![vec![0u8; L + 8], full]);
}

#[test]
fn random_subsets_over_many_lines_are_consistent() {
    // 130 dirty lines: more than one 64-bit word of random choices.
    let n = 130;
    let buf = Buf::new(n * L);
    let d = buf.domain();
    d.start_trace();
    for i in 0..n {
        buf.fill(i * L, (i % 250) as u8 + 1, L);
    }
    let mut t = d.take_trace().unwrap();
    assert_eq!(t.point(0).unwrap().dirty_lines.len(), n);
    let opts = CrashOptions {
        random_subsets: 4,
        ..CrashOptions::default()
    };
    let mut sizes = Vec::new();
    let _ = t.for_each_image(&opts, |img| {
        let added: BTreeSet<usize> = img.added_lines.iter().copied().collect();
        for i in 0..n {
            let want = if added.contains(&i) {
                (i % 250) as u8 + 1
            } else {
                0
            };
            assert!(
                img.bytes[i * L..(i + 1) * L].iter().all(|&b| b == want),
                "line {i}"
            );
        }
        sizes.push(added.len());
        ControlFlow::<()>::Continue(())
    });
    assert_eq!(sizes[0], 0, "persisted image first");
    assert_eq!(sizes.len(), 5);
    // p = 1/2 per line: an empty or full subset of 130 lines would mean the
    // generator is broken (chance 2^-130 per subset).
    assert!(sizes[1..].iter().all(|&s| s > 0 && s < n), "{sizes:?}");
    // Lines past the first 64 are chosen too.
    let _ = t.with_image(
        0,
        |l| l >= 64,
        |img| assert_eq!(img.added_lines.len(), n - 64),
    );
}

#[test]
fn long_dirty_line_is_stored_once_and_changes_are_kept() {
    let buf = Buf::new(4 * L);
    let d = buf.domain();
    d.start_trace();
    buf.fill(3 * L, 7, L); // written, never flushed
    for i in 0..3u8 {
        buf.fill(0, i + 1, L);
        d.flush(0, L);
        d.drain();
    }
    buf.fill(3 * L, 8, 1); // line 3 changes at the end point
    let mut t = d.take_trace().unwrap();
    assert_eq!(t.points(), 4);
    // Line 0 three times (three contents), line 3 twice (two contents).
    assert_eq!(t.stored_lines(), 5);
    let mut l3 = vec![7u8; L];
    let img = t.with_image(2, |l| l == 3, |img| img.bytes[3 * L..].to_vec());
    assert_eq!(img.unwrap(), l3);
    l3[0] = 8;
    let img = t.with_image(3, |l| l == 3, |img| img.bytes[3 * L..].to_vec());
    assert_eq!(img.unwrap(), l3);
    let img = t.with_image(1, |l| l == 0, |img| img.bytes[0]);
    assert_eq!(img, Some(2));
    assert!(
        t.heap_bytes() >= 2 * 4 * L,
        "initial image and replay buffer"
    );
}
