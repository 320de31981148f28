//! Helpers shared by the integration tests: pool files, byte patches with
//! the offsets of FORMAT.md, and re-running this test binary as a child.
#![allow(dead_code)]

use pmem_pool::{Mode, PoolOptions, RawPool};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Layout name used by the tests.
pub const LAYOUT: &str = "test-layout";
/// Offsets from FORMAT.md (kept literal on purpose: they check the doc).
pub const PRIMARY: u64 = 0x0000;
pub const BACKUP: u64 = 0x1000;
pub const OFF_VERSION: u64 = 0x008;
pub const OFF_INCOMPAT: u64 = 0x018;
pub const OFF_RO_COMPAT: u64 = 0x020;
pub const OFF_CREATED: u64 = 0x040;
pub const OFF_LAYOUT: u64 = 0x070;
pub const OFF_RESERVED2: u64 = 0x470;
pub const OFF_CRC: u64 = 0xFFC;

/// Msync mode, environment ignored: the tests run on tmpfs.
pub fn opts() -> PoolOptions {
    PoolOptions::new().mode(Mode::Msync).ignore_env(true)
}

/// Creates and closes a pool of the smallest size in `dir`.
pub fn new_pool(dir: &Path) -> PathBuf {
    let p = dir.join("test.pool");
    RawPool::create(&p, LAYOUT, pmem_pool::MIN_POOL_SIZE, &opts())
        .unwrap()
        .close()
        .unwrap();
    p
}

/// Overwrites bytes at `off`.
pub fn patch(path: &Path, off: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

/// Reads `len` bytes at `off`.
pub fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut b = vec![0; len];
    f.read_exact_at(&mut b, off).unwrap();
    b
}

/// Recomputes the crc32 of the header copy at `copy` (crc of bytes before 0xFFC).
pub fn fix_crc(path: &Path, copy: u64) {
    let b = read_at(path, copy, 0x1000);
    let crc = pmem_pool::crc::crc32c(&b[..OFF_CRC as usize]);
    patch(path, copy + OFF_CRC, &crc.to_le_bytes());
}

/// Patches a field in both copies and fixes both checksums.
pub fn patch_both(path: &Path, field: u64, bytes: &[u8]) {
    for copy in [PRIMARY, BACKUP] {
        patch(path, copy + field, bytes);
        fix_crc(path, copy);
    }
}

/// A tempdir on /dev/shm when it exists (tmpfs: fast, never fs-DAX).
pub fn tempdir() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// A command that re-runs exactly the test `name` of this binary, with
/// `var=value` set so that the test takes its child branch.
pub fn child(name: &str, var: &str, value: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(var, value)
        .env_remove("PMEM_MODE")
        .env_remove("PMEM_IS_PMEM_FORCE");
    c
}
