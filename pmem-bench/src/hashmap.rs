//! `hashmap POOL NKEYS [POOL_MiB=1024] [SEED=42]` (workloads
//! `hashmap_insert` and `hashmap_lookup`, `peer/pmdk/hashmap.c`).
//!
//! Root: `{ nbuckets: u64, buckets: [PPtr<Node>; 1 << 20] }`; node
//! `{ key, value, next }` (32 bytes, type 2); `bucket(key) = (key *
//! 0x9E3779B97F4A7C15) >> 44`; keys from splitmix64 seeded with SEED,
//! value of key `i` = `i`. Insert: one transaction per key: walk the chain;
//! if the key is there, snapshot and overwrite its value, else allocate a
//! node `{key, i, old head}` and link it at the head (snapshot of the
//! bucket). Lookup: every key in insertion order, outside any transaction.
//!
//! Where the API differs: inserts walk the chain with `tx.read`, which
//! copies each node out under its range lock, and snapshot the bucket head
//! with `tx.write`; lookups read through one `Pool::view` (no transaction
//! may write while it lives, so its reads take no lock: the same loads as
//! C's `pmemobj_direct`). The root and node layouts are byte for byte the C ones
//! (`PPtr` is 16 bytes, as `PMEMoid`).

use crate::common::{Args, BenchError, Ctx, Result, prefault, splitmix64};
use pmem_obj::{Error, PPtr, Pool, bytemuck};
use std::collections::HashMap;
use std::mem::offset_of;

const USAGE: &str = "hashmap <pool> <nkeys> [pool_MiB=1024] [seed=42]";
const NBUCKETS: usize = 1 << 20;
const NODE_TYPE_NUM: u64 = 2;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "pmem_obj::bytemuck")]
struct Node {
    key: u64,
    value: u64,
    next: PPtr<Node>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "pmem_obj::bytemuck")]
struct Root {
    nbuckets: u64,
    buckets: [PPtr<Node>; NBUCKETS],
}

fn bucket_of(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44
}

/// Runs the workload.
pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let a = Args::new(USAGE, args);
    let path = a.str(0, "pool")?;
    let n = a.num(1, "nkeys")?;
    let pool_mib = a.num_or(2, "pool_MiB", ctx.default_for(1024, 128))?;
    let seed = a.num_or(3, "seed", 42)?;
    a.check(n > 0, "<nkeys> must be at least 1")?;
    let pool = ctx.open_or_create(path, "pmem-bench-hashmap", pool_mib)?;
    let root = pool.root::<Root>()?;
    prefault(&pool, root.cast(), size_of::<Root>() as u64)?;
    let nbuckets: PPtr<u64> = root.field(offset_of!(Root, nbuckets));
    if pool.read(nbuckets)? == 0 {
        pool.transaction(|tx| tx.write(nbuckets, NBUCKETS as u64))?;
    }
    let buckets: PPtr<PPtr<Node>> = root.field(offset_of!(Root, buckets));

    // Keys are generated before the timed phase, as in C.
    let mut s = seed;
    let keys: Vec<u64> = (0..n).map(|_| splitmix64(&mut s)).collect();

    let mut updated = 0u64;
    let phase = ctx.start(&pool);
    for (i, &key) in (0u64..).zip(&keys) {
        let head_slot = buckets.at(bucket_of(key));
        let found = pool.transaction(|tx| -> Result<bool, Error> {
            let head = tx.read(head_slot)?;
            let mut cur = head;
            while !cur.is_null() {
                let nd = tx.read(cur)?;
                if nd.key == key {
                    tx.write(cur.field::<u64>(offset_of!(Node, value)), i)?;
                    return Ok(true);
                }
                cur = nd.next;
            }
            let node = Node {
                key,
                value: i,
                next: head,
            };
            let p = tx.alloc_typed(NODE_TYPE_NUM, node)?;
            tx.write(head_slot, p)?;
            Ok(false)
        })?;
        updated += u64::from(found);
    }
    let secs = phase.secs();
    phase.report(ctx, &pool, "hashmap_insert", 1, n, secs, "");

    let (mut hits, mut chk) = (0u64, 0u64);
    let phase = ctx.start(&pool);
    let view = pool.view()?;
    for &key in &keys {
        let mut cur = *view.get(buckets.at(bucket_of(key)))?;
        while !cur.is_null() {
            let nd = view.get(cur)?;
            if nd.key == key {
                hits += 1;
                chk = chk.wrapping_add(nd.value);
                break;
            }
            cur = nd.next;
        }
    }
    drop(view);
    let secs = phase.secs();
    let extra = format!("found={hits} dup_updates={updated} chk={chk}");
    phase.report(ctx, &pool, "hashmap_lookup", 1, n, secs, &extra);
    verify(&pool, buckets, &keys, hits, chk)
}

/// Every key is found, holding the index of its last insertion. (Never
/// inlined: `icount.sh` finds it by name.)
#[inline(never)]
fn verify(pool: &Pool, buckets: PPtr<PPtr<Node>>, keys: &[u64], hits: u64, chk: u64) -> Result<()> {
    let mut last = HashMap::with_capacity(keys.len());
    for (i, &k) in (0u64..).zip(keys) {
        last.insert(k, i);
    }
    let want_chk = keys.iter().fold(0u64, |c, k| c.wrapping_add(last[k]));
    if hits != keys.len() as u64 || chk != want_chk {
        return Err(BenchError::Wrong(format!(
            "lookups found {hits} of {} keys with checksum {chk}, expected {want_chk}",
            keys.len()
        )));
    }
    for (&key, &want) in &last {
        let mut cur = pool.read(buckets.at(bucket_of(key)))?;
        let mut got = None;
        while !cur.is_null() {
            let nd = pool.read(cur)?;
            if nd.key == key {
                got = Some(nd.value);
                break;
            }
            cur = nd.next;
        }
        if got != Some(want) {
            return Err(BenchError::Wrong(format!(
                "key {key:#x} holds {got:?}, expected value {want}"
            )));
        }
    }
    Ok(())
}
