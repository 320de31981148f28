//! The per-transaction bookkeeping sets: byte ranges already covered by a
//! snapshot, and lock stripes held.
//!
//! Both are kept in a transaction's reused state, so they must not allocate
//! once warmed up, and both serve a common case of a handful of entries
//! (one or two objects per transaction) as well as a rare one of
//! hundreds of thousands. So each is a small sorted `Vec` (binary search,
//! capacity kept across transactions) that moves into a map once it grows
//! past a threshold, keeping large transactions O(n log n) instead of the
//! O(n^2) that inserting into the middle of a long `Vec` would cost.

use crate::locks::{Held, Mode};
use std::collections::BTreeMap;

/// Ranges above this count move from the sorted `Vec` to a `BTreeMap`.
const SMALL_RANGES: usize = 64;
/// Stripes above this count move from the sorted `Vec` to a hash map (one
/// 4 KiB object is 64 stripes: it still fits).
const SMALL_STRIPES: usize = 128;
/// A map or `Vec` grown beyond this many entries is dropped at `clear`
/// rather than kept: one huge transaction must not pin its memory in
/// every thread that ran it.
const KEEP_CAPACITY: usize = 4096;

/// Disjoint, non-adjacent half-open byte ranges (adjacent or overlapping
/// inserts merge).
#[derive(Debug, Default)]
pub(super) struct RangeSet {
    /// Sorted by start while `big` is empty.
    small: Vec<(u64, u64)>,
    /// start -> end, used (and `small` empty) once the set is large.
    big: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// Forgets every range, keeping the small `Vec`'s capacity.
    pub(super) fn clear(&mut self) {
        if self.small.capacity() > KEEP_CAPACITY {
            self.small = Vec::new();
        }
        self.small.clear();
        // `BTreeMap::clear` drops a whole (empty) map: skip it when empty.
        if !self.big.is_empty() {
            self.big.clear();
        }
    }

    /// Whether no range is in the set.
    pub(super) fn is_empty(&self) -> bool {
        self.small.is_empty() && self.big.is_empty()
    }

    /// Number of disjoint ranges.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.small.len() + self.big.len()
    }

    /// The ranges, sorted.
    #[cfg(test)]
    pub(super) fn to_vec(&self) -> Vec<(u64, u64)> {
        let mut v = self.small.clone();
        v.extend(self.big.iter().map(|(&s, &e)| (s, e)));
        v
    }

    /// The first part of `cur..b` not in the set, if any. Calling it again
    /// from the end of the returned gap walks all gaps of a range, each
    /// step O(log n), without a buffer.
    #[inline]
    pub(super) fn next_gap(&self, cur: u64, b: u64) -> Option<(u64, u64)> {
        // An empty range (the walk's last step), or nothing covered yet
        // (no snapshot, no fresh block): answered inline, without a call.
        if cur >= b {
            return None;
        }
        if self.is_empty() {
            return Some((cur, b));
        }
        self.next_gap_in(cur, b)
    }

    /// [`next_gap`](Self::next_gap) in a set that is not empty.
    fn next_gap_in(&self, mut cur: u64, b: u64) -> Option<(u64, u64)> {
        if self.big.is_empty() {
            // First range ending after `cur`: it contains `cur` or lies
            // wholly after it.
            let i = self.small.partition_point(|r| r.1 <= cur);
            let mut next = self.small.get(i).copied();
            if let Some((s, e)) = next
                && s <= cur
            {
                cur = e;
                next = self.small.get(i + 1).copied();
            }
            if cur >= b {
                return None;
            }
            return Some((cur, next.map_or(b, |(s, _)| s.min(b))));
        }
        if let Some((_, &e)) = self.big.range(..=cur).next_back()
            && e > cur
        {
            cur = e;
        }
        if cur >= b {
            return None;
        }
        let end = self.big.range(cur..b).next().map_or(b, |(&s, _)| s);
        Some((cur, end))
    }

    /// Adds `a..b`, merging it with overlapping and adjacent ranges.
    #[inline]
    pub(super) fn insert(&mut self, a: u64, b: u64) {
        if a >= b {
            return;
        }
        // The first range of a transaction: inline, without a search.
        if self.small.is_empty() && self.big.is_empty() {
            self.small.push((a, b));
            return;
        }
        self.insert_in(a, b);
    }

    /// [`insert`](Self::insert) of a non-empty range.
    fn insert_in(&mut self, a: u64, b: u64) {
        if self.big.is_empty() {
            let v = &mut self.small;
            // Ranges `i..j` touch `a..b`: they end at or after `a` and
            // start at or before `b`.
            let i = v.partition_point(|r| r.1 < a);
            let j = i + v[i..].partition_point(|r| r.0 <= b);
            if i == j {
                if v.len() < SMALL_RANGES {
                    v.insert(i, (a, b));
                    return;
                }
                // Too many for the `Vec`: move to the map, then insert.
                self.big.extend(v.drain(..));
            } else {
                v[i] = (v[i].0.min(a), v[j - 1].1.max(b));
                v.drain(i + 1..j);
                return;
            }
        }
        let (mut a, mut b) = (a, b);
        if let Some((&s, &e)) = self.big.range(..=a).next_back()
            && e >= a
        {
            a = s;
            b = b.max(e);
        }
        // Each range swallowed is found and removed in O(log n).
        while let Some((&s, _)) = self.big.range(a..=b).next() {
            if let Some(e) = self.big.remove(&s) {
                b = b.max(e);
            }
        }
        self.big.insert(a, b);
    }
}

/// The lock stripes one transaction holds, with the mode of each.
#[derive(Debug, Default)]
pub(super) struct StripeSet {
    /// Sorted by stripe while `big` is empty.
    small: Vec<(u32, Mode)>,
    /// Used (and `small` empty) once the set is large.
    big: Held,
    /// Scratch of `take_all_or_none`: the stripes it took so far.
    journal: Vec<u32>,
    /// Scratch of `update_run`: records new in the current run.
    pending: Vec<(u32, Mode)>,
}

impl StripeSet {
    /// Whether no stripe is held.
    pub(super) fn is_empty(&self) -> bool {
        self.small.is_empty() && self.big.is_empty()
    }

    /// Forgets every stripe (the caller unlocked them), keeping capacity.
    pub(super) fn clear(&mut self) {
        if self.small.capacity() > KEEP_CAPACITY {
            self.small = Vec::new();
        }
        self.small.clear();
        if self.big.capacity() > KEEP_CAPACITY {
            self.big = Held::default();
        }
        if !self.big.is_empty() {
            self.big.clear();
        }
    }

    /// Every stripe held and its mode, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&u32, &Mode)> + '_ {
        self.small
            .iter()
            .map(|(s, m)| (s, m))
            .chain(self.big.iter())
    }

    /// The mode `s` is held in, if it is.
    fn mode_of(&self, s: u32) -> Option<Mode> {
        if self.big.is_empty() {
            self.small
                .binary_search_by_key(&s, |e| e.0)
                .ok()
                .map(|i| self.small[i].1)
        } else {
            self.big.get(&s).copied()
        }
    }

    /// Whether `s` is held exclusively.
    pub(super) fn holds_exclusive(&self, s: u32) -> bool {
        self.mode_of(s) == Some(Mode::Exclusive)
    }

    /// Whether `s` is held (in any mode).
    #[cfg(test)]
    pub(super) fn contains(&self, s: u32) -> bool {
        self.mode_of(s).is_some()
    }

    /// Looks `s` up once: `f` gets the mode it is held in (if it is) and
    /// returns the mode to record from now on (`None`: leave the record as
    /// it is), or an error, which is returned with the set unchanged.
    #[cfg(test)]
    pub(super) fn update<E>(
        &mut self,
        s: u32,
        f: impl FnOnce(Option<Mode>) -> Result<Option<Mode>, E>,
    ) -> Result<(), E> {
        let mut f = Some(f);
        self.update_run(std::iter::once(s), |_, m| match f.take() {
            Some(f) => f(m),
            None => Ok(None),
        })
    }

    /// [`update`](Self::update) for each stripe of `run` in turn, stopping
    /// at the first error (the stripes before it stay updated). Stripes of
    /// a range come in ascending order, so the position after the last
    /// one is tried first, and the new records are merged in once at the
    /// end: a run of `n` stripes costs O(n + held), not n binary searches
    /// and n insertions.
    pub(super) fn update_run<E>(
        &mut self,
        run: impl Iterator<Item = u32>,
        mut f: impl FnMut(u32, Option<Mode>) -> Result<Option<Mode>, E>,
    ) -> Result<(), E> {
        if !self.big.is_empty() {
            return Self::update_big(&mut self.big, run, f);
        }
        if run.size_hint() == (1, Some(1)) {
            return self.update_one(run, f);
        }
        if self.small.is_empty() && run.size_hint().1.is_some_and(|n| n <= SMALL_STRIPES) {
            // Nothing held yet (a transaction's first lock): every stripe
            // is new, and they come in ascending order unless the run
            // wrapped around the table.
            let v = &mut self.small;
            let mut result = Ok(());
            for s in run {
                match f(s, None) {
                    Ok(Some(m)) => v.push((s, m)),
                    Ok(None) => {}
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if !v.is_sorted_by_key(|e| e.0) {
                v.sort_unstable_by_key(|e| e.0);
            }
            return result;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.clear();
        let v = &mut self.small;
        let mut hint = 0usize;
        let mut result = Ok(());
        for s in run {
            // `v` does not change during the run: `hint` is the lower
            // bound of the previous stripe, or just past it.
            let at = if hint < v.len() && v[hint].0 == s {
                Ok(hint)
            } else if hint <= v.len()
                && (hint == 0 || v[hint - 1].0 < s)
                && (hint == v.len() || v[hint].0 > s)
            {
                Err(hint)
            } else {
                v.binary_search_by_key(&s, |e| e.0)
            };
            let (i, held) = match at {
                Ok(i) => (i + 1, Some(v[i].1)),
                Err(i) => (i, None),
            };
            hint = i;
            match f(s, held) {
                Ok(None) => {}
                Ok(Some(m)) if held.is_some() => v[i - 1].1 = m,
                Ok(Some(m)) => pending.push((s, m)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.merge_pending(&mut pending);
        if pending.capacity() <= KEEP_CAPACITY {
            self.pending = pending;
        }
        result
    }

    /// `update_run` for a run of one stripe (a word, a pointer, most small
    /// objects) while the set is a `Vec`: one binary search and at most
    /// one insertion, without the run's scratch and merge.
    fn update_one<E>(
        &mut self,
        run: impl Iterator<Item = u32>,
        mut f: impl FnMut(u32, Option<Mode>) -> Result<Option<Mode>, E>,
    ) -> Result<(), E> {
        for s in run {
            let v = &mut self.small;
            match v.binary_search_by_key(&s, |e| e.0) {
                Ok(i) => {
                    if let Some(m) = f(s, Some(v[i].1))? {
                        v[i].1 = m;
                    }
                }
                Err(i) => {
                    if let Some(m) = f(s, None)? {
                        if v.len() < SMALL_STRIPES {
                            v.insert(i, (s, m));
                        } else {
                            self.big.extend(v.drain(..));
                            self.big.insert(s, m);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds the new records of a run (not held before, distinct) to the
    /// sorted `Vec`, or moves everything to the map if they do not fit.
    fn merge_pending(&mut self, pending: &mut Vec<(u32, Mode)>) {
        if pending.is_empty() {
            return;
        }
        let v = &mut self.small;
        if v.len() + pending.len() > SMALL_STRIPES {
            self.big.extend(v.drain(..));
            self.big.extend(pending.drain(..));
            return;
        }
        // A run that wrapped around the stripe table is not ascending.
        if !pending.is_sorted_by_key(|e| e.0) {
            pending.sort_unstable_by_key(|e| e.0);
        }
        if v.last().is_none_or(|l| l.0 < pending[0].0) {
            v.extend_from_slice(pending);
            pending.clear();
            return;
        }
        // Merge from the back, in place.
        let (mut i, mut j) = (v.len(), pending.len());
        v.resize(i + j, pending[0]);
        let mut k = v.len();
        while j > 0 {
            k -= 1;
            if i > 0 && v[i - 1].0 > pending[j - 1].0 {
                v[k] = v[i - 1];
                i -= 1;
            } else {
                v[k] = pending[j - 1];
                j -= 1;
            }
        }
        pending.clear();
    }

    /// `update_run` once the set is a map.
    fn update_big<E>(
        big: &mut Held,
        run: impl Iterator<Item = u32>,
        mut f: impl FnMut(u32, Option<Mode>) -> Result<Option<Mode>, E>,
    ) -> Result<(), E> {
        for s in run {
            match big.entry(s) {
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    if let Some(m) = f(s, Some(*o.get()))? {
                        o.insert(m);
                    }
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    if let Some(m) = f(s, None)? {
                        v.insert(m);
                    }
                }
            }
        }
        Ok(())
    }

    /// Takes every stripe of `it` not held yet with `take` and records it
    /// held exclusively, all or none: when `take` fails for one, the
    /// stripes taken so far are given back with `untake` and forgotten,
    /// and the result is false. Stripes already held stay as they are.
    pub(super) fn take_all_or_none(
        &mut self,
        it: impl Iterator<Item = u32>,
        mut take: impl FnMut(u32) -> bool,
        mut untake: impl FnMut(u32),
    ) -> bool {
        let mut journal = std::mem::take(&mut self.journal);
        journal.clear();
        let ok = self
            .update_run(it, |s, held| match held {
                Some(_) => Ok(None),
                None if take(s) => {
                    journal.push(s);
                    Ok(Some(Mode::Exclusive))
                }
                None => Err(()),
            })
            .is_ok();
        if !ok {
            for &s in &journal {
                untake(s);
                self.remove(s);
            }
        }
        journal.clear();
        if journal.capacity() <= KEEP_CAPACITY {
            self.journal = journal;
        }
        ok
    }

    /// Records `s` as held in `m`.
    #[cfg(test)]
    pub(super) fn insert(&mut self, s: u32, m: Mode) {
        let r: Result<(), std::convert::Infallible> = self.update(s, |_| Ok(Some(m)));
        match r {
            Ok(()) => {}
            Err(never) => match never {},
        }
    }

    /// Forgets `s` (the caller unlocked it).
    pub(super) fn remove(&mut self, s: u32) {
        if self.big.is_empty() {
            if let Ok(i) = self.small.binary_search_by_key(&s, |e| e.0) {
                self.small.remove(i);
            }
        } else {
            self.big.remove(&s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(c: &RangeSet, a: u64, b: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut cur = a;
        while let Some((ga, gb)) = c.next_gap(cur, b) {
            assert!(
                ga < gb && ga >= cur && gb <= b,
                "gap {ga}..{gb} in {cur}..{b}"
            );
            out.push((ga, gb));
            cur = gb;
        }
        out
    }

    #[test]
    fn gaps_are_found_and_ranges_merge() {
        let mut c = RangeSet::default();
        assert_eq!(gaps(&c, 10, 20), vec![(10, 20)]);
        c.insert(12, 14);
        c.insert(16, 18);
        assert_eq!(gaps(&c, 10, 20), vec![(10, 12), (14, 16), (18, 20)]);
        assert_eq!(gaps(&c, 13, 17), vec![(14, 16)]);
        assert_eq!(gaps(&c, 12, 14), vec![]);
        c.insert(14, 16);
        assert_eq!(c.to_vec(), vec![(12, 18)], "adjacent ranges merge");
        c.insert(0, 100);
        assert_eq!(c.to_vec(), vec![(0, 100)]);
        c.clear();
        assert_eq!(c.len(), 0);
        assert_eq!(gaps(&c, 0, 5), vec![(0, 5)]);
    }

    /// Small and large sets agree with a byte-per-bit model, across the
    /// move from `Vec` to map.
    #[test]
    fn range_set_matches_a_model_small_and_large() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for round in 0..40 {
            let n = if round % 2 == 0 { 30 } else { 400 };
            let space = 4000u64;
            let mut model = vec![false; space as usize];
            let mut c = RangeSet::default();
            for _ in 0..n {
                let a = next(space - 1);
                let b = (a + 1 + next(12)).min(space);
                // The gaps reported are exactly the uncovered bytes.
                let (qa, qb) = (next(space - 1), 0);
                let qb = (qa + 1 + next(60) + qb).min(space);
                let want: Vec<u64> = (qa..qb).filter(|&x| !model[x as usize]).collect();
                let got: Vec<u64> = gaps(&c, qa, qb)
                    .into_iter()
                    .flat_map(|(x, y)| x..y)
                    .collect();
                assert_eq!(got, want);
                c.insert(a, b);
                for x in a..b {
                    model[x as usize] = true;
                }
            }
            // Stored ranges are disjoint and non-adjacent, and match.
            let v = c.to_vec();
            assert!(v.windows(2).all(|w| w[0].1 < w[1].0), "{v:?}");
            let mut m2 = vec![false; space as usize];
            for (a, b) in v {
                for x in a..b {
                    m2[x as usize] = true;
                }
            }
            assert_eq!(m2, model);
            if n > SMALL_RANGES * 2 {
                assert!(!c.big.is_empty(), "a large set moved to the map");
            }
        }
    }

    #[test]
    fn many_ranges_stay_fast_enough_to_finish() {
        // 200k disjoint ranges in descending order: each insert at the
        // front, O(n^2) for a `Vec`, O(n log n) here.
        let mut c = RangeSet::default();
        for k in (0..200_000u64).rev() {
            c.insert(k * 4, k * 4 + 2);
        }
        assert_eq!(c.len(), 200_000);
        assert_eq!(c.next_gap(0, 8), Some((2, 4)));
    }

    #[test]
    fn stripe_set_small_and_large() {
        let mut h = StripeSet::default();
        assert!(h.is_empty());
        for s in (0..300u32).rev() {
            h.insert(s * 3, Mode::Shared);
            assert!(h.contains(s * 3));
            if s * 3 + 1 < 900 {
                assert!(!h.contains(s * 3 + 1));
            }
        }
        assert!(!h.big.is_empty(), "moved to the map past the threshold");
        h.insert(3, Mode::Exclusive);
        let e: Result<(), ()> = h.update(3, |m| {
            assert_eq!(m, Some(Mode::Exclusive));
            Ok(None)
        });
        assert_eq!(e, Ok(()));
        assert_eq!(h.update(4, |_| Err::<Option<Mode>, _>(7)), Err(7));
        assert!(!h.contains(4), "a failed update records nothing");
        h.remove(3);
        assert!(!h.contains(3));
        assert_eq!(h.iter().count(), 299);
        h.clear();
        assert!(h.is_empty());
        // Small again after clear.
        h.insert(9, Mode::Shared);
        h.insert(2, Mode::Exclusive);
        assert_eq!(h.small, vec![(2, Mode::Exclusive), (9, Mode::Shared)]);
        assert!(h.big.is_empty());
        let e: Result<(), ()> = h.update(9, |m| {
            assert_eq!(m, Some(Mode::Shared));
            Ok(Some(Mode::Exclusive))
        });
        assert_eq!(e, Ok(()));
        assert_eq!(h.small[1], (9, Mode::Exclusive));
    }

    /// Runs of stripes (ascending, as ranges give them) over existing
    /// records: each stripe is seen with its true mode, and the records
    /// match a model, across the move to the map.
    #[test]
    fn runs_see_every_stripe_once_with_its_mode() {
        let mut rng = 99u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n) as u32
        };
        let mut h = StripeSet::default();
        let mut model = std::collections::BTreeMap::new();
        for _ in 0..200 {
            let (a, n) = (next(400), 1 + next(20));
            let mode = if next(2) == 0 {
                Mode::Shared
            } else {
                Mode::Exclusive
            };
            let mut seen = Vec::new();
            let r: Result<(), ()> = h.update_run(a..a + n, |s, held| {
                assert_eq!(held, model.get(&s).copied(), "stripe {s}");
                seen.push(s);
                Ok(match held {
                    Some(Mode::Exclusive) => None,
                    _ => Some(mode),
                })
            });
            assert_eq!(r, Ok(()));
            assert_eq!(seen, (a..a + n).collect::<Vec<_>>());
            for s in a..a + n {
                let e = model.entry(s).or_insert(mode);
                if *e == Mode::Shared {
                    *e = mode;
                }
            }
            let mut got: Vec<(u32, Mode)> = h.iter().map(|(&s, &m)| (s, m)).collect();
            got.sort_unstable_by_key(|e| e.0);
            assert_eq!(got, model.iter().map(|(&s, &m)| (s, m)).collect::<Vec<_>>());
        }
        assert!(!h.big.is_empty(), "grew past the small threshold");
    }

    #[test]
    fn take_all_or_none_gives_back_what_it_took() {
        let mut h = StripeSet::default();
        h.insert(12, Mode::Shared);
        let locked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        // Stripe 15 cannot be taken: 10, 11, 13, 14 are given back, the
        // held 12 is left alone.
        let ok = h.take_all_or_none(
            10..20,
            |s| s != 15 && locked.borrow_mut().insert(s),
            |s| assert!(locked.borrow_mut().remove(&s), "gave back {s}, never taken"),
        );
        assert!(!ok);
        assert!(locked.borrow().is_empty(), "{locked:?}");
        assert_eq!(h.small, vec![(12, Mode::Shared)]);
        let mut locked = std::collections::BTreeSet::new();
        assert!(h.take_all_or_none(10..20, |s| locked.insert(s), |_| panic!()));
        assert_eq!(locked.len(), 9, "all but the held 12");
        assert_eq!(h.iter().count(), 10);
        assert!(h.contains(12) && h.contains(19));
    }

    /// A run that wraps around the table (not ascending), and one that
    /// fails half way: what was done before the failure stays recorded.
    #[test]
    fn wrapped_and_failing_runs_keep_the_set_sorted() {
        let mut h = StripeSet::default();
        h.insert(3, Mode::Shared);
        h.insert(9, Mode::Shared);
        let r: Result<(), ()> = h.update_run([7u32, 8, 9, 10, 0, 1].into_iter(), |_, held| {
            Ok(held.is_none().then_some(Mode::Exclusive))
        });
        assert_eq!(r, Ok(()));
        let want = [
            (0, 'X'),
            (1, 'X'),
            (3, 'S'),
            (7, 'X'),
            (8, 'X'),
            (9, 'S'),
            (10, 'X'),
        ];
        let want: Vec<(u32, Mode)> = want
            .iter()
            .map(|&(s, m)| {
                (
                    s,
                    if m == 'X' {
                        Mode::Exclusive
                    } else {
                        Mode::Shared
                    },
                )
            })
            .collect();
        assert_eq!(h.small, want);
        let r = h.update_run(4u32..7, |s, _| {
            if s == 6 {
                Err(s)
            } else {
                Ok(Some(Mode::Shared))
            }
        });
        assert_eq!(r, Err(6));
        assert!(h.contains(4) && h.contains(5) && !h.contains(6));
        assert!(h.small.windows(2).all(|w| w[0].0 < w[1].0), "{:?}", h.small);
        // The same from an empty set (a transaction's first lock).
        let mut h = StripeSet::default();
        let r: Result<(), ()> = h.update_run([9u32, 10, 0, 1].into_iter(), |_, _| {
            Ok(Some(Mode::Exclusive))
        });
        assert_eq!(r, Ok(()));
        let got: Vec<u32> = h.small.iter().map(|e| e.0).collect();
        assert_eq!(got, [0, 1, 9, 10]);
        let mut h = StripeSet::default();
        let r = h.update_run([5u32, 6, 0].into_iter(), |s, held| {
            assert_eq!(held, None);
            if s == 0 {
                Err(s)
            } else {
                Ok(Some(Mode::Shared))
            }
        });
        assert_eq!(r, Err(0));
        assert_eq!(h.small, vec![(5, Mode::Shared), (6, Mode::Shared)]);
    }
}
