//! `tx_alloc_free POOL N [POOL_MiB=1024]` (workloads `tx_alloc_64` and
//! `tx_free_64`, `peer/pmdk/tx_alloc_free.c`).
//!
//! Phase alloc: for `i` in `0..n`, one transaction: snapshot slot `i` (a
//! 16-byte pointer), allocate 64 bytes of type 1, store the pointer.
//! Phase free: same order, one transaction: snapshot slot `i`, free the
//! object, null the slot. One result line per phase.
//!
//! Where the API differs: `tx.write(slot, p)` is `pmemobj_tx_add_range` of
//! the 16 bytes plus the store, and `tx.replace(slot, null)` is the same
//! plus the read of the old pointer; the object is allocated with `tx.zalloc`
//! (its 64 bytes are zeroed: `pmemobj_tx_alloc` leaves them as they were,
//! a 64-byte store more here). The slots live in the root's block (see
//! `BlockRoot`) rather than in a root sized at run time.

use crate::common::{Args, Ctx, Result};
use crate::ptr_array::{check_allocated, check_freed, ptr_array};
use pmem_obj::{Error, PPtr};

const USAGE: &str = "tx_alloc_free <pool> <n> [pool_MiB=1024]";
const TYPE_NUM: u64 = 1;
type Obj = [u64; 8];

/// Runs the workload.
pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let a = Args::new(USAGE, args);
    let path = a.str(0, "pool")?;
    let n = a.num(1, "n")?;
    let pool_mib = a.num_or(2, "pool_MiB", ctx.default_for(1024, 64))?;
    a.check(n > 0, "<n> must be at least 1")?;
    let pool = ctx.open_or_create(path, "pmem-bench-tx-alloc-free", pool_mib)?;
    let arr = ptr_array::<Obj>(&pool, n)?;

    let phase = ctx.start(&pool);
    for i in 0..n {
        let slot: PPtr<PPtr<Obj>> = arr.at(i);
        pool.transaction(|tx| -> Result<(), Error> {
            let p = tx.zalloc::<Obj>(TYPE_NUM)?;
            tx.write(slot, p)
        })?;
    }
    let secs = phase.secs();
    phase.report(ctx, &pool, "tx_alloc_64", 1, n, secs, "");
    check_allocated(&pool, arr, n, TYPE_NUM, 64)?;

    let phase = ctx.start(&pool);
    for i in 0..n {
        let slot: PPtr<PPtr<Obj>> = arr.at(i);
        pool.transaction(|tx| -> Result<(), Error> {
            let p = tx.replace(slot, PPtr::null())?;
            tx.free(p)
        })?;
    }
    let secs = phase.secs();
    phase.report(ctx, &pool, "tx_free_64", 1, n, secs, "");
    check_freed(&pool, arr, n, TYPE_NUM)
}
