//! A process that exits with the pool open (no close, no destructor) leaves
//! the shutdown flag set: the next open reports `Unclean`. Alone in its
//! binary so the fork cannot hold another test's lock.

mod common;

use common::*;
use pmem_pool::{RawPool, ShutdownState};

const CHILD: &str = "H3_SHUTDOWN_CHILD_POOL";

#[test]
fn process_exiting_without_close_is_unclean() {
    if let Some(p) = std::env::var_os(CHILD) {
        let pool = RawPool::open(std::path::Path::new(&p), Some(LAYOUT), &opts()).unwrap();
        assert_eq!(pool.run_id(), 2);
        // Die with the pool open: no destructor runs.
        std::process::exit(0);
    }
    let dir = tempdir();
    let p = new_pool(dir.path());
    let st = child("process_exiting_without_close_is_unclean", CHILD, &p)
        .status()
        .unwrap();
    assert!(st.success());
    let pool = RawPool::open(&p, Some(LAYOUT), &opts()).unwrap();
    assert_eq!(pool.previous_shutdown(), ShutdownState::Unclean);
    assert_eq!(pool.run_id(), 3, "the child's open bumped the run id");
    pool.close().unwrap();
    let pool = RawPool::open(&p, Some(LAYOUT), &opts()).unwrap();
    assert_eq!(pool.previous_shutdown(), ShutdownState::Clean);
}
