//! Crash-simulation harness shared by the `crash_*` tests.
//!
//! A workload runs on a pool in `Mode::Sim` while the simulated domain
//! records a trace. Each operation (a "step") is registered with the range
//! of drain sequence numbers it executed and the abstract state `S` the
//! model expects before and after it (`observe` reads that state from a
//! pool). Then, for every drain point, the persisted image alone and random
//! subsets of the not-yet-persisted dirty lines are written to a file,
//! opened (which runs recovery and rebuilds the heap), checked (heap
//! consistency), and observed: the state must equal the one before or after
//! the step that was interrupted, exactly.
#![allow(dead_code)]

use pmem_pool::sim::{CrashOptions, SimDomain};
use pmem_tx::{Mode, PPtr, Persistent, Pool, PoolOptions};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

pub mod word_acts;

/// Root size used by the workloads.
pub const ROOT: usize = 64 * 1024;
pub type Root = [u8; ROOT];
const LAYOUT: &str = "crash-sim";

pub struct Step<S> {
    /// Drains with seq in `first..end` belong to this step.
    pub first: u64,
    pub end: u64,
    pub before: S,
    pub after: S,
    pub label: String,
}

/// Reads the abstract state of a pool.
pub type Observe<S> = fn(&Pool) -> S;

pub struct Harness<S = Vec<u8>> {
    pub dir: tempfile::TempDir,
    pub pool: Option<Pool>,
    pub root: PPtr<Root>,
    pub sim: Arc<SimDomain>,
    pub model: S,
    pub observe: Observe<S>,
    pub steps: Vec<Step<S>>,
    pub checked_fully_persisted: usize,
    /// Most lanes a crash image may find with a live log (three for one
    /// thread: see `check_crashes_with`).
    pub max_live_logs: usize,
}

/// The root seen as `N` pointers to `T`: the slots the allocation
/// workloads fill.
pub fn root_slots<T, const N: usize>(pool: &Pool) -> PPtr<[PPtr<T>; N]> {
    pool.root::<Root>().unwrap().cast()
}

/// Each slot's object (`None` for a null slot), and the number of objects
/// of `type_num` in the heap (equal to the non-null slots unless something
/// leaked).
pub fn slot_objects<T: Persistent, const N: usize>(
    pool: &Pool,
    type_num: u64,
) -> (Vec<Option<T>>, usize)
where
    [PPtr<T>; N]: Persistent,
{
    let s = pool.read(root_slots::<T, N>(pool)).unwrap();
    let contents = s
        .iter()
        .map(|p| (!p.is_null()).then(|| pool.read(*p).unwrap()))
        .collect();
    (contents, pool.objects(Some(type_num)).unwrap().len())
}

/// Moves a slot model (the state `slot_objects` reads) through an
/// allocation into the empty `slot` (`Some`) or a free of its object
/// (`None`), counting the objects; any other transition is a bug of the
/// workload's plan.
pub fn model_set<T>(slots: &mut [Option<T>], count: &mut usize, slot: usize, v: Option<T>) {
    assert_ne!(
        slots[slot].is_some(),
        v.is_some(),
        "model: slot {slot} is allocated into while full or freed while empty"
    );
    if v.is_some() {
        *count += 1;
    } else {
        *count -= 1;
    }
    slots[slot] = v;
}

/// The root's bytes: the state of the byte-range workloads.
pub fn root_bytes(pool: &Pool) -> Vec<u8> {
    let root = pool.root::<Root>().unwrap();
    pool.read(root).unwrap().to_vec()
}

pub fn tmpdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

impl Harness<Vec<u8>> {
    /// A fresh pool in Sim mode with 4 lanes of 32 KiB and a zeroed root,
    /// observed as the root's bytes.
    pub fn new() -> Self {
        Self::with(root_bytes, |_| {})
    }
}

impl<S: Clone + PartialEq + std::fmt::Debug> Harness<S> {
    /// A fresh pool in Sim mode with 4 lanes of 32 KiB, a zeroed root, the
    /// given `setup` run before tracing starts, observed by `observe`.
    pub fn with(observe: Observe<S>, setup: impl FnOnce(&Pool)) -> Self {
        Self::with_size(
            pmem_pool::MIN_POOL_SIZE.next_multiple_of(4096),
            observe,
            setup,
        )
    }

    /// As `with`, with a pool of `size` bytes (allocation workloads need
    /// room for a run per size class they use).
    pub fn with_size(size: u64, observe: Observe<S>, setup: impl FnOnce(&Pool)) -> Self {
        Self::with_lanes(size, (4, 32 * 1024), observe, setup)
    }

    /// As `with_size`, with `lanes` = (count, bytes per lane).
    pub fn with_lanes(
        size: u64,
        lanes: (u32, u32),
        observe: Observe<S>,
        setup: impl FnOnce(&Pool),
    ) -> Self {
        let dir = tmpdir();
        let opts = PoolOptions::new()
            .mode(Mode::Sim)
            .ignore_env(true)
            .lanes(lanes.0, lanes.1);
        let pool = Pool::create_with(dir.path().join("live.pool"), LAYOUT, size, &opts).unwrap();
        let root = pool.root::<Root>().unwrap();
        setup(&pool);
        let sim = pool.raw().persister().sim().unwrap().clone();
        assert_settled(&pool, &sim, "setup");
        let model = observe(&pool);
        sim.start_trace();
        Harness {
            dir,
            pool: Some(pool),
            root,
            sim,
            model,
            observe,
            steps: Vec::new(),
            checked_fully_persisted: 0,
            max_live_logs: 3,
        }
    }

    pub fn pool(&self) -> &Pool {
        self.pool.as_ref().unwrap()
    }

    /// Runs one step: `f` performs it on the pool and returns whether it
    /// committed; `apply` is what a commit does to the model.
    pub fn step(
        &mut self,
        label: impl Into<String>,
        f: impl FnOnce(&Pool, PPtr<Root>) -> bool,
        apply: impl FnOnce(&mut S),
    ) {
        let first = self.sim.counters().fences;
        let before = self.model.clone();
        let committed = f(self.pool(), self.root);
        if committed {
            apply(&mut self.model);
        }
        let end = self.sim.counters().fences;
        // The live pool must equal the model...
        let live = (self.observe)(self.pool());
        assert_eq!(live, self.model, "live state diverged after step");
        // ...and nothing may be left unflushed once the transaction is over.
        let label = label.into();
        assert_settled(self.pool(), &self.sim, &label);
        self.checked_fully_persisted += 1;
        self.steps.push(Step {
            first,
            end,
            before,
            after: self.model.clone(),
            label,
        });
    }

    /// Checks every crash image; returns (drain points, images checked).
    pub fn check_crashes(self, random_subsets: usize) -> (usize, usize) {
        self.check_crashes_with(random_subsets, 4)
    }

    /// As `check_crashes`, with the exhaustive-subset limit given.
    pub fn check_crashes_with(
        mut self,
        random_subsets: usize,
        exhaustive_up_to: u32,
    ) -> (usize, usize) {
        let mut trace = self.sim.take_trace().expect("trace was started");
        let points = trace.points();
        let opts = CrashOptions {
            random_subsets,
            seed: 0x00c0_ffee,
            exhaustive_up_to,
        };
        drop(self.pool.take());
        let file: PathBuf = self.dir.path().join("crash.pool");
        let mut checked = 0usize;
        let last = self.model.clone();
        let steps = &self.steps;
        let observe = self.observe;
        let flow = trace.for_each_image(&opts, |img| {
            let (before, after, label) = match img.drain_seq {
                None => (&last, &last, "after the last drain"),
                Some(seq) => match steps.iter().find(|s| s.first <= seq && seq < s.end) {
                    Some(s) => (&s.before, &s.after, s.label.as_str()),
                    None => panic!("drain {seq} belongs to no step"),
                },
            };
            let _ = std::fs::remove_file(&file);
            std::fs::write(&file, img.bytes).unwrap();
            let opts = PoolOptions::new().mode(Mode::Msync).ignore_env(true);
            let pool = match Pool::open_with(&file, Some(LAYOUT), &opts) {
                Ok(p) => p,
                Err(e) => panic!(
                    "crash image at point {} ({label}, {:?}) does not open: {e}",
                    img.point, img.selection
                ),
            };
            let heap = pool.check_heap().unwrap();
            assert!(
                heap.problems.is_empty(),
                "crash image at point {} ({label}, {:?}): heap inconsistent: {:?}",
                img.point,
                img.selection,
                heap.problems
            );
            let got = observe(&pool);
            if got != *before && got != *after {
                panic!(
                    "crash image at point {} ({label}, {:?}, {} dirty lines added) recovered to neither state:\n got    {:?}\n before {:?}\n after  {:?}",
                    img.point,
                    img.selection,
                    img.added_lines.len(),
                    Abbrev(&got),
                    Abbrev(before),
                    Abbrev(after)
                );
            }
            // With one thread, at most three lanes held a live log: the
            // interrupted operation's, the previous one's (parked: its bump
            // is stored after the next drain) and the one before (its
            // stored bump is fenced by the drain after that).
            assert!(
                pool.recovered().len() <= self.max_live_logs,
                "{:?}",
                pool.recovered()
            );
            drop(pool);
            checked += 1;
            ControlFlow::<()>::Continue(())
        });
        assert!(flow.is_continue());
        assert!(
            checked >= points,
            "every point yields at least its persisted image"
        );
        (points, checked)
    }
}

/// Debug output cut to a readable length.
struct Abbrev<'a, S>(&'a S);

impl<S: std::fmt::Debug> std::fmt::Debug for Abbrev<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = format!("{:?}", self.0);
        if s.len() > 300 {
            write!(f, "{}... ({} chars)", &s[..300], s.len())
        } else {
            f.write_str(&s)
        }
    }
}

/// splitmix64, the generator of the peer workloads.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A random range of 8..=4096 bytes inside the root.
    pub fn range(&mut self) -> (usize, usize) {
        let len = 8 + self.below(4089) as usize;
        let off = self.below((ROOT - len) as u64 + 1) as usize;
        (off, len)
    }
}

/// Nothing may be left unflushed once a transaction is over: every line
/// whose live content is not persisted must be a lane's generation word
/// (its bump is flushed and fenced by the next drain of any transaction:
/// lazy invalidation) or a line a parked lane's redo apply left for that
/// drain to flush.
pub fn assert_settled(pool: &Pool, sim: &SimDomain, when: &str) {
    let h = pool.raw().header();
    let parked = pool.parked_lines();
    for l in sim.dirty_lines() {
        let off = (l * 64) as u64;
        if parked.contains(&off) {
            // A parked lane's redo apply: the next drain flushes it.
            continue;
        }
        let lanes =
            h.lanes_offset..h.lanes_offset + u64::from(h.lane_count) * u64::from(h.lane_size);
        let generation_line =
            lanes.contains(&off) && (off - h.lanes_offset).is_multiple_of(u64::from(h.lane_size));
        assert!(
            generation_line,
            "line {l} (offset {off:#x}) left unflushed after {when:?}"
        );
    }
}
