//! One writer at a time within a process: a second open, and a reader
//! while a writer holds the pool, are `Locked`. (Another process holding
//! it: `lock_other_process.rs`, alone in its binary, because a fork from a
//! parallel test would briefly share these tests' lock descriptors.)

mod common;

use common::*;
use pmem_pool::{Error, RawPool, check};

#[test]
fn second_open_in_same_process_is_locked() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    let a = RawPool::open(&p, Some(LAYOUT), &opts()).unwrap();
    let e = RawPool::open(&p, Some(LAYOUT), &opts()).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    a.close().unwrap();
    RawPool::open(&p, Some(LAYOUT), &opts()).unwrap();
}

#[test]
fn read_only_open_while_writer_is_locked() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    let a = RawPool::open(&p, Some(LAYOUT), &opts()).unwrap();
    let e = RawPool::open(&p, Some(LAYOUT), &opts().read_only(true)).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    let e = check::check_file(&p).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    drop(a);
    // And a writer while a reader holds it.
    let _r = RawPool::open(&p, Some(LAYOUT), &opts().read_only(true)).unwrap();
    let e = RawPool::open(&p, Some(LAYOUT), &opts()).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
}
