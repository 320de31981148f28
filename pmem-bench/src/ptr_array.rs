//! The root of `tx_alloc_free` and `atomic_alloc_free`: `PMEMoid oids[n]`
//! in C, here `n` [`PPtr`]s (16 bytes each, as a `PMEMoid`) in the root's
//! block, and the checks both programs run after each phase.

use crate::common::{BenchError, Result, root_block};
use pmem_obj::{PPtr, Persistent, Pool};

/// `n` null pointers to `T` in the pool (kept from a previous run if the
/// pool was made with the same `n`).
pub fn ptr_array<T: Persistent>(pool: &Pool, n: u64) -> Result<PPtr<PPtr<T>>> {
    let bytes = n
        .checked_mul(size_of::<PPtr<T>>() as u64)
        .ok_or_else(|| BenchError::Usage(format!("<n> = {n} is too large")))?;
    Ok(root_block(pool, bytes)?.cast())
}

/// The `n` pointers, copied out.
fn read_all<T: Persistent>(pool: &Pool, arr: PPtr<PPtr<T>>, n: u64) -> Result<Vec<PPtr<T>>> {
    let bytes = pool.read_bytes(arr.cast(), n * size_of::<PPtr<T>>() as u64)?;
    Ok(bytes
        .chunks_exact(16)
        .map(|c| {
            let w = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().unwrap_or([0; 8]));
            PPtr::from_raw(w(0), w(8))
        })
        .collect())
}

/// After the allocation phase: every slot points to a distinct object of
/// `type_num` and of at least `size` bytes, and the heap holds exactly `n`
/// objects of that type.
///
/// Never inlined, like every program's result check: `icount.sh` finds
/// them by name to leave their instructions out of the library's.
#[inline(never)]
pub fn check_allocated<T: Persistent>(
    pool: &Pool,
    arr: PPtr<PPtr<T>>,
    n: u64,
    type_num: u64,
    size: u64,
) -> Result<()> {
    let ptrs = read_all(pool, arr, n)?;
    let mut offs = Vec::with_capacity(ptrs.len());
    for (i, p) in ptrs.iter().enumerate() {
        if p.is_null() {
            return Err(BenchError::Wrong(format!(
                "slot {i} is null after allocation"
            )));
        }
        let info = pool.alloc_info(*p)?;
        if info.type_num != type_num || info.size < size {
            return Err(BenchError::Wrong(format!(
                "slot {i} points to an object of type {} and {} bytes, expected type {type_num} \
                 and {size} bytes",
                info.type_num, info.size
            )));
        }
        offs.push(p.offset());
    }
    offs.sort_unstable();
    offs.dedup();
    if offs.len() as u64 != n {
        return Err(BenchError::Wrong(format!(
            "{n} slots point to only {} distinct objects",
            offs.len()
        )));
    }
    let live = pool.objects(Some(type_num))?.len() as u64;
    if live != n {
        return Err(BenchError::Wrong(format!(
            "the heap holds {live} objects of type {type_num}, expected {n}"
        )));
    }
    Ok(())
}

/// After the free phase: every slot is null and no object of `type_num`
/// is left.
#[inline(never)]
pub fn check_freed<T: Persistent>(
    pool: &Pool,
    arr: PPtr<PPtr<T>>,
    n: u64,
    type_num: u64,
) -> Result<()> {
    if let Some(i) = read_all(pool, arr, n)?.iter().position(|p| !p.is_null()) {
        return Err(BenchError::Wrong(format!(
            "slot {i} is not null after free"
        )));
    }
    let left = pool.objects(Some(type_num))?.len();
    if left != 0 {
        return Err(BenchError::Wrong(format!(
            "{left} objects of type {type_num} are left after freeing all"
        )));
    }
    Ok(())
}
