//! Real-DAX behaviour, run inside the daxvm guest (`../shared/daxvm`):
//!
//! ```text
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=$PWD/../shared/daxvm/cargo-runner.sh \
//!   cargo test --target x86_64-unknown-linux-gnu -p pmem-pool --all-features --test dax
//! ```
//!
//! The guest sets `DAXVM_DIR` (an ext4 `-o dax=always` mount) and
//! `DAXVM_DEVDAX` (a `/dev/daxX.Y` device). Without `DAXVM_DIR` every test
//! prints why it skips and passes, so the ordinary `cargo test` stays green.
//! With it, a wrong mode fails loudly: that is the point of running here.
//!
//! Each test that ran in the guest prints a `dax-guest-test ok:` line
//! (not starting with `DAXVM-`: the cargo runner drops console lines with
//! that prefix)
//! straight to stdout (past the test harness's capture); `.ci/run` counts
//! them to prove the tests really ran on DAX.

use pmem_pool::{Mode, ModeChoice, PoolOptions, RawPool, ShutdownState};
use std::io::Write as _;
use std::path::{Path, PathBuf};

const LAYOUT: &str = "daxvm-test";
const SIZE: u64 = 16 << 20;

/// Writes a line to the real stdout, not the harness's captured one.
fn say(msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{msg}");
    let _ = out.flush();
}

/// `DAXVM_DIR`, or `None` after printing why the test skips.
fn guest_dir(test: &str) -> Option<PathBuf> {
    match std::env::var_os("DAXVM_DIR") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => {
            say(&format!(
                "dax::{test}: skipped: DAXVM_DIR is unset (not in the daxvm guest; \
                 run through ../shared/daxvm/cargo-runner.sh to test real DAX)"
            ));
            None
        }
    }
}

fn ran(test: &str, c: &ModeChoice) {
    say(&format!(
        "dax-guest-test ok: {test}: mode={} ({})",
        c.mode, c.reason
    ));
}

fn expect_mode(c: &ModeChoice, mode: Mode, reason_has: &[&str], what: &str) {
    let reason = c.reason.to_ascii_lowercase();
    assert_eq!(
        c.mode, mode,
        "{what}: expected mode {mode} in the daxvm guest, got {} ({})",
        c.mode, c.reason
    );
    assert!(
        reason_has.iter().any(|k| reason.contains(k)),
        "{what}: mode reason {:?} should mention one of {reason_has:?}",
        c.reason
    );
}

/// Reads `len` bytes at pool offset `off`.
fn read(pool: &RawPool, off: u64, len: usize) -> Vec<u8> {
    assert!(off + len as u64 <= pool.size());
    // SAFETY: off..off+len lies inside the live mapping (asserted above),
    // and nothing writes to the pool while this shared view is alive.
    unsafe { std::slice::from_raw_parts(pool.base().add(off as usize), len) }.to_vec()
}

/// Writes `bytes` at the start of the heap through the persister.
fn write_heap(pool: &RawPool, bytes: &[u8]) {
    let off = pool.header().heap_offset as usize;
    assert!(off + bytes.len() <= pool.size() as usize);
    // SAFETY: the range lies inside the heap of a pool this test opened
    // read-write, and no reference into the pool is alive.
    unsafe { pool.persister().memcpy_persist(off, bytes) }.unwrap();
}

/// A new pool file `name` in the guest's fs-DAX folder, created with the
/// default options, which must pick Pmem mode through MAP_SYNC; `None`
/// outside the guest (the test skips). The folder goes with the
/// `TempDir`.
fn create_on_fsdax(test: &str, name: &str) -> Option<(tempfile::TempDir, PathBuf, RawPool)> {
    let dir = guest_dir(test)?;
    let tmp = tempfile::tempdir_in(&dir).unwrap();
    let path = tmp.path().join(name);
    let pool = RawPool::create(&path, LAYOUT, SIZE, &PoolOptions::default()).unwrap();
    expect_mode(
        pool.mode_choice(),
        Mode::Pmem,
        &["map_sync"],
        "create on fs-DAX",
    );
    Some((tmp, path, pool))
}

/// Reopens the fs-DAX pool at `path` with the default options, which must
/// pick Pmem mode through MAP_SYNC again (`what` names the step).
fn open_on_fsdax(path: &Path, what: &str) -> RawPool {
    let pool = RawPool::open(path, Some(LAYOUT), &PoolOptions::default()).unwrap();
    expect_mode(pool.mode_choice(), Mode::Pmem, &["map_sync"], what);
    pool
}

#[test]
fn fsdax_default_options_pick_pmem_with_map_sync() {
    let test = "fsdax_default_options_pick_pmem_with_map_sync";
    let Some((_tmp, path, pool)) = create_on_fsdax(test, "mode.pool") else {
        return;
    };
    pool.close().unwrap();

    let pool = open_on_fsdax(&path, "open on fs-DAX");
    ran(test, pool.mode_choice());
    pool.close().unwrap();
}

#[test]
fn fsdax_data_persisted_survives_close_and_reopen() {
    let test = "fsdax_data_persisted_survives_close_and_reopen";
    let Some((_tmp, path, pool)) = create_on_fsdax(test, "data.pool") else {
        return;
    };
    let greeting = b"hello from the fs-DAX guest, through clwb + sfence";
    write_heap(&pool, greeting);
    let first_run = pool.run_id();
    pool.close().unwrap();

    let pool = open_on_fsdax(&path, "reopen on fs-DAX");
    let off = pool.header().heap_offset;
    assert_eq!(read(&pool, off, greeting.len()), greeting);
    assert_eq!(pool.previous_shutdown(), ShutdownState::Clean);
    assert!(
        pool.run_id() > first_run,
        "run id {} not bumped past {first_run}",
        pool.run_id()
    );
    ran(test, pool.mode_choice());
    pool.close().unwrap();
}

#[test]
fn fsdax_restreamed_bytes_survive_close_and_reopen() {
    // `Persister::restream`, the commit's write-back since change 68, on
    // a MAP_SYNC mapping: words stored again with streaming stores, the
    // lines of partial words at the ends flushed, and every byte, inside
    // the ranges or between them, reads back through a new mapping. (That
    // they were durable before the close, no test without a power cut
    // can see: the crash simulations check the protocol around it.)
    let test = "fsdax_restreamed_bytes_survive_close_and_reopen";
    let Some((_tmp, path, pool)) = create_on_fsdax(test, "restream.pool") else {
        return;
    };
    let heap = pool.header().heap_offset as usize;
    let area = 16 << 10;
    let pattern: Vec<u8> = (0..area).map(|i| (i * 31 + 7) as u8).collect();
    // SAFETY: heap..heap+area lies in the heap of a pool this test
    // created, and no reference into the pool is alive.
    unsafe { std::ptr::copy_nonoverlapping(pattern.as_ptr(), pool.base().add(heap), area) };
    // Ranges starting and ending inside words, on words, on lines.
    let ranges = [
        (3usize, 200usize),
        (256, 64),
        (333, 1),
        (1000, 4096),
        (8192, 8),
    ];
    let p = pool.persister();
    for &(at, len) in &ranges {
        // SAFETY: inside the area; this thread alone writes it.
        unsafe { p.restream(heap + at, len) };
    }
    p.drain().unwrap();
    pool.close().unwrap();

    let pool = open_on_fsdax(&path, "reopen on fs-DAX");
    assert_eq!(read(&pool, heap as u64, area), pattern);
    ran(test, pool.mode_choice());
    pool.close().unwrap();
}

/// The size of a device-dax device, from sysfs.
fn devdax_size(dev: &Path) -> u64 {
    let name = dev.file_name().unwrap().to_string_lossy().into_owned();
    for sys in [
        format!("/sys/bus/dax/devices/{name}/size"),
        format!("/sys/class/dax/{name}/size"),
    ] {
        if let Ok(s) = std::fs::read_to_string(&sys) {
            return s.trim().parse().unwrap();
        }
    }
    panic!("cannot find the size of {} in sysfs", dev.display());
}

#[test]
fn devdax_in_place_format_and_reopen_pick_pmem() {
    if guest_dir("devdax_in_place_format_and_reopen_pick_pmem").is_none() {
        return;
    }
    let dev = std::env::var_os("DAXVM_DEVDAX")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .expect("DAXVM_DIR is set but DAXVM_DEVDAX is not: the guest has no device-dax");
    let size = devdax_size(&dev);
    let greeting = b"hello from device-dax";
    let device_dax = ["device-dax", "devdax", "device dax", "/dev/dax"];

    let pool = RawPool::create(&dev, LAYOUT, size, &PoolOptions::default()).unwrap();
    expect_mode(
        pool.mode_choice(),
        Mode::Pmem,
        &device_dax,
        "create on device-dax",
    );
    write_heap(&pool, greeting);
    pool.close().unwrap();

    let pool = RawPool::open(&dev, Some(LAYOUT), &PoolOptions::default()).unwrap();
    expect_mode(
        pool.mode_choice(),
        Mode::Pmem,
        &device_dax,
        "reopen on device-dax",
    );
    let off = pool.header().heap_offset;
    assert_eq!(read(&pool, off, greeting.len()), greeting);
    ran(
        "devdax_in_place_format_and_reopen_pick_pmem",
        pool.mode_choice(),
    );
    pool.close().unwrap();
}

#[test]
fn tmpfs_in_the_guest_picks_msync() {
    if guest_dir("tmpfs_in_the_guest_picks_msync").is_none() {
        return;
    }
    // The guest mounts a tmpfs at /tmp: no DAX, MAP_SYNC is refused.
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let path = tmp.path().join("tmpfs.pool");
    let pool = RawPool::create(&path, LAYOUT, SIZE, &PoolOptions::default()).unwrap();
    assert_eq!(
        pool.mode_choice().mode,
        Mode::Msync,
        "tmpfs in the guest should fall back to msync, got {} ({})",
        pool.mode_choice().mode,
        pool.mode_choice().reason
    );
    ran("tmpfs_in_the_guest_picks_msync", pool.mode_choice());
    pool.close().unwrap();
}
