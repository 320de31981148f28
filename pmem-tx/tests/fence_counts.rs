//! Flushes and fences per operation, counted by the Sim domain: the
//! numbers FORMAT.md and the issue notes quote. Each count is asserted, so
//! a protocol change that adds a fence fails here.

use pmem_tx::{Error, Mode, PPtr, Pool, PoolOptions};

fn pool() -> (tempfile::TempDir, Pool) {
    let dir = tempfile::tempdir().unwrap();
    let opts = PoolOptions::new().mode(Mode::Sim).ignore_env(true);
    let p = Pool::create_with(dir.path().join("f.pool"), "fences", 8 << 20, &opts).unwrap();
    (dir, p)
}

/// (fences, flushed lines) of one call of `f`.
fn count(p: &Pool, f: impl FnOnce()) -> (u64, u64) {
    let sim = p.raw().persister().sim().unwrap();
    sim.reset_counters();
    f();
    let c = sim.counters();
    (c.fences, c.flushed_lines)
}

#[test]
fn fences_per_transaction() {
    let (_d, p) = pool();
    let root = p.root::<[[u64; 8]; 1024]>().unwrap();
    let slot = root.index(5).unwrap();

    let empty = count(&p, || p.transaction(|_| Ok::<_, Error>(())).unwrap());
    let read_only = count(&p, || {
        p.transaction(|tx| tx.read(slot).map(|_| ())).unwrap();
    });
    // In place, under a snapshot (libpmemobj's way).
    let update = |tx: &mut pmem_tx::Tx<'_>, at: usize, v: u64| -> Result<(), Error> {
        *tx.get_mut(root.index(at).unwrap())? = [v; 8];
        Ok(())
    };
    let one_slot = count(&p, || {
        p.transaction(|tx| update(tx, 5, 1)).unwrap();
    });
    let same_slot_twice = count(&p, || {
        p.transaction(|tx| -> Result<(), Error> {
            update(tx, 5, 2)?;
            update(tx, 5, 3)
        })
        .unwrap();
    });
    let two_slots = count(&p, || {
        p.transaction(|tx| -> Result<(), Error> {
            update(tx, 5, 4)?;
            update(tx, 9, 4)
        })
        .unwrap();
    });
    let aborted = count(&p, || {
        let _ = p.transaction(|tx| -> Result<(), Error> {
            update(tx, 5, 5)?;
            Err(Error::Aborted)
        });
    });
    // Through the redo log (`tx.write` defers up to 64 bytes): the first
    // after an undo transaction, then one after another.
    let written = count(&p, || {
        p.transaction(|tx| tx.write(slot, [6; 8])).unwrap();
    });
    let written_again = count(&p, || {
        p.transaction(|tx| tx.write(slot, [7; 8])).unwrap();
    });
    // A snapshot right after a parked transaction that wrote the same slot.
    let update_after_write = count(&p, || {
        p.transaction(|tx| update(tx, 5, 4)).unwrap();
    });
    // The root's data starts 16 bytes into a cache line (after its
    // allocation header), so a 64-byte slot straddles two lines.
    let straddles = slot.offset() % 64 != 0;
    let data_lines = 1 + u64::from(straddles);
    println!("fences/flushed lines per operation (Sim):");
    println!("  empty transaction          {empty:?}");
    println!("  read-only transaction      {read_only:?}");
    println!("  one 64-B slot updated      {one_slot:?}");
    println!("  same slot written twice    {same_slot_twice:?}");
    println!("  two slots updated          {two_slots:?}");
    println!("  one slot, aborted          {aborted:?}");
    println!("  one slot written (redo)    {written:?}");
    println!("  ... and again              {written_again:?}");
    println!("  then updated in place      {update_after_write:?}");
    assert_eq!(empty, (0, 0));
    assert_eq!(read_only, (0, 0));
    // Snapshot; data with the checksummed commit record (the commit
    // point). Lines: the entry's header and payload with the lane's
    // generation copy in front (2: the copy carries the lane's previous
    // bump, fenced with the snapshot), the slot (1 or 2), the commit
    // record (1). This transaction's own bump is made durable by the
    // lane's next drain.
    assert_eq!(one_slot, (2, 3 + data_lines));
    assert_eq!(
        same_slot_twice,
        (2, 3 + data_lines),
        "a covered range is not copied again"
    );
    assert_eq!(two_slots.0, 3, "one snapshot fence per snapshot call");
    // snapshot, rollback drain, generation bump.
    assert_eq!(aborted.0, 3);
    // Redo entries and commit record (two lines), one fence: the commit
    // point. The apply is left to the next drain, which flushes its lines
    // (the slot's) before its fence and then stores this lane's bump.
    assert_eq!(written.0, 1);
    assert_eq!(
        written_again,
        (1, written.1 + data_lines),
        "the next drain flushes the parked apply"
    );
    // The snapshot's drain flushes the parked apply and claims its lane;
    // the slot it then changes in place is in that apply, so the claimed
    // lane's bump is made durable (one more fence) before the commit
    // record: recovery must not replay that log over this transaction.
    assert_eq!(update_after_write.0, 3);
    assert_eq!(p.read(slot).unwrap(), [4; 8]);
}

/// A pool created before lanes kept a generation copy (no
/// `INCOMPAT_GEN_COPY` bit) runs with the older lane layout: the snapshot's
/// drain writes the lane's previous bump back from the generation word,
/// one line more than in a new pool, and the pool reopens with its data.
#[test]
fn a_pool_without_the_generation_copy_flushes_the_word() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.pool");
    let opts = PoolOptions::new().mode(Mode::Sim).ignore_env(true);
    Pool::create_with(&path, "fences", 8 << 20, &opts)
        .unwrap()
        .close()
        .unwrap();
    clear_gen_copy(&path);
    let p = Pool::open_with(&path, Some("fences"), &opts).unwrap();
    assert_eq!(p.raw().header().incompat, 0);
    let root = p.root::<[[u64; 8]; 1024]>().unwrap();
    let slot = root.index(5).unwrap();
    let update = |v: u64| {
        p.transaction(|tx| -> Result<(), Error> {
            *tx.get_mut(slot)? = [v; 8];
            Ok(())
        })
        .unwrap();
    };
    update(1);
    let one_slot = count(&p, || update(2));
    let data_lines = 1 + u64::from(!slot.offset().is_multiple_of(64));
    println!("one slot updated in a pool without the copy: {one_slot:?}");
    assert_eq!(one_slot, (2, 4 + data_lines));
    p.close().unwrap();
    let p = Pool::open_with(&path, Some("fences"), &opts).unwrap();
    let root = p.root::<[[u64; 8]; 1024]>().unwrap();
    assert_eq!(p.read(root.index(5).unwrap()).unwrap(), [2; 8]);
}

/// Clears `INCOMPAT_GEN_COPY` in both header copies of the closed pool at
/// `path` (offsets of FORMAT.md: `incompat` at 0x018, the CRC-32C of
/// bytes 0..0xFFC at 0xFFC, copies at 0 and 0x1000). A new pool's lanes
/// are all zero, so what is left is a pool of the older lane layout.
fn clear_gen_copy(path: &std::path::Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    for copy in [0u64, 0x1000] {
        let mut h = vec![0u8; 0x1000];
        f.read_exact_at(&mut h, copy).unwrap();
        let incompat = u64::from_le_bytes(h[0x18..0x20].try_into().unwrap());
        assert_eq!(incompat, pmem_pool::INCOMPAT_GEN_COPY);
        h[0x18..0x20].copy_from_slice(&0u64.to_le_bytes());
        let crc = pmem_pool::crc::crc32c(&h[..0xFFC]);
        h[0xFFC..].copy_from_slice(&crc.to_le_bytes());
        f.write_all_at(&h, copy).unwrap();
    }
}

#[test]
fn fences_per_allocation() {
    let (_d, p) = pool();
    let slots = p.root::<[PPtr<[u64; 6]>; 16]>().unwrap();
    let slot = |i: usize| slots.index(i).unwrap();
    // Warm up: the first allocation of a size class creates its run (two
    // fences, amortised over the run's blocks).
    p.transaction(|tx| -> Result<(), Error> {
        let o = tx.alloc_typed(1, [0u64; 6])?;
        tx.write(slot(15), o)
    })
    .unwrap();

    let tx_alloc = count(&p, || {
        p.transaction(|tx| -> Result<(), Error> {
            let o = tx.alloc_typed(1, [1u64; 6])?;
            tx.write(slot(0), o)
        })
        .unwrap();
    });
    let tx_free = count(&p, || {
        p.transaction(|tx| -> Result<(), Error> {
            let o = tx.read(slot(0))?;
            tx.free(o)?;
            tx.write(slot(0), PPtr::null())
        })
        .unwrap();
    });
    let atomic_alloc = count(&p, || {
        p.alloc_into(slot(1), 1, |o| *o = [2; 6]).unwrap();
    });
    let atomic_free = count(&p, || p.free_from(slot(1)).unwrap());
    // A page-sized object: only its allocation header is flushed.
    let pages = p.root::<[PPtr<[u8; 4096]>; 16]>().unwrap();
    let page = pages.index(2).unwrap();
    p.alloc_uninit_into(page, 1).unwrap();
    p.free_from(page).unwrap();
    let uninit_page = count(&p, || {
        p.alloc_uninit_into(page, 1).unwrap();
    });
    let free_page = count(&p, || p.free_from(page).unwrap());
    println!("fences/flushed lines per allocation (Sim):");
    println!("  tx alloc 48 B + store ptr  {tx_alloc:?}");
    println!("  tx free + null ptr         {tx_free:?}");
    println!("  atomic alloc into a slot   {atomic_alloc:?}");
    println!("  atomic free from a slot    {atomic_free:?}");
    println!("  uninit alloc of 4 KiB      {uninit_page:?}");
    println!("  atomic free of 4 KiB       {free_page:?}");
    // The pointer is stored with `tx.write`, which defers a small value to
    // the redo log: no snapshot. Data, redo entries and checksummed commit
    // record, one fence; the apply (heap words and the pointer) is left
    // to the next drain, which flushes it and then stores the bump.
    assert_eq!(tx_alloc.0, 1);
    assert_eq!(tx_free.0, 1);
    assert_eq!(atomic_alloc.0, 1);
    // Lines: the block (allocation header and data share one); the redo
    // entries (`Fresh`, the pointer's two words as one `Copy`, the bitmap
    // `Or64`: 80 bytes) and the commit record (40), which fit in two; the
    // bumps of the two lanes the thread alternates between; the previous
    // operation's apply: its bitmap word and its slot. Logged as two
    // `Set64`, the pointer pushed the record into a third line.
    // The previous operation's bitmap word and slot may share a line.
    assert!(atomic_alloc.1 <= 8, "{atomic_alloc:?}");
    assert_eq!(tx_alloc, (1, 7));
    assert_eq!(atomic_free.0, 1);
    assert_eq!(uninit_page.0, 1);
    assert!(
        uninit_page.1 <= 12,
        "{uninit_page:?}: the page's data was flushed"
    );
    assert_eq!(free_page.0, 1);
    assert_eq!(
        p.objects(Some(1)).unwrap().len(),
        1,
        "only the warm-up object is left"
    );
}

/// A burst of concurrent transactions leaves many lanes with a bump that
/// later drains must make durable, once. After that, a transaction pays
/// no more flushes than before the burst: drains
/// write back pending bumps only, not every lane ever used.
#[test]
fn a_burst_of_lanes_costs_later_transactions_nothing() {
    const BURST: usize = 32;
    let (_d, p) = pool();
    let root = p.root::<[[u64; 8]; 1024]>().unwrap();
    let slot = root.index(5).unwrap();
    // Steady state first: the thread's transactions park their lanes and
    // alternate between two, whose bumps every drain flushes.
    for _ in 0..3 {
        p.transaction(|tx| tx.write(slot, [1; 8])).unwrap();
    }
    let before = count(&p, || {
        p.transaction(|tx| tx.write(slot, [2; 8])).unwrap();
    });

    // BURST transactions at once, each holding its lane at the barrier
    // (slots 32 apart: no two share a lock stripe).
    let barrier = std::sync::Barrier::new(BURST);
    std::thread::scope(|s| {
        for t in 0..BURST {
            let (p, barrier) = (&p, &barrier);
            s.spawn(move || {
                p.transaction(|tx| -> Result<(), Error> {
                    tx.write(root.index(32 * t + 8).unwrap(), [t as u64; 8])?;
                    barrier.wait();
                    Ok(())
                })
                .unwrap();
            });
        }
    });

    // Each commit's drain wrote back the bumps of the burst's commits
    // before it; the next drains write back the rest. A burst thread may
    // have parked their lanes and exited; this thread claims each once it
    // has passed over it eight times (`invalidate::stale`), watching
    // eight at a time (a round of nine drains each: up to 36 drains for
    // 32 lanes), and tidies the marks of the lanes it claimed at the next
    // drain.
    let first = count(&p, || {
        p.transaction(|tx| tx.write(slot, [3; 8])).unwrap();
    });
    for i in 0..48 {
        p.transaction(|tx| tx.write(slot, [4 + i; 8])).unwrap();
    }
    let after = count(&p, || {
        p.transaction(|tx| tx.write(slot, [9; 8])).unwrap();
    });
    println!(
        "one slot updated: {before:?} before a burst of {BURST} lanes, {first:?} right after, {after:?} later"
    );
    assert!(
        after.0 == before.0 && after.1 <= before.1,
        "drains keep flushing lanes the burst used: {after:?} after, {before:?} before"
    );
    for t in 0..BURST {
        assert_eq!(
            p.read(root.index(32 * t + 8).unwrap()).unwrap(),
            [t as u64; 8]
        );
    }
}

/// Two threads updating slots in place: a drain makes durable the pending
/// generation bumps of the lanes whose stripes its transaction took over
/// (their tags), not every lane's. On disjoint slots each thread's
/// transaction flushes what it would flush alone; one that updates the
/// other thread's slot also writes back that thread's bump, before it
/// changes the slot (its snapshot drain) and with its commit record.
#[test]
fn a_drain_writes_back_only_the_bumps_its_stripes_name() {
    let (_d, p) = pool();
    // Slots 1 and 9 share no lock stripe (the root's data starts 16 bytes
    // into a line, so neighbouring slots would).
    let root = p.root::<[[u64; 8]; 1024]>().unwrap();
    let update = |at: usize, v: u64| {
        p.transaction(|tx| -> Result<(), Error> {
            *tx.get_mut(root.index(at).unwrap())? = [v; 8];
            Ok(())
        })
        .unwrap();
    };
    for v in 0..3 {
        update(1, v);
    }
    let alone = count(&p, || update(1, 3));

    std::thread::scope(|s| {
        // A second thread, with a lane of its own, runs what it is sent.
        let (send, work) = std::sync::mpsc::channel::<(usize, u64)>();
        let (done, counted) = std::sync::mpsc::channel::<(u64, u64)>();
        let (p, update) = (&p, &update);
        s.spawn(move || {
            for (at, v) in work {
                done.send(count(p, || update(at, v))).unwrap();
            }
        });
        let other = |at: usize, v: u64| {
            send.send((at, v)).unwrap();
            counted.recv().unwrap()
        };
        // Warm-up: each thread's first drain that finds the other's lane
        // marked and idle tidies the marks of the idle lanes, its own
        // included (then not again for 1024 drains); the commits after
        // mark them again.
        for v in 10..13 {
            other(9, v);
            update(1, v);
        }
        // The other thread's lane holds a bump not yet durable...
        other(9, 14);
        // ...which this thread's transaction on its own slot leaves alone.
        let disjoint = count(p, || update(1, 15));
        // The other thread now takes over slot 1's stripe from this one.
        let taken_over = other(1, 16);
        let disjoint_there = other(9, 17);
        println!(
            "one slot updated: {alone:?} alone, {disjoint:?} beside another thread, \
             {taken_over:?} on a slot the other thread updated last, {disjoint_there:?} \
             on its own slot again"
        );
        assert_eq!(
            disjoint, alone,
            "a drain wrote back an unrelated lane's bump"
        );
        assert_eq!(disjoint_there, alone);
        // Its two drains each write back this thread's lane's word.
        assert_eq!(taken_over, (alone.0, alone.1 + 2));
    });
    assert_eq!(p.read(root.index(1).unwrap()).unwrap(), [16; 8]);
    assert_eq!(p.read(root.index(9).unwrap()).unwrap(), [17; 8]);
}
