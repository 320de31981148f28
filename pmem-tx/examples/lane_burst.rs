//! What a burst of concurrent transactions costs the transactions after it
//! (issue 5): BURST threads each hold a transaction, and so a lane, at the
//! same moment; then one thread runs tx_update-style transactions (snapshot
//! a random 64-byte slot of 16 MB, write 8 words) and the time per
//! transaction is printed.
//!
//! Every lane the burst used committed with a generation bump that a later
//! drain must write back, once. Before lane marks were tidied
//! (BENCHMARKS-HISTORY.md, change 18), every drain wrote back the word of
//! every lane ever used, for as long as the pool stayed open, so a pool
//! that once saw 200 threads made each later transaction about five times
//! slower.
//!
//! Run: `cargo run --release -p pmem-tx --example lane_burst [-- BURST
//! [OPS]]` (defaults 200 and 500,000; BURST at most 255). The pool goes to
//! `$PMEM_BENCH_DIR` (default /dev/shm) and runs in `Mode::Pmem` forced.
//! Prints `burst=B ns_per_op=X`; compare with BURST 1.

use pmem_tx::{Mode, Pool, PoolOptions};
use std::sync::Barrier;
use std::time::Instant;

type Slot = [u64; 8];
const SLOTS: u64 = 250_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let burst: u64 = args.next().map_or(Ok(200), |s| s.parse())?;
    let ops: u64 = args.next().map_or(Ok(500_000), |s| s.parse())?;
    if !(1..=255).contains(&burst) {
        return Err("BURST must be 1 to 255 (the pool has 256 lanes)".into());
    }
    let dir = std::env::var("PMEM_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let tmp = tempfile::tempdir_in(&dir)?;
    let opts = PoolOptions::new().mode(Mode::Pmem);
    let pool = Pool::create_with(
        tmp.path().join("lane_burst.pool"),
        "lane-burst",
        256 << 20,
        &opts,
    )?;
    let slots = pool.root::<[Slot; SLOTS as usize]>()?.cast::<Slot>();

    // BURST transactions at once, each holding its lane at the barrier
    // (slots 977 apart: no two share a lock stripe).
    let barrier = Barrier::new(burst as usize);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..burst)
            .map(|t| {
                let (pool, barrier) = (&pool, &barrier);
                s.spawn(move || {
                    pool.transaction(|tx| -> pmem_tx::Result<()> {
                        tx.get_mut(slots.at(t * 977))?[0] = t;
                        barrier.wait();
                        Ok(())
                    })
                })
            })
            .collect();
        hs.into_iter()
            .try_for_each(|h| h.join().expect("burst thread panicked"))
    })?;

    let mut rng = 42u64;
    let t0 = Instant::now();
    for i in 0..ops {
        let slot = slots.at(splitmix64(&mut rng) % SLOTS);
        pool.transaction(|tx| -> pmem_tx::Result<()> {
            for (k, v) in tx.get_mut(slot)?.iter_mut().enumerate() {
                *v = i * 8 + k as u64;
            }
            Ok(())
        })?;
    }
    let ns = t0.elapsed().as_nanos() as f64 / ops as f64;
    println!("burst={burst} ns_per_op={ns:.1}");
    Ok(())
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
