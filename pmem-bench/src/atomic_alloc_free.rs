//! `atomic_alloc_free POOL SIZE N [POOL_MiB=1024]` (workloads
//! `atomic_alloc_SIZE` and `atomic_free_SIZE`,
//! `peer/pmdk/atomic_alloc_free.c`).
//!
//! Phase alloc: for `i` in `0..n`, allocate SIZE bytes of type 1 outside
//! any transaction, the pointer stored crash-atomically into slot `i` of
//! the root (`pmemobj_alloc` without constructor). Phase free: same order,
//! free each and null its slot (`pmemobj_free`).
//!
//! `Pool::alloc_uninit_into` is the same operation as `pmemobj_alloc`
//! without constructor: the object's bytes are left as they were, only its
//! header is written. Where the API differs: it is typed, so SIZE must be
//! one of the sizes listed in [`SIZES`] (the object is `[u8; SIZE]`). The
//! slots live in the root's block (see `BlockRoot`).

use crate::common::{Args, BenchError, Ctx, Result};
use crate::ptr_array::{check_allocated, check_freed, ptr_array};
use pmem_obj::{PPtr, Pool};

const USAGE: &str = "atomic_alloc_free <pool> <size_bytes> <n> [pool_MiB=1024]";
const TYPE_NUM: u64 = 1;

/// Object sizes this program accepts.
pub const SIZES: [u64; 12] = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 65536];

/// Runs the workload.
pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let a = Args::new(USAGE, args);
    let path = a.str(0, "pool")?;
    let size = a.num(1, "size_bytes")?;
    let n = a.num(2, "n")?;
    let pool_mib = a.num_or(3, "pool_MiB", ctx.default_for(1024, 64))?;
    a.check(n > 0, "<n> must be at least 1")?;
    let pool = ctx.open_or_create(path, "pmem-bench-atomic-alloc-free", pool_mib)?;
    match size {
        8 => sized::<8>(ctx, &pool, n),
        16 => sized::<16>(ctx, &pool, n),
        32 => sized::<32>(ctx, &pool, n),
        64 => sized::<64>(ctx, &pool, n),
        128 => sized::<128>(ctx, &pool, n),
        256 => sized::<256>(ctx, &pool, n),
        512 => sized::<512>(ctx, &pool, n),
        1024 => sized::<1024>(ctx, &pool, n),
        2048 => sized::<2048>(ctx, &pool, n),
        4096 => sized::<4096>(ctx, &pool, n),
        8192 => sized::<8192>(ctx, &pool, n),
        65536 => sized::<65536>(ctx, &pool, n),
        _ => Err(BenchError::Usage(format!(
            "<size_bytes> {size} is not supported: use one of {SIZES:?}\n  {USAGE}"
        ))),
    }
}

fn sized<const N: usize>(ctx: &Ctx, pool: &Pool, n: u64) -> Result<()> {
    let arr = ptr_array::<[u8; N]>(pool, n)?;

    let phase = ctx.start(pool);
    for i in 0..n {
        let slot: PPtr<PPtr<[u8; N]>> = arr.at(i);
        pool.alloc_uninit_into(slot, TYPE_NUM)?;
    }
    let secs = phase.secs();
    phase.report(ctx, pool, &format!("atomic_alloc_{N}"), 1, n, secs, "");
    check_allocated(pool, arr, n, TYPE_NUM, N as u64)?;

    let phase = ctx.start(pool);
    for i in 0..n {
        pool.free_from(arr.at(i))?;
    }
    let secs = phase.secs();
    phase.report(ctx, pool, &format!("atomic_free_{N}"), 1, n, secs, "");
    check_freed(pool, arr, n, TYPE_NUM)
}
