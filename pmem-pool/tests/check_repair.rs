//! `check_file` finds damaged header copies, mismatches and truncation;
//! `repair_header` rewrites the damaged copy from the intact one.

mod common;

use common::*;
use pmem_pool::check::{CopyStatus, check_file, repair_header};
use pmem_pool::{Error, MIN_POOL_SIZE, RawPool};

#[test]
fn fresh_pool_is_consistent() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    let r = check_file(&p).unwrap();
    assert!(r.is_consistent(), "{:?}", r.problems);
    assert_eq!(r.primary, CopyStatus::Ok);
    assert_eq!(r.backup, CopyStatus::Ok);
    assert!(r.copies_match);
    assert_eq!(r.file_size, MIN_POOL_SIZE);
    assert_eq!(r.header.unwrap().layout, LAYOUT);
}

#[test]
fn corrupted_primary_is_found() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch(&p, PRIMARY + OFF_LAYOUT, b"X");
    let r = check_file(&p).unwrap();
    assert!(
        matches!(r.primary, CopyStatus::BadChecksum { .. }),
        "{:?}",
        r.primary
    );
    assert_eq!(r.backup, CopyStatus::Ok);
    assert!(!r.copies_match);
    assert_eq!(r.header.as_ref().unwrap().layout, LAYOUT, "backup in force");
    assert!(
        r.problems.iter().any(|s| s.contains("primary")),
        "{:?}",
        r.problems
    );
}

#[test]
fn corrupted_backup_is_found() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch(&p, BACKUP, b"\0\0\0\0");
    let r = check_file(&p).unwrap();
    assert_eq!(r.primary, CopyStatus::Ok);
    assert_eq!(r.backup, CopyStatus::BadMagic);
    assert!(
        r.problems.iter().any(|s| s.contains("backup")),
        "{:?}",
        r.problems
    );
}

#[test]
fn valid_but_different_copies_are_a_mismatch() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch(&p, BACKUP + OFF_CREATED, &7u64.to_le_bytes());
    fix_crc(&p, BACKUP);
    let r = check_file(&p).unwrap();
    assert_eq!(
        (r.primary.clone(), r.backup.clone()),
        (CopyStatus::Ok, CopyStatus::Ok)
    );
    assert!(!r.copies_match);
    assert!(
        r.problems.iter().any(|s| s.contains("differ")),
        "{:?}",
        r.problems
    );
    // repair: the primary wins.
    let done = repair_header(&p).unwrap();
    assert!(done[0].contains("backup"), "{done:?}");
    assert!(check_file(&p).unwrap().is_consistent());
}

#[test]
fn truncation_is_found() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0x5000)
        .unwrap();
    let r = check_file(&p).unwrap();
    assert_eq!(r.file_size, 0x5000);
    assert!(
        r.problems.iter().any(|s| s.contains("truncated")),
        "{:?}",
        r.problems
    );
}

#[test]
fn repair_fixes_a_corrupted_primary() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    let uuid = RawPool::open(&p, None, &opts().read_only(true))
        .unwrap()
        .header()
        .uuid;
    patch(&p, PRIMARY + OFF_CREATED, &[0x55; 8]);
    assert!(matches!(
        RawPool::open(&p, Some(LAYOUT), &opts()),
        Err(Error::ChecksumMismatch {
            backup_ok: true,
            ..
        })
    ));
    let done = repair_header(&p).unwrap();
    assert_eq!(done.len(), 1);
    assert!(
        done[0].contains("primary header from the backup"),
        "{done:?}"
    );
    let pool = RawPool::open(&p, Some(LAYOUT), &opts()).unwrap();
    assert_eq!(pool.header().uuid, uuid);
    assert_eq!(pool.header().layout, LAYOUT);
    pool.close().unwrap();
    assert!(check_file(&p).unwrap().is_consistent());
    assert!(repair_header(&p).unwrap().is_empty(), "nothing left to do");
}

#[test]
fn repair_fixes_a_corrupted_backup() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch(&p, BACKUP + OFF_LAYOUT, b"zz");
    let done = repair_header(&p).unwrap();
    assert!(
        done[0].contains("backup header from the primary"),
        "{done:?}"
    );
    assert_eq!(read_at(&p, PRIMARY, 4096), read_at(&p, BACKUP, 4096));
}

#[test]
fn repair_refuses_when_both_copies_are_bad() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    patch(&p, PRIMARY + OFF_LAYOUT, b"X");
    patch(&p, BACKUP + OFF_LAYOUT, b"Y");
    let before = std::fs::read(&p).unwrap();
    let e = repair_header(&p).unwrap_err();
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
    assert_eq!(std::fs::read(&p).unwrap(), before, "refused repair wrote");
}

#[test]
fn foreign_file_is_reported_not_a_pool() {
    let dir = tempdir();
    let p = dir.path().join("f");
    let mut b = vec![0u8; MIN_POOL_SIZE as usize];
    b[..8].copy_from_slice(b"PMEMOBJ\0");
    std::fs::write(&p, b).unwrap();
    let r = check_file(&p).unwrap();
    assert!(r.header.is_none());
    assert!(
        r.problems.iter().any(|s| s.contains("libpmemobj")),
        "{:?}",
        r.problems
    );
    assert!(matches!(repair_header(&p), Err(Error::NotAPool { .. })));
}
