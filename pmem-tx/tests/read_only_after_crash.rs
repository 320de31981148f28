//! A read-only open of a crashed pool: a committed transaction whose log
//! is only not retired yet (lazy invalidation) needs no recovery and its
//! data is visible; an interrupted one is refused with `NeedsRecovery`
//! until a read-write open rolls it back.

use pmem_tx::{Error, Mode, Pool, PoolOptions};
use std::sync::{Arc, Mutex};

fn sim_opts() -> PoolOptions {
    PoolOptions::new().mode(Mode::Sim).ignore_env(true)
}

fn msync_opts() -> PoolOptions {
    PoolOptions::new().mode(Mode::Msync).ignore_env(true)
}

#[test]
fn committed_but_unretired_log_opens_read_only_interrupted_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create_with(dir.path().join("live.pool"), "ro", 8 << 20, &sim_opts()).unwrap();
    let root = pool.root::<[u64; 8]>().unwrap();
    // In place, under a snapshot (`write` would defer 64 bytes to the redo
    // log, whose apply a read-only open cannot do).
    let update = |v: u64| {
        pool.transaction(|tx| -> Result<(), Error> {
            *tx.get_mut(root)? = [v; 8];
            Ok(())
        })
        .unwrap()
    };
    update(7);
    let sim = pool.raw().persister().sim().unwrap().clone();
    // The media right after the commit: the bump is not durable.
    let committed = sim.persisted_image();

    // The media at the commit drain of the next transaction, before it
    // persists anything: its snapshot is durable, its commit record not.
    let at_commit: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let (hook_sim, slot) = (sim.clone(), at_commit.clone());
    let mut drains = 0;
    sim.set_drain_hook(Some(Box::new(move |_| {
        drains += 1;
        if drains == 2 {
            *slot.lock().unwrap() = Some(hook_sim.persisted_image());
        }
    })));
    update(8);
    sim.set_drain_hook(None);
    let interrupted = at_commit.lock().unwrap().take().unwrap();
    drop(pool);

    let path = dir.path().join("crash.pool");
    std::fs::write(&path, &committed).unwrap();
    let ro = Pool::open_with(&path, Some("ro"), &msync_opts().read_only(true)).unwrap();
    assert_eq!(ro.read(ro.root::<[u64; 8]>().unwrap()).unwrap(), [7; 8]);
    drop(ro);

    std::fs::write(&path, &interrupted).unwrap();
    let e = Pool::open_with(&path, Some("ro"), &msync_opts().read_only(true)).unwrap_err();
    assert!(matches!(e, Error::NeedsRecovery { .. }), "{e}");
    // A read-write open rolls it back; then read-only works.
    let rw = Pool::open_with(&path, Some("ro"), &msync_opts()).unwrap();
    assert_eq!(rw.read(rw.root::<[u64; 8]>().unwrap()).unwrap(), [7; 8]);
    drop(rw);
    let ro = Pool::open_with(&path, Some("ro"), &msync_opts().read_only(true)).unwrap();
    assert_eq!(ro.read(ro.root::<[u64; 8]>().unwrap()).unwrap(), [7; 8]);
}
