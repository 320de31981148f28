//! Create → close → open round trip: header fields, run id, clean shutdown.

mod common;

use common::*;
use pmem_pool::{MIN_POOL_SIZE, Mode, PoolOptions, RawPool, ShutdownState};

#[test]
fn create_close_open_round_trip() {
    let dir = tempdir();
    let p = dir.path().join("a.pool");
    let size = MIN_POOL_SIZE + 16 * 4096;
    let pool = RawPool::create(&p, "kv-v1", size, &opts()).unwrap();
    let h = pool.header().clone();
    assert_eq!(h.layout, "kv-v1");
    assert_eq!(h.version, 3);
    assert_eq!(h.size, size);
    // A new pool keeps a copy of each lane's generation in its undo area.
    assert_eq!(
        (h.compat, h.incompat, h.ro_compat),
        (0, pmem_pool::INCOMPAT_GEN_COPY, 0)
    );
    assert_eq!(h.lanes_offset, 0x3000);
    assert_eq!(h.lane_count, 256);
    assert_eq!(h.lane_size, 4096);
    assert_eq!(h.heap_offset, 0x3000 + 256 * 4096);
    assert_eq!(h.heap_offset + h.heap_size, size);
    assert_eq!(h.uuid[6] >> 4, 4, "version-4 UUID");
    assert!(h.created_unix_ns > 1_600_000_000_000_000_000);
    assert_eq!(pool.run_id(), 1);
    assert_eq!(pool.previous_shutdown(), ShutdownState::Clean);
    assert_eq!(pool.size(), size);
    assert_eq!(pool.mode_choice().mode, Mode::Msync);
    assert!(!pool.is_read_only());
    assert_eq!(pool.path(), p.as_path());
    pool.close().unwrap();

    // On media: magic first, backup byte-identical, shutdown flag clear.
    assert_eq!(read_at(&p, 0, 8), b"PMOBJ-RS");
    assert_eq!(read_at(&p, PRIMARY, 4096), read_at(&p, BACKUP, 4096));
    assert_eq!(
        read_at(&p, 0x2000, 16),
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );

    let pool = RawPool::open(&p, Some("kv-v1"), &opts()).unwrap();
    assert_eq!(pool.header(), &h);
    assert_eq!(pool.run_id(), 2);
    assert_eq!(pool.previous_shutdown(), ShutdownState::Clean);
    // While open read-write the flag says "in use".
    assert_eq!(read_at(&p, 0x2008, 8), 1u64.to_le_bytes());
    pool.close().unwrap();
    assert_eq!(read_at(&p, 0x2008, 8), 0u64.to_le_bytes());

    let pool = RawPool::open(&p, None, &opts()).unwrap();
    assert_eq!(pool.run_id(), 3);
    pool.close().unwrap();
}

#[test]
fn read_only_open_writes_nothing_and_shares_the_lock() {
    let dir = tempdir();
    let p = new_pool(dir.path());
    let before = std::fs::read(&p).unwrap();
    let ro = opts().read_only(true);
    let a = RawPool::open(&p, Some(LAYOUT), &ro).unwrap();
    let b = RawPool::open(&p, Some(LAYOUT), &ro).unwrap();
    assert!(a.is_read_only());
    assert_eq!(a.run_id(), 1, "no run-id bump read-only");
    a.close().unwrap();
    drop(b);
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

#[test]
fn detection_on_tmpfs_picks_msync_and_says_why() {
    let dir = tempdir();
    let p = dir.path().join("d.pool");
    let o = PoolOptions::new().ignore_env(true).prefault(true);
    let pool = RawPool::create(&p, "", MIN_POOL_SIZE, &o).unwrap();
    let c = pool.mode_choice().clone();
    assert_eq!(c.mode, Mode::Msync, "{}", c.reason);
    assert!(c.reason.contains("MAP_SYNC"), "{}", c.reason);
    pool.close().unwrap();
    let pool = RawPool::open(&p, Some(""), &o).unwrap();
    assert_eq!(pool.mode_choice().mode, Mode::Msync);
}

#[test]
fn create_leaves_no_temporary_file() {
    let dir = tempdir();
    new_pool(dir.path());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["test.pool"]);
}

#[test]
fn longest_multibyte_layout_round_trips() {
    let dir = tempdir();
    let p = dir.path().join("l.pool");
    let name = "é".repeat(512); // 1024 bytes of UTF-8
    RawPool::create(&p, &name, MIN_POOL_SIZE, &opts())
        .unwrap()
        .close()
        .unwrap();
    let pool = RawPool::open(&p, Some(&name), &opts()).unwrap();
    assert_eq!(pool.header().layout, name);
}
