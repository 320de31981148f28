//! `create` refuses bad input and existing files with typed errors.

mod common;

use common::*;
use pmem_pool::{Error, MIN_POOL_SIZE, RawPool};

#[test]
fn existing_file_is_already_exists_and_untouched() {
    let dir = tempdir();
    let p = dir.path().join("x");
    std::fs::write(&p, b"precious").unwrap();
    let e = RawPool::create(&p, LAYOUT, MIN_POOL_SIZE, &opts()).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), b"precious");
    // An existing pool too.
    let q = new_pool(dir.path());
    let e = RawPool::create(&q, LAYOUT, MIN_POOL_SIZE, &opts()).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
}

#[test]
fn bad_layout_names_are_invalid_layout() {
    let dir = tempdir();
    let p = dir.path().join("x");
    for bad in ["x".repeat(1025), "a\0b".to_string()] {
        let e = RawPool::create(&p, &bad, MIN_POOL_SIZE, &opts()).unwrap_err();
        assert!(matches!(e, Error::InvalidLayout { .. }), "{e}");
    }
    assert!(!p.exists());
}

#[test]
fn bad_sizes_are_invalid_size() {
    let dir = tempdir();
    let p = dir.path().join("x");
    for bad in [0, 4096, MIN_POOL_SIZE - 4096, MIN_POOL_SIZE + 1] {
        let e = RawPool::create(&p, LAYOUT, bad, &opts()).unwrap_err();
        assert!(
            matches!(e, Error::InvalidSize { size, .. } if size == bad),
            "{e}"
        );
    }
    assert!(!p.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn missing_directory_is_not_found() {
    let dir = tempdir();
    let p = dir.path().join("no/such/dir/x.pool");
    let e = RawPool::create(&p, LAYOUT, MIN_POOL_SIZE, &opts()).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
}
