//! "Reset on open": a process that exits while holding a `PMutex` leaves
//! nothing locked for the next open, because lock state is volatile. Alone
//! in its binary so the re-executed child runs only this test.

use pmem_tx::{Error, Mode, PMutex, Pool, PoolOptions};
use std::time::Duration;

const CHILD: &str = "H9_PLOCK_RESET_CHILD_POOL";
const LAYOUT: &str = "plock-reset";

fn opts() -> PoolOptions {
    PoolOptions::new().mode(Mode::Msync).ignore_env(true)
}

#[test]
fn a_mutex_held_by_an_exited_process_is_free_at_the_next_open() {
    if let Some(path) = std::env::var_os(CHILD) {
        let pool = Pool::open_with(&path, Some(LAYOUT), &opts()).unwrap();
        let m = pool.root::<PMutex<u64>>().unwrap();
        let g = pool.lock(m).unwrap();
        pool.transaction(|tx| tx.write(g.ptr(), 42)).unwrap();
        assert!(pool.try_lock(m).unwrap().is_none(), "the child holds it");
        // Die holding it: no guard drop, no close.
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reset.pool");
    {
        let pool = Pool::create_with(&path, LAYOUT, 8 << 20, &opts()).unwrap();
        pool.root::<PMutex<u64>>().unwrap();
        pool.close().unwrap();
    }
    let st = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_mutex_held_by_an_exited_process_is_free_at_the_next_open",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &path)
        .env_remove("PMEM_MODE")
        .env_remove("PMEM_IS_PMEM_FORCE")
        .status()
        .unwrap();
    assert!(st.success(), "child failed: {st}");

    let pool = Pool::open_with(&path, Some(LAYOUT), &opts()).unwrap();
    pool.set_lock_timeout(Duration::from_millis(1));
    let m = pool.root::<PMutex<u64>>().unwrap();
    let g = pool
        .lock(m)
        .expect("the exited child's lock must not survive the open");
    assert_eq!(pool.read(g.ptr()).unwrap(), 42, "the child did run");
    drop(g);
    let r = pool.transaction(|tx| -> Result<u64, Error> {
        let d = tx.lock(m)?;
        tx.read(d)
    });
    assert_eq!(r.unwrap(), 42);
}
