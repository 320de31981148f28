//! Crash-simulation harness shared by the `crash_*` tests.
//!
//! A workload runs on a pool in `Mode::Sim` while the simulated domain
//! records a trace. Each transaction (a "step") is registered with the range
//! of drain sequence numbers it executed and the root content the model
//! expects before and after it. Then, for every drain point, the persisted
//! image alone and random subsets of the not-yet-persisted dirty lines are
//! written to a file, opened (which runs recovery) and the root is compared
//! with the model: it must equal the state before or after the step that
//! was interrupted, exactly.
#![allow(dead_code)]

use pmem_pool::sim::{CrashOptions, SimDomain};
use pmem_tx::{Mode, PPtr, Pool, PoolOptions};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

/// Root size used by the workloads.
pub const ROOT: usize = 64 * 1024;
pub type Root = [u8; ROOT];
const LAYOUT: &str = "crash-sim";

pub struct Step {
    /// Drains with seq in `first..end` belong to this step.
    pub first: u64,
    pub end: u64,
    pub before: Vec<u8>,
    pub after: Vec<u8>,
    pub label: String,
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub pool: Option<Pool>,
    pub root: PPtr<Root>,
    pub sim: Arc<SimDomain>,
    pub model: Vec<u8>,
    pub steps: Vec<Step>,
    pub checked_fully_persisted: usize,
}

pub fn tmpdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

impl Harness {
    /// A fresh pool in Sim mode with 4 lanes of 32 KiB and a zeroed root.
    pub fn new() -> Self {
        let dir = tmpdir();
        let opts = PoolOptions::new()
            .mode(Mode::Sim)
            .ignore_env(true)
            .lanes(4, 32 * 1024);
        let size = pmem_pool::MIN_POOL_SIZE.next_multiple_of(4096);
        let pool = Pool::create_with(dir.path().join("live.pool"), LAYOUT, size, &opts).unwrap();
        let root = pool.root::<Root>().unwrap();
        let sim = pool.raw().persister().sim().unwrap().clone();
        assert!(sim.is_fully_persisted(), "setup left lines unflushed");
        sim.start_trace();
        Harness {
            dir,
            pool: Some(pool),
            root,
            sim,
            model: vec![0; ROOT],
            steps: Vec::new(),
            checked_fully_persisted: 0,
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
        apply: impl FnOnce(&mut [u8]),
    ) {
        let first = self.sim.counters().fences;
        let before = self.model.clone();
        let committed = f(self.pool(), self.root);
        if committed {
            apply(&mut self.model);
        }
        let end = self.sim.counters().fences;
        // The live pool must equal the model...
        let live = self.pool().read(self.root).unwrap();
        assert_eq!(&live[..], &self.model[..], "live state diverged after step");
        // ...and nothing may be left unflushed once the transaction is over.
        assert!(
            self.sim.is_fully_persisted(),
            "lines left unflushed after a finished transaction: {:?}",
            &self.sim.dirty_lines()[..self.sim.dirty_lines().len().min(8)]
        );
        self.checked_fully_persisted += 1;
        self.steps.push(Step {
            first,
            end,
            before,
            after: self.model.clone(),
            label: label.into(),
        });
    }

    /// Checks every crash image; returns (drain points, images checked).
    pub fn check_crashes(mut self, random_subsets: usize) -> (usize, usize) {
        let mut trace = self.sim.take_trace().expect("trace was started");
        let points = trace.points();
        let opts = CrashOptions {
            random_subsets,
            seed: 0x00c0_ffee,
            exhaustive_up_to: 4,
        };
        drop(self.pool.take());
        let file: PathBuf = self.dir.path().join("crash.pool");
        let mut checked = 0usize;
        let last = self.model.clone();
        let steps = &self.steps;
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
            let root = pool.root::<Root>().unwrap();
            let got = pool.read(root).unwrap();
            if got[..] != before[..] && got[..] != after[..] {
                let diff = |m: &[u8]| got.iter().zip(m).position(|(a, b)| a != b);
                panic!(
                    "crash image at point {} ({label}, {:?}, {} dirty lines added) recovered to neither state: first diff vs before at {:?}, vs after at {:?}",
                    img.point,
                    img.selection,
                    img.added_lines.len(),
                    diff(before),
                    diff(after)
                );
            }
            // Recovery left no pending log behind.
            assert!(pool.recovered().len() <= 1);
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
