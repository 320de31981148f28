//! `tx_update POOL THREADS OPS_PER_THREAD [POOL_MiB=1024] [SEED=42]`
//! (workload `tx_update_64`, `peer/pmdk/tx_update.c`).
//!
//! Root: 1,000,000 pairs of u64 (16,000,000 B), seen as 250,000 slots of
//! 64 B. Thread `t` of `T` owns slots `[t*250000/T, (t+1)*250000/T)`; each
//! operation is one transaction that snapshots a slot chosen by
//! splitmix64 (seed + t) and writes 8 u64 (`i*8 + k`) into it. `secs` runs
//! from the start barrier to the last thread's end.
//!
//! Where the API differs: C snapshots with `pmemobj_tx_add_range` and
//! stores through a raw pointer; here `tx.get_mut(slot)` snapshots the same
//! 64 bytes (and takes their range lock) and returns the guard the stores
//! go through. The root type is `[[u64; 8]; 250_000]`, the same bytes as
//! `uint64_t pairs[1000000][2]`.

use crate::common::{Args, BenchError, Ctx, Result, prefault, splitmix64};
use pmem_obj::{Error, PPtr, Pool};
use std::sync::Barrier;
use std::time::Instant;

const USAGE: &str = "tx_update <pool> <threads> <ops_per_thread> [pool_MiB=1024] [seed=42]";
const NPAIRS: u64 = 1_000_000;
pub(crate) const SLOT_BYTES: u64 = 64;
pub(crate) const NSLOTS: u64 = NPAIRS * 16 / SLOT_BYTES;
pub(crate) type Slot = [u64; 8];
pub(crate) type Root = [Slot; NSLOTS as usize];

/// Runs the workload.
pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let a = Args::new(USAGE, args);
    let path = a.str(0, "pool")?;
    let threads = a.num(1, "threads")?;
    let ops = a.num(2, "ops_per_thread")?;
    let pool_mib = a.num_or(3, "pool_MiB", ctx.default_for(1024, 64))?;
    let seed = a.num_or(4, "seed", 42)?;
    a.check((1..=64).contains(&threads), "<threads> must be 1 to 64")?;

    let pool = ctx.open_or_create(path, "pmem-bench-tx-update", pool_mib)?;
    let root = pool.root::<Root>()?;
    prefault(&pool, root.cast(), NSLOTS * SLOT_BYTES)?;
    let slots: PPtr<Slot> = root.cast();

    let barrier = Barrier::new(threads as usize + 1);
    let (phase, ends) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (pool, barrier) = (&pool, &barrier);
                s.spawn(move || worker(pool, barrier, slots, t, threads, ops, seed))
            })
            .collect();
        let phase = ctx.start(&pool);
        barrier.wait();
        let ends: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(Error::Aborted)))
            .collect();
        (phase, ends)
    });
    let mut end = phase.t0;
    for e in ends {
        end = end.max(e?);
    }
    let secs = (end - phase.t0).as_secs_f64();
    phase.report(ctx, &pool, "tx_update_64", threads, ops * threads, secs, "");
    verify(&pool, root, threads, ops, seed)
}

/// Thread `t`'s slots: `lo..hi`.
pub(crate) fn slot_range(t: u64, threads: u64) -> (u64, u64) {
    (t * NSLOTS / threads, (t + 1) * NSLOTS / threads)
}

fn worker(
    pool: &Pool,
    barrier: &Barrier,
    slots: PPtr<Slot>,
    t: u64,
    threads: u64,
    ops: u64,
    seed: u64,
) -> Result<Instant, Error> {
    let (lo, hi) = slot_range(t, threads);
    let mut rng = seed.wrapping_add(t);
    barrier.wait();
    for i in 0..ops {
        let slot = slots.at(lo + splitmix64(&mut rng) % (hi - lo));
        pool.transaction(|tx| -> Result<(), Error> {
            let mut w = tx.get_mut(slot)?;
            for (k, v) in w.iter_mut().enumerate() {
                *v = i * 8 + k as u64;
            }
            Ok(())
        })?;
    }
    Ok(Instant::now())
}

/// Replays each thread's slot choices: every slot a thread wrote holds
/// `i*8 + k` for the last operation `i` that chose it. (Never inlined:
/// `icount.sh` finds it by name.)
#[inline(never)]
fn verify(pool: &Pool, root: PPtr<Root>, threads: u64, ops: u64, seed: u64) -> Result<()> {
    let mut last = vec![u64::MAX; NSLOTS as usize];
    for t in 0..threads {
        let (lo, hi) = slot_range(t, threads);
        let mut rng = seed.wrapping_add(t);
        for i in 0..ops {
            last[(lo + splitmix64(&mut rng) % (hi - lo)) as usize] = i;
        }
    }
    let bytes = pool.read_bytes(root.cast(), NSLOTS * SLOT_BYTES)?;
    for (s, &i) in last.iter().enumerate() {
        if i == u64::MAX {
            continue;
        }
        let at = s * SLOT_BYTES as usize;
        for k in 0..8 {
            let b = &bytes[at + k * 8..at + k * 8 + 8];
            let got = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            if got != i * 8 + k as u64 {
                return Err(BenchError::Wrong(format!(
                    "slot {s} word {k} holds {got}, expected {} (op {i})",
                    i * 8 + k as u64
                )));
            }
        }
    }
    Ok(())
}
