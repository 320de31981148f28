//! Crash during create, simulated: the Sim domain traces the create
//! protocol from its first store, and every crash image (the persisted
//! state at each fence, plus random subsets of the lines not yet
//! persisted) is written to a file and opened. An image either is refused
//! with a typed error or opens as exactly the pool that was being created:
//! never as a valid pool with wrong contents.
#![cfg(feature = "sim")]

mod common;

use pmem_pool::sim::{CrashOptions, trace_next_domain};
use pmem_pool::{Error, Mode, PoolOptions, RawPool};
use std::ops::ControlFlow;

#[test]
fn no_crash_image_of_create_opens_as_a_wrong_pool() {
    let dir = common::tempdir();
    let size = pmem_pool::MIN_POOL_SIZE.next_multiple_of(4096);
    trace_next_domain();
    let opts = PoolOptions::new().mode(Mode::Sim).ignore_env(true);
    let raw = RawPool::create(&dir.path().join("c.pool"), "crash-create", size, &opts).unwrap();
    let want = raw.header().clone();
    let mut trace = raw
        .persister()
        .sim()
        .unwrap()
        .take_trace()
        .expect("the domain traced create from its first store");
    raw.close().unwrap();

    let img_path = dir.path().join("image.pool");
    let (mut opened, mut refused) = (0usize, 0usize);
    let copts = CrashOptions {
        random_subsets: 64,
        seed: 7,
        exhaustive_up_to: 6,
    };
    let flow = trace.for_each_image(&copts, |img| {
        let _ = std::fs::remove_file(&img_path);
        std::fs::write(&img_path, img.bytes).unwrap();
        let o = PoolOptions::new().mode(Mode::Msync).ignore_env(true);
        match RawPool::open(&img_path, Some("crash-create"), &o) {
            Ok(p) => {
                assert_eq!(
                    p.header(),
                    &want,
                    "image at point {} opened with another header",
                    img.point
                );
                opened += 1;
            }
            Err(
                Error::NotAPool { .. }
                | Error::ChecksumMismatch { .. }
                | Error::BadHeader { .. }
                | Error::TooSmall { .. },
            ) => refused += 1,
            Err(e) => panic!("image at point {}: unexpected error {e}", img.point),
        }
        ControlFlow::<()>::Continue(())
    });
    assert!(flow.is_continue());
    println!(
        "crash_during_create: {} drain points, {opened} images opened as the right pool, {refused} refused",
        trace.points()
    );
    assert!(refused > 0, "images before the magic must be refused");
    assert!(opened > 0, "the image after the last fence must open");
}
