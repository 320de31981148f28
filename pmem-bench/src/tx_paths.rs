//! `tx_paths POOL THREADS BLOCKS [BLOCK_OPS=10000] [POOL_MiB=1024] [SEED=42]`:
//! not a WORKLOADS.md program, but the tool that compares ways of running
//! tx_update's transaction inside one process.
//!
//! Between two runs of the same binary this VM's times swing by 30 % or
//! more, which hides a difference of a few per cent between two separate
//! runs (BENCHMARKS-HISTORY.md, change 47). Here the variants take turns
//! in blocks of `BLOCK_OPS` transactions per thread, all threads on the
//! same variant at once (a barrier before and after each block), so every
//! variant sees the same slow and fast phases of the machine. The first
//! round is warm-up and is not counted.
//!
//! Check a difference it shows against the tx_update program before
//! relying on it: on two threads in the twelfth session it put `write`
//! about 3 % behind `get_mut`, where the program found it 17 % behind,
//! and on one thread 7-18 % ahead, where the program found them level
//! (BENCHMARKS-HISTORY.md, change 54).
//!
//! Variants, with tx_update's root, slots and values:
//! - `get_mut`: tx_update itself: `tx.get_mut(slot)` (snapshot: undo log)
//!   and eight stores through the guard;
//! - `write`: `tx.write(slot, value)`, the same 64 bytes stored through the
//!   redo log (deferred), so one fence instead of two;
//! - `get_mut_hot`: as `get_mut`, on the first 64 slots of the thread's
//!   range only (cache-resident data: what the rest costs without the
//!   data's cache misses);
//! - `empty`: a transaction that does nothing.
//!
//! One result line per variant: `workload=tx_paths_VARIANT threads=T
//! ops=N secs=S ns_per_op=Y ...`, where `secs` adds up the variant's
//! blocks (from the barrier that starts a block to the one that ends it)
//! and `ns_per_op` is `secs` per transaction of all threads, as tx_update
//! prints it. In `counts` mode each line is followed by the variant's
//! flushes and fences per transaction. The run ends by checking that every
//! slot written holds the value of the last transaction that wrote it.

use crate::common::{Args, BenchError, Ctx, Result, prefault, splitmix64};
use crate::tx_update::{NSLOTS, Root, SLOT_BYTES, Slot, slot_range};
use pmem_obj::{Error, PPtr, Pool};
use std::sync::Barrier;
use std::time::Instant;

const USAGE: &str =
    "tx_paths <pool> <threads> <blocks> [block_ops=10000] [pool_MiB=1024] [seed=42]";
const HOT_SLOTS: u64 = 64;

/// The variants, in the order each round runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    GetMut,
    Write,
    GetMutHot,
    Empty,
}

const VARIANTS: [Variant; 4] = [
    Variant::GetMut,
    Variant::Write,
    Variant::GetMutHot,
    Variant::Empty,
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::GetMut => "get_mut",
            Variant::Write => "write",
            Variant::GetMutHot => "get_mut_hot",
            Variant::Empty => "empty",
        }
    }
}

/// One thread's sequence of slots and values, the same in the run and in
/// the check: transaction `n` of the thread (counted over all variants)
/// writes `n * 8 + k` into word `k` of its slot.
struct Stream {
    lo: u64,
    n: u64,
    rng: u64,
    count: u64,
}

impl Stream {
    fn new(t: u64, threads: u64, seed: u64) -> Self {
        let (lo, hi) = slot_range(t, threads);
        Stream {
            lo,
            n: hi - lo,
            rng: seed.wrapping_add(t),
            count: 0,
        }
    }

    /// The next write of `v` (none for `Empty`): slot index and value.
    fn next(&mut self, v: Variant) -> Option<(u64, Slot)> {
        let span = match v {
            Variant::Empty => return None,
            Variant::GetMutHot => HOT_SLOTS.min(self.n),
            Variant::GetMut | Variant::Write => self.n,
        };
        let slot = self.lo + splitmix64(&mut self.rng) % span;
        let base = self.count * 8;
        self.count += 1;
        Some((slot, std::array::from_fn(|k| base + k as u64)))
    }
}

/// Runs the comparison.
pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let a = Args::new(USAGE, args);
    let path = a.str(0, "pool")?;
    let threads = a.num(1, "threads")?;
    let blocks = a.num(2, "blocks")?;
    let block_ops = a.num_or(3, "block_ops", 10_000)?;
    let pool_mib = a.num_or(4, "pool_MiB", ctx.default_for(1024, 64))?;
    let seed = a.num_or(5, "seed", 42)?;
    a.check((1..=64).contains(&threads), "<threads> must be 1 to 64")?;
    a.check(
        blocks >= 2,
        "<blocks> must be at least 2 (the first is warm-up)",
    )?;
    a.check(block_ops >= 1, "[block_ops] must be at least 1")?;

    let pool = ctx.open_or_create(path, "pmem-bench-tx-paths", pool_mib)?;
    let root = pool.root::<Root>()?;
    let slots: PPtr<Slot> = root.cast();
    prefault(&pool, root.cast(), NSLOTS * SLOT_BYTES)?;

    let barrier = Barrier::new(threads as usize);
    let mut secs = [0f64; VARIANTS.len()];
    let mut counts = [(0u64, 0u64, 0u64); VARIANTS.len()];
    let sim = ctx.counting.then(|| pool.raw().persister().sim()).flatten();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (1..threads)
            .map(|t| {
                let (pool, barrier) = (&pool, &barrier);
                s.spawn(move || {
                    let mut st = Stream::new(t, threads, seed);
                    let mut r = Ok(());
                    for _ in 0..blocks {
                        for v in VARIANTS {
                            barrier.wait();
                            if r.is_ok() {
                                r = block(pool, slots, &mut st, v, block_ops);
                            }
                            barrier.wait();
                        }
                    }
                    r
                })
            })
            .collect();
        // Thread 0 runs here, and times each block and counts its
        // flushes between the two barriers (no one runs a transaction
        // outside them).
        let mut st = Stream::new(0, threads, seed);
        let mut r = Ok(());
        for round in 0..blocks {
            for (i, v) in VARIANTS.into_iter().enumerate() {
                let c0 = sim.map(|s| s.counters());
                barrier.wait();
                let t0 = Instant::now();
                if r.is_ok() {
                    r = block(&pool, slots, &mut st, v, block_ops);
                }
                barrier.wait();
                if round > 0 {
                    secs[i] += t0.elapsed().as_secs_f64();
                    if let (Some(s), Some(c0)) = (sim, c0) {
                        let c = s.counters();
                        counts[i].0 += c.fences - c0.fences;
                        counts[i].1 += c.flush_calls - c0.flush_calls;
                        counts[i].2 += c.flushed_lines - c0.flushed_lines;
                    }
                }
            }
        }
        for h in handles {
            h.join().unwrap_or(Err(Error::Aborted))?;
        }
        Ok(r?)
    })?;

    let ops = (blocks - 1) * block_ops * threads;
    let n = ops as f64;
    for (i, v) in VARIANTS.into_iter().enumerate() {
        println!(
            "workload=tx_paths_{} threads={threads} ops={ops} secs={:.6} ops_per_s={:.1} ns_per_op={:.1} mode={}",
            v.name(),
            secs[i],
            n / secs[i],
            secs[i] * 1e9 / n,
            pool.mode(),
        );
        if sim.is_some() {
            let (f, c, l) = counts[i];
            println!(
                "counts workload=tx_paths_{} threads={threads} ops={ops} fences={f} flush_calls={c} \
                 flushed_lines={l} fences_per_op={:.2} flush_calls_per_op={:.2} \
                 flushed_lines_per_op={:.2}",
                v.name(),
                f as f64 / n,
                c as f64 / n,
                l as f64 / n,
            );
        }
    }
    verify(&pool, root, threads, blocks, block_ops, seed)
}

/// `ops` transactions of variant `v`.
fn block(
    pool: &Pool,
    slots: PPtr<Slot>,
    st: &mut Stream,
    v: Variant,
    ops: u64,
) -> Result<(), Error> {
    for _ in 0..ops {
        let next = st.next(v);
        pool.transaction(|tx| -> Result<(), Error> {
            let Some((slot, value)) = next else {
                return Ok(());
            };
            let p = slots.at(slot);
            if v == Variant::Write {
                tx.write(p, value)?;
            } else {
                let mut w = tx.get_mut(p)?;
                for (d, s) in w.iter_mut().zip(value) {
                    *d = s;
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Replays every thread's stream: each slot written holds the value of
/// the last transaction that wrote it.
fn verify(
    pool: &Pool,
    root: PPtr<Root>,
    threads: u64,
    blocks: u64,
    block_ops: u64,
    seed: u64,
) -> Result<()> {
    let mut want = vec![None; NSLOTS as usize];
    for t in 0..threads {
        let mut st = Stream::new(t, threads, seed);
        for _ in 0..blocks {
            for v in VARIANTS {
                for _ in 0..block_ops {
                    if let Some((slot, value)) = st.next(v) {
                        want[slot as usize] = Some(value);
                    }
                }
            }
        }
    }
    let got: Vec<u64> = pool
        .read_bytes(root.cast(), NSLOTS * SLOT_BYTES)?
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .collect();
    for (s, w) in want.iter().enumerate() {
        let Some(w) = w else { continue };
        if got[s * 8..s * 8 + 8] != w[..] {
            return Err(BenchError::Wrong(format!(
                "slot {s} holds {:?}, expected {w:?}",
                &got[s * 8..s * 8 + 8]
            )));
        }
    }
    Ok(())
}
