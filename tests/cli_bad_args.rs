//! `pmem create` with bad arguments: a clear message, exit 2, no file.

mod common;

use common::{pmem, stderr};

/// Runs `pmem create FILE extra...` in a fresh directory, asserts it
/// exits 2 and creates nothing, and returns its standard error.
fn refused_create(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pool");
    let mut args = vec!["create", p.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = pmem(&args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    assert!(!p.exists(), "{args:?} created a file");
    stderr(&out)
}

#[test]
fn bad_size_suffix_is_exit_2_and_creates_nothing() {
    let e = refused_create(&["--layout", "x", "--size", "12X"]);
    assert!(e.starts_with("pmem: "), "{e}");
    assert!(e.contains("12X") && e.contains("suffix"), "{e}");
}

#[test]
fn size_below_the_minimum_is_exit_2_and_creates_nothing() {
    let e = refused_create(&["--layout", "x", "--size", "64K"]);
    assert!(e.starts_with("pmem: invalid pool size 65536"), "{e}");
    assert!(e.contains("smallest pool"), "{e}");
}

#[test]
fn overlong_layout_is_exit_2_and_creates_nothing() {
    let layout = "l".repeat(pmem_pool::LAYOUT_MAX + 1);
    let e = refused_create(&["--layout", &layout, "--size", "8M"]);
    assert!(e.starts_with("pmem: invalid layout name"), "{e}");
    assert!(e.contains("1025 bytes"), "{e}");
}

#[test]
fn unknown_mode_and_missing_arguments_are_usage_errors() {
    let e = refused_create(&["--layout", "x", "--size", "8M", "--mode", "turbo"]);
    assert!(e.starts_with("pmem: "), "{e}");
    let e = refused_create(&[]);
    assert!(e.contains("--layout"), "{e}");
}
