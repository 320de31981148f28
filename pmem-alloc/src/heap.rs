//! The heap: reserve / publish / free / after_commit over volatile state
//! (arenas of runs, the free-chunk pool, huge spans), with persistent
//! metadata changed only by run creation and retirement (here) and by the
//! redo ops the transaction layer applies.
//!
//! Lock order (never taken the other way): arena → run blocks → global →
//! run map. The run map's read lock is never held while taking another.
//!
//! Object-range lookups ([`Heap::data_range_ok`], and `locate` behind
//! [`Heap::alloc_info`] and [`Heap::free_ops`]) take no lock: they read the
//! [`ChunkMap`], kept up to date under the global lock (see `chunkmap` for
//! why that is correct). `free_ops` still takes the `Arc<Run>` from the run
//! map (one read lock, exact key), because a free needs the run's block
//! state; that is a mutation, and it locks the run's blocks anyway.

use crate::RedoOp;
use crate::arena::ArenaPicker;
use crate::chunkmap::{ChunkMap, Owner};
use crate::class::{Class, class_for, classes};
use crate::error::{Error, Result};
use crate::layout::{
    ALLOC_HEADER_SIZE, AllocHeader, CHUNK_SIZE, ChunkHeader, Geometry, RUN_HEADER_SIZE, RUN_MAGIC,
    RunHeader,
};
use crate::media::{Live, Media};
use crate::run::{Blocks, Run, SpaceList};
use crate::sync::{self, Arc, Mutex, RwLock};
use pmem_pool::Persister;
use std::collections::{BTreeMap, BTreeSet};

/// The heap region of a pool: the pool header's `heap_offset`/`heap_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapRegion {
    /// Pool offset of the heap (4 KiB aligned).
    pub offset: u64,
    /// Bytes of heap.
    pub size: u64,
}

/// Where a reserved or freed object lives.
#[derive(Debug)]
pub(crate) enum Slot {
    Block { run: Arc<Run>, idx: u32 },
    Huge { first: u32, span: u32 },
}

/// Where an object lives, as the chunk map says (no `Arc<Run>`: a lookup
/// that takes no lock).
#[derive(Clone, Copy, Debug)]
enum Where {
    Block {
        first: u32,
        class: &'static Class,
        idx: u32,
    },
    Huge {
        first: u32,
        span: u32,
    },
}

impl Where {
    /// Usable bytes of the block or span (less an allocation header
    /// inside it, and for a span the bytes before the header).
    fn usable(&self, geo: &Geometry) -> u64 {
        match *self {
            Where::Block { class, .. } => class.usable(),
            Where::Huge { span, .. } => geo.huge_usable(span),
        }
    }
}

/// Pool offset of the bitmap word of block `i` of the run at `start`, and
/// its mask (as [`Run::bit`]).
fn bit_of(start: u64, i: u32) -> (u64, u64) {
    (
        start + RUN_HEADER_SIZE + u64::from(i / 64) * 8,
        1u64 << (i % 64),
    )
}

/// A block or span handed out by [`Heap::reserve`], not yet published.
/// Consumed by [`Heap::cancel`] or [`Heap::after_commit`].
#[derive(Debug)]
pub struct Reservation {
    /// Pool offset of the object's data (16-aligned).
    pub off: u64,
    /// Pool offset of its 16-byte allocation header: in its run's header
    /// table (heap version 3), else right before `off`.
    pub hdr: u64,
    /// Usable bytes at `off` (≥ the requested size).
    pub usable: u64,
    size: u64,
    type_num: u64,
    slot: Slot,
}

impl Reservation {
    /// Bytes the caller asked for.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The type number given at reserve.
    pub fn type_num(&self) -> u64 {
        self.type_num
    }
}

/// A free in flight, made by [`Heap::free_ops`]. Consumed by
/// [`Heap::cancel_free`] or [`Heap::after_commit`].
#[derive(Debug)]
pub struct FreeTicket {
    /// Pool offset of the object's data.
    pub off: u64,
    /// Usable bytes of the object, from the volatile chunk map alone: no
    /// media read, so no cache miss on the object's header line (a free
    /// needs only this, to drop the writes it had pending into the
    /// object).
    pub usable: u64,
    slot: Slot,
}

/// What an allocated object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocInfo {
    /// Pool offset of its data.
    pub off: u64,
    /// Requested size (from its allocation header).
    pub size: u64,
    /// Usable bytes (block or span minus the header).
    pub usable: u64,
    /// Type number (from its allocation header).
    pub type_num: u64,
}

/// Statistics of one size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassStats {
    /// Class index.
    pub class: u8,
    /// Block size (allocation header included in heaps of version 1
    /// and 2).
    pub block_size: u64,
    /// Runs of this class.
    pub runs: u64,
    /// Blocks allocated, reserved or being freed.
    pub blocks_used: u64,
    /// Blocks available for reservation.
    pub blocks_free: u64,
}

/// A snapshot of the heap's volatile state ([`Heap::stats`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HeapStats {
    /// Per size class (every class, in table order).
    pub classes: Vec<ClassStats>,
    /// Huge spans allocated or reserved.
    pub huge_objects: u64,
    /// Chunks in those spans.
    pub huge_chunks: u64,
    /// Chunks in the free pool.
    pub free_chunks: u64,
    /// Largest contiguous free span, in chunks.
    pub largest_free_chunks: u64,
    /// Chunks in the heap.
    pub total_chunks: u64,
    /// Bytes of used blocks and huge spans (headers included).
    pub used_bytes: u64,
    /// Bytes of free chunks and available blocks.
    pub free_bytes: u64,
    /// External fragmentation of the chunk pool: 1 − largest free span /
    /// free chunks (0 when nothing or one span is free).
    pub fragmentation: f64,
}

#[derive(Debug)]
struct Huge {
    span: u32,
    freeing: bool,
}

/// State behind the global mutex.
#[derive(Debug, Default)]
struct Global {
    /// Free spans: start → length in chunks (coalesced).
    free: BTreeMap<u32, u32>,
    /// The same spans as (length, start), for best fit.
    by_len: BTreeSet<(u32, u32)>,
    /// Huge spans reserved or allocated: first chunk → state.
    huge: BTreeMap<u32, Huge>,
    /// Empty runs taken out of service whose chunk header is still set.
    retiring: Vec<Arc<Run>>,
}

impl Global {
    fn insert_free(&mut self, mut start: u32, mut len: u32) {
        if let Some((&ps, &pl)) = self.free.range(..start).next_back()
            && ps + pl == start
        {
            self.free.remove(&ps);
            self.by_len.remove(&(pl, ps));
            start = ps;
            len += pl;
        }
        if let Some(&nl) = self.free.get(&(start + len)) {
            self.free.remove(&(start + len));
            self.by_len.remove(&(nl, start + len));
            len += nl;
        }
        self.free.insert(start, len);
        self.by_len.insert((len, start));
    }

    /// Best fit: the smallest free span of at least `n` chunks.
    fn take(&mut self, n: u32) -> Option<u32> {
        let &(len, start) = self.by_len.range((n, 0)..).next()?;
        self.by_len.remove(&(len, start));
        self.free.remove(&start);
        if len > n {
            self.free.insert(start + n, len - n);
            self.by_len.insert((len - n, start + n));
        }
        Some(start)
    }

    fn largest(&self) -> u32 {
        self.by_len.last().map_or(0, |&(l, _)| l)
    }
}

/// Runs of one arena, per class.
#[derive(Debug)]
struct Arena {
    by_class: Vec<ClassRuns>,
}

/// The runs of one class an arena owns.
#[derive(Debug, Default, Clone)]
struct ClassRuns {
    /// How many there are (the heap's run map holds them all; a count is
    /// enough here, so retiring one is O(1)).
    count: usize,
    /// Those that may have an available block.
    with_space: SpaceList<Run>,
}

impl ClassRuns {
    /// Counts a run new to the arena, and lists it when `listed` (its
    /// `Blocks::listed` flag, set under the run's lock).
    fn add(&mut self, run: &Arc<Run>, listed: bool) {
        self.count += 1;
        if listed {
            self.with_space.push(run.clone());
        }
    }
}

/// The persistent heap of one pool. `Send + Sync`.
pub struct Heap {
    geo: Geometry,
    picker: ArenaPicker,
    arenas: Box<[Mutex<Arena>]>,
    global: Mutex<Global>,
    runs: RwLock<BTreeMap<u32, Arc<Run>>>,
    /// What every chunk belongs to; written under `global` only.
    map: ChunkMap,
}

impl std::fmt::Debug for Heap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heap")
            .field("geometry", &self.geo)
            .field("arenas", &self.arenas.len())
            .finish()
    }
}

/// What rebuild found, handed to [`Heap::assemble`].
pub(crate) struct Rebuilt {
    pub free: Vec<(u32, u32)>,
    pub runs: Vec<(u32, &'static Class, Vec<u64>)>,
    pub huge: Vec<(u32, u32)>,
}

fn arena_count() -> usize {
    if cfg!(loom) {
        2
    } else {
        2 * std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

impl Heap {
    /// Builds the volatile state from what rebuild found.
    pub(crate) fn assemble(geo: Geometry, r: Rebuilt) -> Heap {
        let n = arena_count();
        let mut arenas: Vec<Arena> = (0..n)
            .map(|_| Arena {
                by_class: vec![ClassRuns::default(); classes(geo.layout).len()],
            })
            .collect();
        let mut g = Global::default();
        let cmap = ChunkMap::new(geo.chunk_count, geo.layout);
        for (s, l) in r.free {
            g.insert_free(s, l);
        }
        for (first, span) in r.huge {
            cmap.set_huge(first, span);
            g.huge.insert(
                first,
                Huge {
                    span,
                    freeing: false,
                },
            );
        }
        let mut map = BTreeMap::new();
        for (k, (first, class, bitmap)) in r.runs.into_iter().enumerate() {
            let owner = k % n;
            let mut blocks = Blocks::from_bitmap(class.nblocks, &bitmap);
            blocks.listed = blocks.n_avail() > 0;
            let listed = blocks.listed;
            let run = Arc::new(Run {
                first,
                class,
                start: geo.chunk_off(first),
                owner,
                blocks: Mutex::new(blocks),
            });
            arenas[owner].by_class[usize::from(class.index)].add(&run, listed);
            cmap.set_run(first, class);
            map.insert(first, run);
        }
        Heap {
            geo,
            picker: ArenaPicker::new(n),
            arenas: arenas.into_iter().map(Mutex::new).collect(),
            global: Mutex::new(g),
            runs: RwLock::new(map),
            map: cmap,
        }
    }

    /// The heap's geometry.
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// Largest object [`reserve`](Self::reserve) could ever satisfy.
    pub fn max_alloc(&self) -> u64 {
        self.geo.chunk_count * CHUNK_SIZE - self.geo.huge_data
    }

    /// Reserves space for an object of `size` bytes with `type_num`:
    /// volatile only, except when a new run must be created in a free chunk
    /// (run header and zeroed bitmap persisted, then the chunk header stored
    /// and persisted: 2 fences, amortised over the run's blocks). The block
    /// is not handed out again until [`cancel`](Self::cancel), or until it
    /// is freed after publication.
    ///
    /// Large classes whose run would need more chunks than the largest free
    /// span fall back to a huge span (outside the fragmentation bound).
    pub fn reserve(&self, p: &Persister, size: u64, type_num: u64) -> Result<Reservation> {
        let max = self.max_alloc();
        if size > max {
            return Err(Error::TooLarge {
                requested: size,
                max,
            });
        }
        let span = (size + self.geo.huge_data).div_ceil(CHUNK_SIZE) as u32;
        match class_for(self.geo.layout, size) {
            Some(c) => match self.reserve_block(p, c, size, type_num) {
                Err(Error::OutOfSpace { .. }) if c.chunks > 1 => {
                    self.reserve_huge(p, span, size, type_num)
                }
                r => r,
            },
            None => self.reserve_huge(p, span, size, type_num),
        }
    }

    fn out_of_space(&self, size: u64) -> Error {
        let largest = sync::lock(&self.global).largest();
        Error::OutOfSpace {
            requested: size,
            largest_free: u64::from(largest) * CHUNK_SIZE,
        }
    }

    fn block_reservation(&self, run: Arc<Run>, idx: u32, size: u64, type_num: u64) -> Reservation {
        Reservation {
            off: run.data_off(idx),
            hdr: run.header_off(idx),
            usable: run.class.usable(),
            size,
            type_num,
            slot: Slot::Block { run, idx },
        }
    }

    fn reserve_block(
        &self,
        p: &Persister,
        c: &'static Class,
        size: u64,
        type_num: u64,
    ) -> Result<Reservation> {
        let ci = usize::from(c.index);
        let a = self.picker.pick();
        for attempt in 0..2 {
            {
                let mut arena = sync::lock(&self.arenas[a]);
                if let Some((run, i)) = arena.by_class[ci].with_space.take() {
                    return Ok(self.block_reservation(run, i, size, type_num));
                }
                if let Some(run) = self.new_run(p, c, a)? {
                    let i = {
                        let mut b = sync::lock(&run.blocks);
                        b.listed = true;
                        b.take()
                    };
                    arena.by_class[ci].add(&run, true);
                    if let Some(i) = i {
                        return Ok(self.block_reservation(run, i, size, type_num));
                    }
                }
            }
            // No free chunk: blocks of this class in other arenas' runs.
            for j in (0..self.arenas.len()).filter(|&j| j != a) {
                let mut arena = sync::lock(&self.arenas[j]);
                if let Some((run, i)) = arena.by_class[ci].with_space.take() {
                    return Ok(self.block_reservation(run, i, size, type_num));
                }
            }
            // Last resort: empty runs of any class back to the free pool.
            if attempt == 0 && self.reclaim_empty(p)? == 0 {
                break;
            }
        }
        Err(self.out_of_space(size))
    }

    fn reserve_huge(
        &self,
        p: &Persister,
        span: u32,
        size: u64,
        type_num: u64,
    ) -> Result<Reservation> {
        for attempt in 0..2 {
            {
                let mut g = sync::lock(&self.global);
                self.process_retiring(p, &mut g)?;
                if let Some(first) = g.take(span) {
                    self.map.set_huge(first, span);
                    g.huge.insert(
                        first,
                        Huge {
                            span,
                            freeing: false,
                        },
                    );
                    let off = self.geo.chunk_off(first) + self.geo.huge_data;
                    return Ok(Reservation {
                        off,
                        hdr: off - ALLOC_HEADER_SIZE,
                        usable: self.geo.huge_usable(span),
                        size,
                        type_num,
                        slot: Slot::Huge { first, span },
                    });
                }
            }
            if attempt == 0 && self.reclaim_empty(p)? == 0 {
                break;
            }
        }
        Err(self.out_of_space(size))
    }

    /// Turns free chunks into a new run of class `c` owned by arena
    /// `owner`; `None` when no free span is large enough.
    fn new_run(&self, p: &Persister, c: &'static Class, owner: usize) -> Result<Option<Arc<Run>>> {
        let first = {
            let mut g = sync::lock(&self.global);
            self.process_retiring(p, &mut g)?;
            match g.take(c.chunks) {
                Some(f) => f,
                None => return Ok(None),
            }
        };
        let live = Live::new(p);
        let start = self.geo.chunk_off(first);
        let hdr = RunHeader {
            magic: RUN_MAGIC,
            nblocks: c.nblocks,
            block_size: c.block,
            class: u16::from(c.index),
            chunks: c.chunks as u16,
            data_off: c.data_off as u32,
            reserved: [0; 36],
            crc32: 0,
        };
        // Only the bitmap needs zeroing: a header table entry is read only
        // once its block's bit is set, and is written before that.
        let bitmap_end = match c.headers_off {
            0 => c.data_off,
            h => h,
        };
        let persisted = (|| {
            // SAFETY: chunks first..first+c.chunks were just taken from the
            // free pool under the global lock: no run, reservation or huge
            // object covers them, so no other thread accesses these bytes.
            unsafe {
                live.write(start, &hdr.to_bytes());
                live.zero(start + RUN_HEADER_SIZE, bitmap_end - RUN_HEADER_SIZE);
            }
            p.drain()?;
            live.store_u64(
                self.geo.header_off(first),
                ChunkHeader::Run {
                    class: c.index,
                    span: c.chunks,
                }
                .encode(),
            );
            p.drain()
        })();
        if let Err(e) = persisted {
            sync::lock(&self.global).insert_free(first, c.chunks);
            return Err(e.into());
        }
        let run = Arc::new(Run {
            first,
            class: c,
            start,
            owner,
            blocks: Mutex::new(Blocks::new_all_free(c.nblocks)),
        });
        {
            // The map entry after the run map's (free_ops finds the run
            // there), both before any block is handed out. Under the global
            // lock: every chunk-map write is.
            let _g = sync::lock(&self.global);
            sync::write(&self.runs).insert(first, run.clone());
            self.map.set_run(first, c);
        }
        Ok(Some(run))
    }

    /// Stores 0 into the chunk header of every retiring run (one 8-byte
    /// store each, one fence for all) and returns their chunks to the pool.
    fn process_retiring(&self, p: &Persister, g: &mut Global) -> Result<()> {
        if g.retiring.is_empty() {
            return Ok(());
        }
        let live = Live::new(p);
        for run in &g.retiring {
            live.store_u64(self.geo.header_off(run.first), 0);
        }
        p.drain()?;
        let retiring = std::mem::take(&mut g.retiring);
        for run in &retiring {
            self.map.clear(run.first, run.chunks());
        }
        {
            let mut map = sync::write(&self.runs);
            for run in &retiring {
                if map.get(&run.first).is_some_and(|r| Arc::ptr_eq(r, run)) {
                    map.remove(&run.first);
                }
            }
        }
        for run in retiring {
            g.insert_free(run.first, run.chunks());
        }
        Ok(())
    }

    /// Retires every empty run of every arena (used when the free pool is
    /// exhausted); returns how many.
    fn reclaim_empty(&self, p: &Persister) -> Result<usize> {
        let mut out = Vec::new();
        // Copied out first: the run map's read lock is never held while
        // taking another (the lock order at the top).
        let runs: Vec<Arc<Run>> = sync::read(&self.runs).values().cloned().collect();
        for run in runs {
            let mut b = sync::lock(&run.blocks);
            // Not a run being made: it is in the map before its maker
            // lists it and takes its first block, and retiring it there
            // would fail that reservation.
            if b.is_empty() && !b.retired && b.listed {
                b.retired = true;
                drop(b);
                out.push(run);
            }
        }
        // Then the arenas' counts, with no run's lock held (arena before
        // run blocks).
        for run in &out {
            sync::lock(&self.arenas[run.owner]).by_class[usize::from(run.class.index)].count -= 1;
        }
        let n = out.len();
        let mut g = sync::lock(&self.global);
        g.retiring.extend(out);
        self.process_retiring(p, &mut g)?;
        Ok(n)
    }

    /// Retires `run` if it is empty and not the last run of its class in
    /// its arena (which is kept to avoid creating a run per allocation).
    fn maybe_retire(&self, run: &Arc<Run>) {
        let mut arena = sync::lock(&self.arenas[run.owner]);
        let runs = &mut arena.by_class[usize::from(run.class.index)];
        if runs.count <= 1 {
            return;
        }
        {
            let mut b = sync::lock(&run.blocks);
            if !b.is_empty() || b.retired {
                return;
            }
            b.retired = true;
        }
        // Off the list of runs with space when a reserver meets it.
        runs.count -= 1;
        drop(arena);
        sync::lock(&self.global).retiring.push(run.clone());
    }

    /// Writes the allocation header (requested size, type number) of `r`
    /// at `r.hdr` with plain stores, and does not flush it: the caller
    /// flushes those 16 bytes before the fence of the commit record that
    /// publishes `r`. The header shares its line with other blocks'
    /// headers (table layout) or with the object's first bytes (inline),
    /// which the caller may write next; flushing here would write the line
    /// back twice, and where the flush evicts it (clwb does on some
    /// processors), the next store into it would miss.
    ///
    /// # Safety
    /// `p` is the persister this heap was opened with, `r` a live
    /// reservation of this heap, and no reference to the 16 bytes at
    /// `r.hdr` is alive.
    pub unsafe fn write_header(&self, p: &Persister, r: &Reservation) {
        let h = AllocHeader {
            size: r.size,
            type_num: r.type_num,
        };
        // SAFETY: the reservation owns its block and its block's header
        // exclusively (a block is handed to one reservation only; no user
        // code may reach a header, `data_range_ok`); the caller guarantees
        // no reference to them is alive.
        unsafe { Live::new(p).write_unflushed(r.hdr, &h.to_bytes()) };
    }

    /// The redo ops that publish `r`: `Or64` of its bitmap bit (run block)
    /// or `Set64` of its span's first chunk header (huge).
    pub fn publish_ops(&self, r: &Reservation, out: &mut Vec<RedoOp>) {
        match &r.slot {
            Slot::Block { run, idx } => {
                let (off, mask) = run.bit(*idx);
                out.push(RedoOp::Or64 { off, mask });
            }
            Slot::Huge { first, span } => out.push(RedoOp::Set64 {
                off: self.geo.header_off(*first),
                val: ChunkHeader::Huge { span: *span }.encode(),
            }),
        }
    }

    /// Gives back an unpublished reservation.
    pub fn cancel(&self, r: Reservation) {
        self.release(r.slot);
    }

    /// Makes a block or span reservable again.
    fn release(&self, slot: Slot) {
        match slot {
            Slot::Block { run, idx } => {
                // A run taken off its arena's list when it was full goes
                // back on it; until the push a reserver just does not see
                // the block.
                let back = sync::lock(&run.blocks).give_back(idx);
                if back.relist {
                    sync::lock(&self.arenas[run.owner]).by_class[usize::from(run.class.index)]
                        .with_space
                        .push(run.clone());
                }
                if back.empty {
                    self.maybe_retire(&run);
                }
            }
            Slot::Huge { first, span } => {
                let mut g = sync::lock(&self.global);
                g.huge.remove(&first);
                self.map.clear(first, span);
                g.insert_free(first, span);
            }
        }
    }

    /// Where the object whose data starts at `off` lives, if anywhere:
    /// one chunk-map load, no lock.
    fn locate(&self, off: u64) -> Option<Where> {
        let c = self.geo.chunk_of(off)?;
        match self.map.get(c) {
            Owner::Run { first, class } => {
                let data = class.data(self.geo.chunk_off(first), 0);
                let rel = off.checked_sub(data)?;
                let (i, r) = class.split(rel);
                if r != 0 || i >= u64::from(class.nblocks) {
                    return None;
                }
                Some(Where::Block {
                    first,
                    class,
                    idx: i as u32,
                })
            }
            Owner::Huge { first, span } => (first == c
                && off == self.geo.chunk_off(first) + self.geo.huge_data)
                .then_some(Where::Huge { first, span }),
            Owner::Free => None,
        }
    }

    /// Pool offset of the allocation header of the block or span whose
    /// data would start at `off` (published or not), for tools and tests:
    /// in its run's header table (heap version 3), else the 16 bytes
    /// before `off`. `None` if no block or span of the heap starts there.
    pub fn header_off(&self, off: u64) -> Option<u64> {
        Some(match self.locate(off)? {
            Where::Block { first, class, idx } => class.header(self.geo.chunk_off(first), idx),
            Where::Huge { .. } => off - ALLOC_HEADER_SIZE,
        })
    }

    /// The run starting at chunk `first` with `class`, if it is in service.
    fn run_at(&self, first: u32, class: &'static Class) -> Option<Arc<Run>> {
        sync::read(&self.runs)
            .get(&first)
            .filter(|r| std::ptr::eq(r.class, class))
            .cloned()
    }

    /// The redo ops that free the object at `off` (`AndNot64` of its bit,
    /// or `Set64 0` of its span's header). `NotAllocated` unless `off` is
    /// the data offset of a published object with no free in flight.
    pub fn free_ops(&self, p: &Persister, off: u64, out: &mut Vec<RedoOp>) -> Result<FreeTicket> {
        let live = Live::new(p);
        let not = Error::NotAllocated { off };
        let at = self.locate(off).ok_or(Error::NotAllocated { off })?;
        let usable = at.usable(&self.geo);
        match at {
            Where::Block { first, class, idx } => {
                let run = self
                    .run_at(first, class)
                    .ok_or(Error::NotAllocated { off })?;
                let (woff, mask) = run.bit(idx);
                {
                    let mut b = sync::lock(&run.blocks);
                    if b.retired || b.is_avail(idx) || live.read_u64(woff) & mask == 0 {
                        return Err(not);
                    }
                    if !b.start_free(idx) {
                        return Err(not);
                    }
                }
                out.push(RedoOp::AndNot64 { off: woff, mask });
                Ok(FreeTicket {
                    off,
                    usable,
                    slot: Slot::Block { run, idx },
                })
            }
            Where::Huge { first, span } => {
                let hoff = self.geo.header_off(first);
                let mut g = sync::lock(&self.global);
                match g.huge.get_mut(&first) {
                    Some(h)
                        if h.span == span
                            && !h.freeing
                            && live.read_u64(hoff) == ChunkHeader::Huge { span }.encode() =>
                    {
                        h.freeing = true;
                    }
                    _ => return Err(not),
                }
                out.push(RedoOp::Set64 { off: hoff, val: 0 });
                Ok(FreeTicket {
                    off,
                    usable,
                    slot: Slot::Huge { first, span },
                })
            }
        }
    }

    /// Withdraws a free whose transaction aborted: the object stays
    /// allocated.
    pub fn cancel_free(&self, t: FreeTicket) {
        match t.slot {
            Slot::Block { run, idx } => sync::lock(&run.blocks).end_free(idx),
            Slot::Huge { first, .. } => {
                if let Some(h) = sync::lock(&self.global).huge.get_mut(&first) {
                    h.freeing = false;
                }
            }
        }
    }

    /// Called after the redo ops of a commit were applied and the log
    /// invalidated: published reservations are now allocated objects, and
    /// freed blocks and spans become reservable again (only now).
    pub fn after_commit(&self, published: Vec<Reservation>, mut freed: Vec<FreeTicket>) {
        // A published block stays unavailable: nothing to do for it.
        drop(published);
        self.release_frees(&mut freed);
    }

    /// The freeing half of [`after_commit`](Self::after_commit), draining
    /// `freed` so that the caller keeps its capacity.
    pub fn release_frees(&self, freed: &mut Vec<FreeTicket>) {
        for t in freed.drain(..) {
            self.release(t.slot);
        }
    }

    /// Whether `off..off+len` lies inside the data of one block of a run or
    /// of one huge span (past its allocation header): the only bytes user
    /// code may access. Run headers, bitmaps, allocation headers and the
    /// heap's own tables are refused, because the heap changes them with
    /// atomic operations that a user's plain write would race with.
    pub fn data_range_ok(&self, off: u64, len: u64) -> bool {
        let Some(end) = off.checked_add(len.max(1)) else {
            return false;
        };
        let Some(c) = self.geo.chunk_of(off) else {
            return false;
        };
        match self.map.get(c) {
            Owner::Run { first, class } => {
                let data = self.geo.chunk_off(first) + class.data_off;
                let Some(rel) = off.checked_sub(data) else {
                    return false;
                };
                let (i, _) = class.split(rel);
                if i >= u64::from(class.nblocks) {
                    return false;
                }
                let block = data + i * class.block;
                off >= block + class.head() && end <= block + class.block
            }
            Owner::Huge { first, span } => {
                let start = self.geo.chunk_off(first);
                off >= start + self.geo.huge_data && end <= start + u64::from(span) * CHUNK_SIZE
            }
            Owner::Free => false,
        }
    }

    /// Size, usable size and type number of the published object at `off`.
    pub fn alloc_info(&self, p: &Persister, off: u64) -> Result<AllocInfo> {
        let live = Live::new(p);
        let at = self.locate(off).ok_or(Error::NotAllocated { off })?;
        let (published, hdr) = match at {
            Where::Block { first, class, idx } => {
                let start = self.geo.chunk_off(first);
                let (woff, mask) = bit_of(start, idx);
                (live.read_u64(woff) & mask != 0, class.header(start, idx))
            }
            Where::Huge { first, span } => (
                live.read_u64(self.geo.header_off(first)) == (ChunkHeader::Huge { span }).encode(),
                off - ALLOC_HEADER_SIZE,
            ),
        };
        if !published {
            return Err(Error::NotAllocated { off });
        }
        let usable = at.usable(&self.geo);
        let mut b = [0u8; ALLOC_HEADER_SIZE as usize];
        live.read(hdr, &mut b);
        let h = AllocHeader::from_bytes(&b);
        Ok(AllocInfo {
            off,
            size: h.size,
            usable,
            type_num: h.type_num,
        })
    }

    /// A snapshot of the volatile state.
    pub fn stats(&self) -> HeapStats {
        let mut cls: Vec<ClassStats> = classes(self.geo.layout)
            .iter()
            .map(|c| ClassStats {
                class: c.index,
                block_size: c.block,
                runs: 0,
                blocks_used: 0,
                blocks_free: 0,
            })
            .collect();
        let runs: Vec<Arc<Run>> = sync::read(&self.runs).values().cloned().collect();
        let (mut used, mut free) = (0u64, 0u64);
        for run in runs {
            let b = sync::lock(&run.blocks);
            let cs = &mut cls[usize::from(run.class.index)];
            let avail = u64::from(b.n_avail());
            let u = u64::from(run.class.nblocks) - avail;
            cs.runs += 1;
            cs.blocks_free += avail;
            cs.blocks_used += u;
            used += u * run.class.block;
            free += avail * run.class.block;
        }
        let g = sync::lock(&self.global);
        let free_chunks: u64 = g.free.values().map(|&l| u64::from(l)).sum();
        let huge_chunks: u64 = g.huge.values().map(|h| u64::from(h.span)).sum();
        let largest = u64::from(g.largest());
        HeapStats {
            classes: cls,
            huge_objects: g.huge.len() as u64,
            huge_chunks,
            free_chunks,
            largest_free_chunks: largest,
            total_chunks: self.geo.chunk_count,
            used_bytes: used + huge_chunks * CHUNK_SIZE,
            free_bytes: free + free_chunks * CHUNK_SIZE,
            fragmentation: if free_chunks == 0 {
                0.0
            } else {
                1.0 - largest as f64 / free_chunks as f64
            },
        }
    }

    /// Volatile view for the live check: free spans, runs (first chunk,
    /// class index, available-block predicate results), huge spans.
    pub(crate) fn volatile_view(&self) -> VolatileView {
        let runs: Vec<Arc<Run>> = sync::read(&self.runs).values().cloned().collect();
        let runs = runs
            .into_iter()
            .map(|r| {
                let b = sync::lock(&r.blocks);
                let avail: Vec<u32> = (0..r.class.nblocks).filter(|&i| b.is_avail(i)).collect();
                (r.first, r.class.index, avail)
            })
            .collect();
        let g = sync::lock(&self.global);
        VolatileView {
            free: g.free.iter().map(|(&s, &l)| (s, l)).collect(),
            runs,
            huge: g.huge.iter().map(|(&f, h)| (f, h.span)).collect(),
        }
    }
}

/// The volatile state the live check compares with the media.
pub(crate) struct VolatileView {
    pub free: Vec<(u32, u32)>,
    pub runs: Vec<(u32, u8, Vec<u32>)>,
    pub huge: Vec<(u32, u32)>,
}

static_assertions::assert_impl_all!(Heap: Send, Sync);
static_assertions::assert_impl_all!(Reservation: Send);
static_assertions::assert_impl_all!(FreeTicket: Send);
static_assertions::assert_not_impl_any!(Reservation: Clone);
static_assertions::assert_not_impl_any!(FreeTicket: Clone);

#[cfg(all(test, not(loom)))]
#[path = "heap_tests.rs"]
mod tests;
