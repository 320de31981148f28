//! A warmed-up small transaction allocates nothing on the heap: the
//! transaction state of a thread is reused, its sets keep their capacity,
//! and the flush list is merged in place. Counted with a counting global
//! allocator (its own test binary, so no other test's allocations count;
//! only the allocations of the thread under test are counted).

use pmem_tx::{Error, Mode, PPtr, Pool, PoolOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter only observes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations made by this thread during `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.load(Ordering::Relaxed) - before
}

type Slot = [u64; 8];
const SLOTS: u64 = 1024;

fn pool(dir: &tempfile::TempDir) -> (Pool, PPtr<Slot>) {
    // Pmem mode: flush and fence only (the Msync and Sim domains keep
    // records of their own, which are not the transaction's cost).
    let opts = PoolOptions::new().mode(Mode::Pmem).ignore_env(true);
    let p = Pool::create_with(dir.path().join("a.pool"), "no-alloc", 16 << 20, &opts).unwrap();
    let root = p.root::<[Slot; SLOTS as usize]>().unwrap();
    (p, root.cast())
}

fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// The `pmem-bench tx_update` transaction: snapshot one random slot,
/// write its 8 words.
fn tx_update(p: &Pool, slots: PPtr<Slot>, rng: &mut u64, i: u64) {
    let slot = slots.at(next(rng) % SLOTS);
    p.transaction(|tx| -> Result<(), Error> {
        let mut w = tx.get_mut(slot)?;
        for (k, v) in w.iter_mut().enumerate() {
            *v = i * 8 + k as u64;
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn warmed_up_small_transactions_do_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let (p, slots) = pool(&dir);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..200 {
        tx_update(&p, slots, &mut rng, i);
    }

    let n = allocations(|| {
        for i in 0..1000 {
            tx_update(&p, slots, &mut rng, i);
        }
    });
    assert_eq!(n, 0, "allocations in 1000 tx_update transactions");

    // Read-only: shared locks on a few slots, no lane.
    let read = |rng: &mut u64| {
        p.transaction(|tx| -> Result<u64, Error> {
            let mut sum = 0;
            for _ in 0..4 {
                sum += tx.read(slots.at(next(rng) % SLOTS))?[3];
            }
            Ok(sum)
        })
        .unwrap()
    };
    read(&mut rng);
    let n = allocations(|| {
        for _ in 0..1000 {
            read(&mut rng);
        }
    });
    assert_eq!(n, 0, "allocations in 1000 read-only transactions");

    // Several overlapping ranges, a nested transaction, and a read of a
    // slot written before: the covered set and the flush list grow and
    // merge, still in reused memory.
    let mixed = |rng: &mut u64, i: u64| {
        // 200 bytes from `a` reach into the fourth slot after it; the
        // root's block has no slack past its array (a 64 KiB request has a
        // 64 KiB block since heap version 3).
        let a = slots.at(next(rng) % (SLOTS - 4));
        p.transaction(|tx| -> Result<(), Error> {
            tx.write(a.field::<u64>(8), i)?;
            tx.write(a.at(1), [i; 8])?;
            tx.bytes_mut(a.cast(), 200)?[5] = i as u8;
            tx.transaction(|tx| tx.write(a.at(2).field::<u64>(16), i))?;
            let _ = tx.read(a)?;
            Ok(())
        })
        .unwrap()
    };
    mixed(&mut rng, 0);
    let n = allocations(|| {
        for i in 0..1000 {
            mixed(&mut rng, i);
        }
    });
    assert_eq!(n, 0, "allocations in 1000 multi-range transactions");

    // An aborted update (rolled back) reuses the state too.
    let aborted = |rng: &mut u64, i: u64| {
        let slot = slots.at(next(rng) % SLOTS);
        let r = p.transaction(|tx| -> Result<(), Error> {
            tx.write(slot, [i; 8])?;
            Err(Error::Aborted)
        });
        assert!(matches!(r, Err(Error::Aborted)));
    };
    aborted(&mut rng, 0);
    let n = allocations(|| {
        for i in 0..1000 {
            aborted(&mut rng, i);
        }
    });
    assert_eq!(n, 0, "allocations in 1000 aborted transactions");
}

/// The state kept for reuse really is cleared: a transaction after a big
/// one (past the small sets' thresholds) snapshots what it changes and
/// rolls it back.
#[test]
fn reused_state_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (p, slots) = pool(&dir);
    p.transaction(|tx| -> Result<(), Error> {
        // 512 disjoint ranges and as many stripes: both sets move to maps.
        for k in 0..512 {
            tx.write(slots.at(k * 2), [k; 8])?;
        }
        Ok(())
    })
    .unwrap();
    for k in [0u64, 2, 4, 1000] {
        let before = p.read(slots.at(k)).unwrap();
        let r = p.transaction(|tx| -> Result<(), Error> {
            tx.write(slots.at(k), [77; 8])?;
            Err(Error::Aborted)
        });
        assert!(r.is_err());
        assert_eq!(p.read(slots.at(k)).unwrap(), before, "slot {k} rolled back");
    }
    // And the locks of the big one were all returned: another thread can
    // write every slot it wrote.
    std::thread::scope(|s| {
        s.spawn(|| {
            p.transaction(|tx| -> Result<(), Error> {
                for k in 0..512 {
                    tx.write(slots.at(k * 2), [1; 8])?;
                }
                Ok(())
            })
            .unwrap();
        });
    });
    assert_eq!(p.read(slots.at(1022)).unwrap(), [1; 8]);
}

#[repr(C)]
#[derive(Clone, Copy, pmem_tx::bytemuck::Pod, pmem_tx::bytemuck::Zeroable)]
#[bytemuck(crate = "pmem_tx::bytemuck")]
struct Node {
    key: u64,
    value: u64,
    next: PPtr<Node>,
}

/// The `pmem-bench hashmap` insert: read a bucket head, allocate a node,
/// link it in. One allocation per transaction is left (was 9): commit
/// hands the list of reserved blocks to `Heap::after_commit` by value
/// (`std::mem::take` in `commit_durably`), so the next reservation grows a
/// new list. Draining it instead makes this zero.
#[test]
fn warmed_up_allocating_transactions_do_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let (p, slots) = pool(&dir);
    let heads: PPtr<PPtr<Node>> = slots.cast();
    let mut rng = 7u64;
    let insert = |rng: &mut u64, i: u64| {
        let head_slot = heads.at(next(rng) % 256);
        p.transaction(|tx| -> Result<(), Error> {
            let head = tx.read(head_slot)?;
            let node = tx.alloc_typed(
                2,
                Node {
                    key: i,
                    value: i,
                    next: head,
                },
            )?;
            tx.write(head_slot, node)?;
            Ok(())
        })
        .unwrap();
    };
    for i in 0..2000 {
        insert(&mut rng, i);
    }
    let n = allocations(|| {
        for i in 0..1000 {
            insert(&mut rng, i);
        }
    });
    assert_eq!(n, 0, "allocations in 1000 hashmap inserts");
}
