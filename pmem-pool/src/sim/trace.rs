//! Crash traces: recording the drain points of a workload as diffs, and
//! replaying every possible post-crash image from them in one reused buffer.
//!
//! At each drain point `k` the recorder keeps the *dirty lines* `D_k` (lines
//! whose volatile content differs from the persisted image, with that
//! volatile content) and the subset of them this drain persists. With `P_0`
//! the persisted image when the trace started, `P_{k+1}` is `P_k` with the
//! lines persisted by drain `k` applied, and a crash at point `k` (just
//! before drain `k` completes) may leave `P_k` plus any subset of `D_k` on
//! the media: the lines pending for drain `k` are among `D_k`, since the
//! fence has not completed, and so is every other dirty line, since the
//! cache may have evicted it.
//!
//! Memory is `O(pool)` for `P_0` plus 64 bytes and a few words per dirty
//! line per point; replay keeps one image buffer and moves it forward by
//! applying lines (and back to `P_0` by one copy when asked for an earlier
//! point), and applies then reverts the lines of each subset, so an image
//! costs `O(lines added)`, not `O(pool)`.

use super::SimDomain;
use crate::persist::CACHE_LINE;
use std::ops::{ControlFlow, Range};

/// One recorded drain point (ranges index the recorder's arenas).
#[derive(Clone, Debug)]
struct PointRec {
    /// Dirty-entry indexes of the lines dirty at this point.
    dirty: Range<usize>,
    /// Range of `persists` holding the entries this drain persisted.
    persists: Range<usize>,
    /// The domain's drain sequence number, `None` for the end point.
    drain_seq: Option<u64>,
}

/// The arenas every point indexes.
#[derive(Debug)]
struct TraceData {
    /// Persisted image when the trace started (`P_0`).
    initial: Vec<u8>,
    /// Line index of each dirty entry.
    lines: Vec<usize>,
    /// Slot in `data` of each dirty entry's volatile content. A line still
    /// dirty with the same content as at the previous point shares its slot,
    /// so a line left dirty for a long time is stored once.
    slot: Vec<usize>,
    /// Line contents, `CACHE_LINE` bytes per slot (the tail of a partial
    /// last line is zero and never copied).
    data: Vec<u8>,
    /// Dirty-entry indexes persisted by a drain.
    persists: Vec<usize>,
    points: Vec<PointRec>,
}

/// Builds a trace while the domain runs (held inside the domain's lock).
pub(super) struct Recorder {
    t: TraceData,
}

impl Recorder {
    pub(super) fn new(initial: Vec<u8>) -> Self {
        Recorder {
            t: TraceData {
                initial,
                lines: Vec::new(),
                slot: Vec::new(),
                data: Vec::new(),
                persists: Vec::new(),
                points: Vec::new(),
            },
        }
    }

    /// Records a drain point: the dirty lines of `dom` against `persisted`,
    /// and which of them `persisting` (sorted, merged line ranges) persists.
    pub(super) fn record_point(
        &mut self,
        dom: &SimDomain,
        persisted: &[u8],
        persisting: &[Range<usize>],
        drain_seq: Option<u64>,
    ) {
        let t = &mut self.t;
        let first = t.lines.len();
        // The previous point's dirty entries, ascending like the scan.
        let mut prev = t.points.last().map_or(0..0, |p| p.dirty.clone());
        let mut line_buf = [0u8; CACHE_LINE];
        dom.scan_dirty(persisted, |line| {
            let n = dom.read_line(line, &mut line_buf);
            line_buf[n..].fill(0);
            while prev.start < prev.end && t.lines[prev.start] < line {
                prev.start += 1;
            }
            let reuse = (prev.start < prev.end && t.lines[prev.start] == line)
                .then(|| t.slot[prev.start])
                .filter(|&s| t.data[s * CACHE_LINE..][..n] == line_buf[..n]);
            let slot = reuse.unwrap_or_else(|| {
                t.data.extend_from_slice(&line_buf);
                t.data.len() / CACHE_LINE - 1
            });
            t.lines.push(line);
            t.slot.push(slot);
        });
        let dirty = first..t.lines.len();
        let pfirst = t.persists.len();
        // Both sides ascending: one merge pass.
        let mut r = persisting.iter().peekable();
        for e in dirty.clone() {
            let line = t.lines[e];
            while r.peek().is_some_and(|r| r.end <= line) {
                r.next();
            }
            if r.peek().is_some_and(|r| r.start <= line) {
                t.persists.push(e);
            }
        }
        t.points.push(PointRec {
            dirty,
            persists: pfirst..t.persists.len(),
            drain_seq,
        });
    }

    pub(super) fn finish(self) -> CrashTrace {
        CrashTrace {
            t: self.t,
            r: Replay {
                buf: Vec::new(),
                cursor: None,
                undo: Vec::new(),
                added: Vec::new(),
            },
        }
    }
}

/// How [`CrashTrace::for_each_image`] picks the images of each point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashOptions {
    /// Random subsets of the dirty lines per point (each line included with
    /// probability 1/2; a subset may be empty or repeat another).
    pub random_subsets: usize,
    /// Seed of the subset generator (splitmix64); the same seed and trace
    /// give the same images.
    pub seed: u64,
    /// Points with at most this many dirty lines get every non-empty subset
    /// (`2^n - 1` images) instead of random ones. Capped at 20.
    pub exhaustive_up_to: u32,
}

impl Default for CrashOptions {
    /// 8 random subsets per point, exhaustive up to 3 dirty lines, a fixed
    /// seed.
    fn default() -> Self {
        CrashOptions {
            random_subsets: 8,
            seed: 0x5eed_c0de_0bad_f00d,
            exhaustive_up_to: 3,
        }
    }
}

/// Which image of a point a [`CrashImage`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The persisted image alone: no dirty line reached the media.
    Persisted,
    /// The `index`-th random subset of the point's dirty lines.
    Random {
        /// 0-based number of the subset at this point.
        index: usize,
    },
    /// An exhaustively enumerated subset: bit `i` of `mask` set means the
    /// point's `i`-th dirty line (see [`PointInfo::dirty_lines`]) is in it.
    Exhaustive {
        /// The subset as a bit mask over the dirty lines.
        mask: u64,
    },
    /// A subset chosen by the caller of [`CrashTrace::with_image`].
    Chosen,
}

/// One possible content of the media after a crash.
#[derive(Clone, Copy, Debug)]
pub struct CrashImage<'a> {
    /// The drain point (index into the trace, `0..points()`).
    pub point: usize,
    /// The domain's drain sequence number of that point (`None` for the end
    /// point recorded by `take_trace`).
    pub drain_seq: Option<u64>,
    /// Which image of the point this is.
    pub selection: Selection,
    /// Dirty lines (ascending) added to the persisted image.
    pub added_lines: &'a [usize],
    /// The whole pool as it would be found after the crash. Valid only for
    /// the duration of the callback (the buffer is reused).
    pub bytes: &'a [u8],
}

/// What was recorded at one drain point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointInfo<'a> {
    /// Index of the point in the trace.
    pub index: usize,
    /// The domain's drain sequence number (`None` for the end point).
    pub drain_seq: Option<u64>,
    /// Lines (ascending) whose volatile content differed from the persisted
    /// image at this point.
    pub dirty_lines: &'a [usize],
    /// Those of them this drain persisted (ascending).
    pub persisted_lines: Vec<usize>,
}

/// A recorded workload from which every possible post-crash image can be
/// rebuilt. Made by [`SimDomain::take_trace`]; see the module docs.
///
/// Points are the traced drains in order, then one end point: a crash after
/// the last drain, with whatever was still dirty when the trace was taken.
#[derive(Debug)]
pub struct CrashTrace {
    t: TraceData,
    r: Replay,
}

/// The reused image buffer and the scratch space of replay.
#[derive(Debug)]
struct Replay {
    buf: Vec<u8>,
    /// The point whose persisted image `buf` holds (`None`: not built yet).
    cursor: Option<usize>,
    /// Previous content of the lines applied for the current subset.
    undo: Vec<u8>,
    /// Lines of the current subset.
    added: Vec<usize>,
}

impl CrashTrace {
    /// Number of points (traced drains plus the end point).
    pub fn points(&self) -> usize {
        self.t.points.len()
    }

    /// What was recorded at point `k`, or `None` if `k >= points()`.
    pub fn point(&self, k: usize) -> Option<PointInfo<'_>> {
        let p = self.t.points.get(k)?;
        Some(PointInfo {
            index: k,
            drain_seq: p.drain_seq,
            dirty_lines: &self.t.lines[p.dirty.clone()],
            persisted_lines: self.t.persists[p.persists.clone()]
                .iter()
                .map(|&e| self.t.lines[e])
                .collect(),
        })
    }

    /// Approximate heap memory held by the trace, in bytes (the initial
    /// image, the recorded diffs and the replay buffer).
    pub fn heap_bytes(&self) -> usize {
        let w = std::mem::size_of::<usize>();
        self.t.initial.len()
            + self.t.data.len()
            + (self.t.lines.len() + self.t.slot.len() + self.t.persists.len()) * w
            + self.t.points.len() * std::mem::size_of::<PointRec>()
            + self.r.buf.len()
    }

    /// Number of line contents stored (tests of the sharing of slots).
    #[cfg(test)]
    pub(super) fn stored_lines(&self) -> usize {
        self.t.data.len() / CACHE_LINE
    }

    /// The persisted image when the trace started.
    pub fn initial_image(&self) -> &[u8] {
        &self.t.initial
    }

    /// How many images [`for_each_image`](Self::for_each_image) yields
    /// with `opts`.
    pub fn image_count(&self, opts: &CrashOptions) -> usize {
        self.t
            .points
            .iter()
            .map(|p| {
                let n = p.dirty.len();
                1 + match exhaustive_bits(n, opts) {
                    Some(b) => (1usize << b) - 1,
                    None if n == 0 => 0,
                    None => opts.random_subsets,
                }
            })
            .sum()
    }

    /// Calls `f` with every crash image of every point, in point order: for
    /// each point the persisted image alone, then either every non-empty
    /// subset of its dirty lines (when there are at most
    /// `opts.exhaustive_up_to`) or `opts.random_subsets` random ones (none
    /// when no line is dirty). Stops at the first `Break` and returns it.
    ///
    /// The image is one reused buffer: a few MiB pool yields thousands of
    /// images per second when `f` itself is cheap.
    pub fn for_each_image<B>(
        &mut self,
        opts: &CrashOptions,
        mut f: impl FnMut(&CrashImage<'_>) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let t = &self.t;
        let r = &mut self.r;
        for k in 0..t.points.len() {
            r.seek(t, k);
            let p = &t.points[k];
            let dirty = p.dirty.clone();
            r.emit(t, k, Selection::Persisted, std::iter::empty(), &mut f)?;
            if let Some(bits) = exhaustive_bits(dirty.len(), opts) {
                for mask in 1..(1u64 << bits) {
                    let sel = dirty.clone().filter(|e| mask >> (e - dirty.start) & 1 == 1);
                    r.emit(t, k, Selection::Exhaustive { mask }, sel, &mut f)?;
                }
            } else if !dirty.is_empty() {
                let mut rng = SplitMix64::new(opts.seed ^ (k as u64).wrapping_mul(GOLDEN));
                for index in 0..opts.random_subsets {
                    let mut word = 0u64;
                    let picks: Vec<bool> = (0..dirty.len())
                        .map(|i| {
                            if i % 64 == 0 {
                                word = rng.next_u64();
                            }
                            word >> (i % 64) & 1 == 1
                        })
                        .collect();
                    let sel = dirty.clone().filter(|e| picks[e - dirty.start]);
                    r.emit(t, k, Selection::Random { index }, sel, &mut f)?;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Calls `f` with the image of point `k` made of its persisted image plus
    /// the dirty lines for which `include(line)` is true (lines not dirty at
    /// `k` are never asked about). Returns `None` if `k >= points()`.
    pub fn with_image<R>(
        &mut self,
        k: usize,
        mut include: impl FnMut(usize) -> bool,
        f: impl FnOnce(&CrashImage<'_>) -> R,
    ) -> Option<R> {
        let p = self.t.points.get(k)?;
        let t = &self.t;
        self.r.seek(t, k);
        let sel = p.dirty.clone().filter(|&e| include(t.lines[e]));
        let mut f = Some(f);
        let mut out = None;
        let _ = self.r.emit(t, k, Selection::Chosen, sel, &mut |img| {
            if let Some(f) = f.take() {
                out = Some(f(img));
            }
            ControlFlow::<()>::Continue(())
        });
        out
    }
}

impl Replay {
    /// Brings `buf` to the persisted image of point `k` (`P_k`).
    fn seek(&mut self, t: &TraceData, k: usize) {
        let mut c = match self.cursor {
            Some(c) if c <= k => c,
            _ => {
                if self.buf.len() == t.initial.len() {
                    self.buf.copy_from_slice(&t.initial);
                } else {
                    self.buf = t.initial.clone();
                }
                0
            }
        };
        while c < k {
            for &e in &t.persists[t.points[c].persists.clone()] {
                copy_line(t, e, &mut self.buf);
            }
            c += 1;
        }
        self.cursor = Some(k);
    }

    /// Applies the dirty entries `sel` to `buf`, calls `f`, reverts them.
    fn emit<B>(
        &mut self,
        t: &TraceData,
        k: usize,
        selection: Selection,
        sel: impl Iterator<Item = usize>,
        f: &mut impl FnMut(&CrashImage<'_>) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        self.added.clear();
        self.undo.clear();
        for e in sel {
            let line = t.lines[e];
            let (start, end) = line_span(line, self.buf.len());
            self.undo.extend_from_slice(&self.buf[start..end]);
            copy_line(t, e, &mut self.buf);
            self.added.push(line);
        }
        let res = f(&CrashImage {
            point: k,
            drain_seq: t.points[k].drain_seq,
            selection,
            added_lines: &self.added,
            bytes: &self.buf,
        });
        let mut at = 0;
        for &line in &self.added {
            let (start, end) = line_span(line, self.buf.len());
            self.buf[start..end].copy_from_slice(&self.undo[at..at + end - start]);
            at += end - start;
        }
        res
    }
}

/// Byte range of `line` in a pool of `len` bytes.
fn line_span(line: usize, len: usize) -> (usize, usize) {
    let start = line * CACHE_LINE;
    (start, (start + CACHE_LINE).min(len))
}

/// Writes the volatile content of dirty entry `e` into `buf`.
fn copy_line(t: &TraceData, e: usize, buf: &mut [u8]) {
    let (start, end) = line_span(t.lines[e], buf.len());
    let src = t.slot[e] * CACHE_LINE;
    buf[start..end].copy_from_slice(&t.data[src..src + (end - start)]);
}

/// Number of dirty lines to enumerate exhaustively, if this point qualifies.
fn exhaustive_bits(n: usize, opts: &CrashOptions) -> Option<u32> {
    let n = u32::try_from(n).ok()?;
    (n > 0 && n <= opts.exhaustive_up_to.min(20)).then_some(n)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, good enough to pick
/// subsets, and deterministic for a seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
