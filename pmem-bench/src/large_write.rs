//! `large_write POOL nt|memcpy [TOTAL_MiB=1024] [CHUNK_MiB=8] [POOL_MiB=2048]`
//! (workloads `large_write_memcpy_persist` and `large_write_memcpy+persist`,
//! `peer/pmdk/large_write.c`).
//!
//! Copies TOTAL MiB into one object in CHUNK-MiB pieces, outside any
//! transaction: `nt` is the library's persisting copy
//! (`Persister::memcpy_persist`: non-temporal stores, one fence), `memcpy`
//! a plain copy then `Persister::persist` (flush every line, one fence).
//! `MiB_per_s` = TOTAL / wall time; `median_chunk_MiB_per_s` = CHUNK /
//! the median chunk time. Every chunk is checked afterwards.
//!
//! Where the API differs: the destination is a block the root points to
//! (C's root is sized at run time); the copy goes through
//! `pool.raw().persister()`, the documented `unsafe` escape hatch for
//! writes outside a transaction (as `pmemobj_memcpy_persist` is in C).

use crate::common::{Args, BenchError, Ctx, Result, root_block};
use std::time::Instant;

const USAGE: &str = "large_write <pool> <nt|memcpy> [total_MiB=1024] [chunk_MiB=8] [pool_MiB=2048]";
const MIB: u64 = 1 << 20;

/// Runs the workload.
pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let a = Args::new(USAGE, args);
    let path = a.str(0, "pool")?;
    let mode = a.str(1, "nt|memcpy")?;
    let nt = mode == "nt";
    a.check(nt || mode == "memcpy", "<mode> must be nt or memcpy")?;
    let total_mib = a.num_or(2, "total_MiB", ctx.default_for(1024, 32))?;
    let chunk_mib = a.num_or(3, "chunk_MiB", 8)?;
    let pool_mib = a.num_or(4, "pool_MiB", ctx.default_for(2048, 64))?;
    a.check(
        chunk_mib > 0 && total_mib >= chunk_mib && total_mib <= 1 << 30,
        "<chunk_MiB> must be at least 1 and at most <total_MiB>",
    )?;
    let (total, chunk) = (total_mib * MIB, chunk_mib * MIB);
    let pool = ctx.open_or_create(path, "pmem-bench-large-write", pool_mib)?;
    let dst = root_block(&pool, total)?;
    // The writes below go through the raw pool, outside transactions: the
    // transaction that allocated the block must be retired durably first.
    pool.settle()?;
    let src: Vec<u8> = (0..chunk)
        .step_by(8)
        .flat_map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes())
        .collect();

    let persister = pool.raw().persister();
    let nchunks = total / chunk;
    let mut times = Vec::with_capacity(nchunks as usize);
    let phase = ctx.start(&pool);
    for c in 0..nchunks {
        let off = (dst.offset() + c * chunk) as usize;
        let tc = Instant::now();
        if nt {
            // SAFETY: `off..off+chunk` lies inside the root's block, a live
            // allocation of this pool; no guard (`PRef`, `TxMut`) into it is
            // alive, no transaction runs and no other thread exists, so
            // nothing else accesses those bytes; `src` is a separate Vec.
            unsafe { persister.memcpy_persist(off, &src)? };
        } else {
            // SAFETY: as above: the destination is inside the block, owned
            // by this thread alone, and does not overlap `src`.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), persister.base().add(off), src.len())
            };
            persister.persist(off, src.len())?;
        }
        times.push(tc.elapsed().as_secs_f64());
    }
    let secs = phase.secs();
    times.sort_by(f64::total_cmp);
    let k = times.len();
    let med = if k % 2 == 1 {
        times[k / 2]
    } else {
        0.5 * (times[k / 2 - 1] + times[k / 2])
    };
    let extra = format!(
        "MiB={} MiB_per_s={:.1} median_chunk_MiB_per_s={:.1}",
        nchunks * chunk_mib,
        (nchunks * chunk_mib) as f64 / secs,
        chunk_mib as f64 / med
    );
    let name = if nt {
        "large_write_memcpy_persist"
    } else {
        "large_write_memcpy+persist"
    };
    phase.report(ctx, &pool, name, 1, nchunks, secs, &extra);

    for c in 0..nchunks {
        if pool.read_bytes(dst.at(c * chunk), chunk)? != src {
            return Err(BenchError::Wrong(format!(
                "chunk {c} of the destination differs from the source"
            )));
        }
    }
    if ctx.counting
        && let Some(sim) = persister.sim()
        && sim.persisted_image()[dst.offset() as usize..][..(nchunks * chunk) as usize]
            .chunks(chunk as usize)
            .any(|c| c != src)
    {
        return Err(BenchError::Wrong(
            "the persisted image differs from the source".into(),
        ));
    }
    Ok(())
}
