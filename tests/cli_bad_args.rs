//! `pmem create` with bad arguments: a clear message, exit 2, no file.

mod common;

use common::{pmem, stderr};

#[test]
fn bad_size_suffix_is_exit_2_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pool");
    let out = pmem(&[
        "create",
        p.to_str().unwrap(),
        "--layout",
        "x",
        "--size",
        "12X",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.starts_with("pmem: "), "{e}");
    assert!(e.contains("12X") && e.contains("suffix"), "{e}");
    assert!(!p.exists());
}

#[test]
fn size_below_the_minimum_is_exit_2_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pool");
    let out = pmem(&[
        "create",
        p.to_str().unwrap(),
        "--layout",
        "x",
        "--size",
        "64K",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.starts_with("pmem: invalid pool size 65536"), "{e}");
    assert!(e.contains("smallest pool"), "{e}");
    assert!(!p.exists());
}

#[test]
fn overlong_layout_is_exit_2_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pool");
    let layout = "l".repeat(pmem_pool::LAYOUT_MAX + 1);
    let out = pmem(&[
        "create",
        p.to_str().unwrap(),
        "--layout",
        &layout,
        "--size",
        "8M",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.starts_with("pmem: invalid layout name"), "{e}");
    assert!(e.contains("1025 bytes"), "{e}");
    assert!(!p.exists());
}

#[test]
fn unknown_mode_and_missing_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pool");
    let out = pmem(&[
        "create",
        p.to_str().unwrap(),
        "--layout",
        "x",
        "--size",
        "8M",
        "--mode",
        "turbo",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("pmem: "), "{}", stderr(&out));
    assert!(!p.exists());

    let out = pmem(&["create", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--layout"), "{}", stderr(&out));
    assert!(!p.exists());
}
