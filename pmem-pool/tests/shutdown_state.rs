//! The shutdown flag: `close` and `Drop` clear it, read-only opens leave it
//! as found, any value but 0 reads as unclean. (A process dying with the
//! pool open: `shutdown_process_exit.rs`.)

mod common;

use common::*;
use pmem_pool::{RawPool, ShutdownState};

#[test]
fn read_only_open_reports_unclean_without_clearing_it() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch(&p, 0x2008, &1u64.to_le_bytes());
    for _ in 0..2 {
        let pool = RawPool::open(&p, Some(LAYOUT), &opts().read_only(true)).unwrap();
        assert_eq!(pool.previous_shutdown(), ShutdownState::Unclean);
        pool.close().unwrap();
    }
    assert_eq!(read_at(&p, 0x2008, 8), 1u64.to_le_bytes());
}

#[test]
fn drop_without_close_is_clean() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    drop(RawPool::open(&p, Some(LAYOUT), &opts()).unwrap());
    let pool = RawPool::open(&p, Some(LAYOUT), &opts()).unwrap();
    assert_eq!(pool.previous_shutdown(), ShutdownState::Clean);
}

#[test]
fn garbage_flag_value_is_unclean() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch(&p, 0x2008, &0xdead_u64.to_le_bytes());
    let pool = RawPool::open(&p, Some(LAYOUT), &opts()).unwrap();
    assert_eq!(pool.previous_shutdown(), ShutdownState::Unclean);
}
