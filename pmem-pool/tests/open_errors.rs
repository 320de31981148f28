//! Every way `open` can refuse a file, each from a file built to fail that
//! way, and none of them writing to the file.

mod common;

use common::*;
use pmem_pool::{Error, MIN_POOL_SIZE, RawPool};
use std::path::Path;

fn open_err(p: &Path) -> Error {
    let before = std::fs::read(p).ok();
    let e = RawPool::open(p, Some(LAYOUT), &opts()).unwrap_err();
    assert_eq!(
        std::fs::read(p).ok(),
        before,
        "a refused open wrote to the file"
    );
    e
}

#[test]
fn missing_file_is_not_found() {
    let dir = tempdir();
    let e = open_err(&dir.path().join("nope"));
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
}

#[test]
fn zero_length_file_is_too_small() {
    let dir = tempdir();
    let p = dir.path().join("z");
    std::fs::write(&p, b"").unwrap();
    let e = open_err(&p);
    assert!(matches!(e, Error::TooSmall { size: 0, .. }), "{e}");
}

#[test]
fn hundred_byte_file_is_too_small() {
    let dir = tempdir();
    let p = dir.path().join("h");
    std::fs::write(&p, [0xAAu8; 100]).unwrap();
    let e = open_err(&p);
    assert!(matches!(e, Error::TooSmall { size: 100, .. }), "{e}");
}

#[test]
fn other_magic_is_not_a_pool() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch(&p, 0, b"SQLite f");
    let e = open_err(&p);
    assert!(matches!(e, Error::NotAPool { hint: None, .. }), "{e}");
}

#[test]
fn libpmemobj_pool_is_not_a_pool_with_a_hint() {
    let dir = tempdir();
    let p = dir.path().join("pmdk.obj");
    let mut b = vec![0u8; MIN_POOL_SIZE as usize];
    b[..8].copy_from_slice(b"PMEMOBJ\0");
    std::fs::write(&p, b).unwrap();
    let e = open_err(&p);
    match &e {
        Error::NotAPool { hint: Some(h), .. } => assert!(h.contains("libpmemobj"), "{h}"),
        _ => panic!("expected NotAPool with a hint, got {e}"),
    }
    assert!(e.to_string().contains("libpmemobj"));
}

#[test]
fn flipped_byte_is_checksum_mismatch_with_backup_ok() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    let b = read_at(&p, OFF_LAYOUT, 1)[0];
    patch(&p, OFF_LAYOUT, &[b ^ 0x01]);
    let e = open_err(&p);
    assert!(
        matches!(e, Error::ChecksumMismatch { which: "primary", backup_ok: true, stored, computed, .. } if stored != computed),
        "{e}"
    );
    assert!(e.to_string().contains("pmem repair"));
}

#[test]
fn both_copies_flipped_is_checksum_mismatch_without_backup() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch(&p, PRIMARY + OFF_CREATED, &[0xFF]);
    patch(&p, BACKUP + OFF_CREATED, &[0xFF]);
    let e = open_err(&p);
    assert!(
        matches!(
            e,
            Error::ChecksumMismatch {
                backup_ok: false,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn unknown_incompat_bit_is_unsupported_version() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch_both(&p, OFF_INCOMPAT, &(1u64 << 5).to_le_bytes());
    let e = open_err(&p);
    assert!(
        matches!(
            e,
            Error::UnsupportedVersion {
                found: 3,
                supported: 3,
                unknown_incompat: 32,
                ..
            }
        ),
        "{e}"
    );
    // Read-only does not help either.
    let e = RawPool::open(&p, None, &opts().read_only(true)).unwrap_err();
    assert!(matches!(e, Error::UnsupportedVersion { .. }), "{e}");
}

#[test]
fn newer_major_version_is_unsupported_version() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch_both(&p, OFF_VERSION, &4u32.to_le_bytes());
    let e = open_err(&p);
    assert!(e.to_string().contains("newer pmem-obj"), "{e}");
    assert!(
        matches!(
            e,
            Error::UnsupportedVersion {
                found: 4,
                unknown_incompat: 0,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn older_major_version_is_refused_and_named_older() {
    // A version 2 header as version 2 wrote it: checksummed with CRC-32
    // (IEEE). Its logs cannot be read by this version, and its header
    // must not look corrupt either.
    let dir = tempdir();
    let p = new_pool(dir.path());
    for copy in [PRIMARY, BACKUP] {
        patch(&p, copy + OFF_VERSION, &2u32.to_le_bytes());
        let b = read_at(&p, copy, 0x1000);
        let crc = pmem_pool::crc::crc32_ieee(&b[..OFF_CRC as usize]);
        patch(&p, copy + OFF_CRC, &crc.to_le_bytes());
    }
    let report = pmem_pool::check::check_file(&p).unwrap();
    let problems = report.problems.join("; ");
    assert!(problems.contains("format version 2"), "{problems}");
    assert!(!problems.contains("checksum"), "{problems}");
    let e = open_err(&p);
    assert!(
        matches!(
            e,
            Error::UnsupportedVersion {
                found: 2,
                supported: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("older pmem-obj"), "{e}");
}

#[test]
fn unknown_ro_compat_bit_allows_read_only_only() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch_both(&p, OFF_RO_COMPAT, &(1u64 << 63).to_le_bytes());
    let e = open_err(&p);
    assert!(
        matches!(e, Error::ReadOnlyFeatures { unknown_ro_compat, .. } if unknown_ro_compat == 1 << 63),
        "{e}"
    );
    let pool = RawPool::open(&p, Some(LAYOUT), &opts().read_only(true)).unwrap();
    assert_eq!(pool.header().ro_compat, 1 << 63);
}

#[test]
fn truncated_file_is_truncated() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(MIN_POOL_SIZE / 2).unwrap();
    drop(f);
    let e = open_err(&p);
    assert!(
        matches!(e, Error::Truncated { expected: MIN_POOL_SIZE, actual, .. } if actual == MIN_POOL_SIZE / 2),
        "{e}"
    );
}

#[test]
fn other_layout_is_wrong_layout() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    let e = RawPool::open(&p, Some("queue-v2"), &opts()).unwrap_err();
    match e {
        Error::WrongLayout {
            found, expected, ..
        } => {
            assert_eq!(found, LAYOUT);
            assert_eq!(expected, "queue-v2");
        }
        e => panic!("expected WrongLayout, got {e}"),
    }
    // No layout asked: any layout opens.
    RawPool::open(&p, None, &opts()).unwrap().close().unwrap();
}

#[test]
fn nonzero_reserved_field_with_good_checksum_is_bad_header() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch_both(&p, OFF_RESERVED2, &[1]);
    let e = open_err(&p);
    assert!(
        matches!(
            e,
            Error::BadHeader {
                which: "primary",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn directory_is_not_a_pool() {
    let dir = tempdir();
    for ro in [true, false] {
        let e = RawPool::open(dir.path(), None, &opts().read_only(ro)).unwrap_err();
        assert!(matches!(e, Error::NotAPool { hint: Some(_), .. }), "{e}");
    }
}
