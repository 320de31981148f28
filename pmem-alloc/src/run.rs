//! Volatile state of one run: which blocks may be reserved, which have a
//! free in flight. Persistent state (the bitmap) is read from the media.

use crate::class::Class;
use crate::sync::{Arc, Mutex, lock};

/// Per-block volatile state of a run, behind the run's mutex.
///
/// A block is *available* (reservable) iff its `avail` bit is set. It is
/// cleared by [`take`](Self::take) (reserve) and set again only by
/// [`give`](Self::give) (cancel of a reservation, or after the commit of a
/// free). `freeing` marks blocks with a free ticket in flight, so a second
/// free of the same block is refused.
#[derive(Debug)]
pub struct Blocks {
    avail: Vec<u64>,
    freeing: Vec<u64>,
    n_avail: u32,
    nblocks: u32,
    /// First word that may hold an available bit.
    hint: usize,
    /// The run was taken out of service (its chunks go back to the free
    /// pool); nothing may be reserved from it any more.
    pub retired: bool,
    /// The run is on its arena's list of runs with space (the heap's
    /// `ClassRuns::with_space`): set by whoever pushes it there, cleared by
    /// the reserver that finds it full and takes it off. Keeps it on the
    /// list at most once.
    pub listed: bool,
}

impl Blocks {
    /// `nblocks` blocks, all available.
    pub fn new_all_free(nblocks: u32) -> Self {
        let words = (nblocks as usize).div_ceil(64);
        let mut avail = vec![u64::MAX; words];
        if !nblocks.is_multiple_of(64)
            && let Some(last) = avail.last_mut()
        {
            *last = (1u64 << (nblocks % 64)) - 1;
        }
        Blocks {
            avail,
            freeing: vec![0; words],
            n_avail: nblocks,
            nblocks,
            hint: 0,
            retired: false,
            listed: false,
        }
    }

    /// The state of a run whose persistent bitmap is `bitmap`: allocated
    /// blocks unavailable, the others available.
    pub fn from_bitmap(nblocks: u32, bitmap: &[u64]) -> Self {
        let mut b = Self::new_all_free(nblocks);
        for (w, &bits) in b.avail.iter_mut().zip(bitmap) {
            let used = *w & bits;
            b.n_avail -= used.count_ones();
            *w &= !bits;
        }
        b
    }

    /// Takes the lowest available block.
    pub fn take(&mut self) -> Option<u32> {
        if self.retired || self.n_avail == 0 {
            return None;
        }
        for w in self.hint..self.avail.len() {
            let bits = self.avail[w];
            if bits != 0 {
                let bit = bits.trailing_zeros();
                self.avail[w] &= !(1u64 << bit);
                self.n_avail -= 1;
                self.hint = w;
                return Some(w as u32 * 64 + bit);
            }
        }
        None
    }

    /// Makes block `i` available again. Returns false (and changes nothing)
    /// if it already was.
    pub fn give(&mut self, i: u32) -> bool {
        let (w, m) = ((i / 64) as usize, 1u64 << (i % 64));
        if i >= self.nblocks || self.avail[w] & m != 0 {
            return false;
        }
        self.avail[w] |= m;
        self.n_avail += 1;
        self.hint = self.hint.min(w);
        true
    }

    /// True if block `i` is available.
    pub fn is_avail(&self, i: u32) -> bool {
        i < self.nblocks && self.avail[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    /// Marks block `i` as being freed; false if a free is already in flight.
    pub fn start_free(&mut self, i: u32) -> bool {
        let (w, m) = ((i / 64) as usize, 1u64 << (i % 64));
        if i >= self.nblocks || self.freeing[w] & m != 0 {
            return false;
        }
        self.freeing[w] |= m;
        true
    }

    /// Clears block `i`'s in-flight free mark.
    pub fn end_free(&mut self, i: u32) {
        if i < self.nblocks {
            self.freeing[(i / 64) as usize] &= !(1u64 << (i % 64));
        }
    }

    /// Available blocks.
    pub fn n_avail(&self) -> u32 {
        self.n_avail
    }

    /// True when every block is available (nothing reserved, allocated or
    /// being freed).
    pub fn is_empty(&self) -> bool {
        self.n_avail == self.nblocks
    }

    /// Makes block `i` available again at the end of its free or the
    /// cancel of its reservation (clearing its in-flight free mark).
    /// `relist` in the result: the run was off its arena's
    /// [`SpaceList`] and is marked listed again, so the caller must push
    /// it there, after dropping this run's lock (every other path takes
    /// the arena's lock first).
    pub fn give_back(&mut self, i: u32) -> GiveBack {
        self.end_free(i);
        self.give(i);
        let relist = !self.listed && !self.retired;
        self.listed |= relist;
        GiveBack {
            empty: self.is_empty(),
            relist,
        }
    }
}

/// What [`Blocks::give_back`] asks of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GiveBack {
    /// Every block of the run is available (it may be retired).
    pub empty: bool,
    /// Push the run on its arena's [`SpaceList`].
    pub relist: bool,
}

/// Something that holds a run's block state: a [`Run`], or a bare
/// `Mutex<Blocks>` in the loom models.
pub trait HasBlocks {
    /// The run's block state.
    fn blocks(&self) -> &Mutex<Blocks>;
}

impl HasBlocks for Mutex<Blocks> {
    fn blocks(&self) -> &Mutex<Blocks> {
        self
    }
}

/// The runs of one class in one arena that may have an available block,
/// behind the arena's lock. Reserving looks only here, so it never walks
/// the full runs: with many runs of a large class (62 blocks of 4 KiB per
/// chunk) walking them all made every new run cost a pass over the others.
///
/// Each run is on it at most once, and a run that is not retired and has
/// an available block is on it or about to be pushed by the thread that
/// gave the block back: [`Blocks::listed`] records membership and is only
/// changed under the run's lock, set by whoever will push the run, cleared
/// by the reserver that pops it. A retired run stays until a reserver meets
/// it.
#[derive(Debug)]
pub struct SpaceList<R> {
    runs: Vec<Arc<R>>,
}

impl<R> Default for SpaceList<R> {
    fn default() -> Self {
        SpaceList { runs: Vec::new() }
    }
}

impl<R> Clone for SpaceList<R> {
    fn clone(&self) -> Self {
        SpaceList {
            runs: self.runs.clone(),
        }
    }
}

impl<R: HasBlocks> SpaceList<R> {
    /// Puts `run` on the list; the caller set its `listed` flag under its
    /// lock (a new run, or [`GiveBack::relist`]).
    pub fn push(&mut self, run: Arc<R>) {
        self.runs.push(run);
    }

    /// Reserves a block from the newest run with one, taking off the list
    /// (and clearing `listed`) every run it finds full or retired first.
    pub fn take(&mut self) -> Option<(Arc<R>, u32)> {
        while let Some(run) = self.runs.last() {
            {
                let mut b = lock(run.blocks());
                if let Some(i) = b.take() {
                    drop(b);
                    return Some((run.clone(), i));
                }
                b.listed = false;
            }
            self.runs.pop();
        }
        None
    }

    /// How many times `run` is on the list (for the models and tests).
    pub fn count_of(&self, run: &Arc<R>) -> usize {
        self.runs.iter().filter(|r| Arc::ptr_eq(r, run)).count()
    }
}

/// A run in volatile state.
#[derive(Debug)]
pub struct Run {
    /// First chunk of its span.
    pub first: u32,
    /// Its size class.
    pub class: &'static Class,
    /// Pool offset of the run (its header).
    pub start: u64,
    /// Arena that reserves from it first.
    pub owner: usize,
    /// Block state.
    pub blocks: Mutex<Blocks>,
}

impl HasBlocks for Run {
    fn blocks(&self) -> &Mutex<Blocks> {
        &self.blocks
    }
}

impl Run {
    /// Pool offset of block `i`'s data.
    pub fn data_off(&self, i: u32) -> u64 {
        self.class.data(self.start, i)
    }

    /// Pool offset of block `i`'s allocation header.
    pub fn header_off(&self, i: u32) -> u64 {
        self.class.header(self.start, i)
    }

    /// Pool offset of the bitmap word holding block `i`, and its mask.
    pub fn bit(&self, i: u32) -> (u64, u64) {
        (
            self.start + crate::layout::RUN_HEADER_SIZE + u64::from(i / 64) * 8,
            1u64 << (i % 64),
        )
    }

    /// The block whose data starts at pool offset `off`, if any.
    pub fn block_of(&self, off: u64) -> Option<u32> {
        let rel = off.checked_sub(self.class.data(self.start, 0))?;
        let (i, r) = self.class.split(rel);
        (r == 0 && i < u64::from(self.class.nblocks)).then_some(i as u32)
    }

    /// Chunks of its span.
    pub fn chunks(&self) -> u32 {
        self.class.chunks
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn take_give_and_bitmap() {
        let mut b = Blocks::new_all_free(70);
        assert_eq!(b.n_avail(), 70);
        let got: Vec<u32> = (0..70).map(|_| b.take().unwrap()).collect();
        assert_eq!(got, (0..70).collect::<Vec<_>>());
        assert_eq!(b.take(), None);
        assert!(b.give(65));
        assert!(!b.give(65), "double give refused");
        assert!(!b.give(70), "out of range refused");
        assert_eq!(b.take(), Some(65));
        let c = Blocks::from_bitmap(70, &[0b101, 1 << 5]);
        assert_eq!(c.n_avail(), 67);
        assert!(!c.is_avail(0) && c.is_avail(1) && !c.is_avail(2) && !c.is_avail(69));
        let mut d = Blocks::new_all_free(3);
        assert!(d.start_free(1));
        assert!(!d.start_free(1));
        d.end_free(1);
        assert!(d.start_free(1));
    }
}
