//! A pool held open by another process is `Locked` for writers and readers.
//! Alone in its test binary: the fork that spawns the child duplicates every
//! descriptor of this process until exec, which would hold other tests'
//! `flock`s for a moment.

mod common;

use common::*;
use pmem_pool::{Error, RawPool};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;

const CHILD: &str = "H3_LOCK_CHILD_POOL";

#[test]
fn pool_held_by_another_process_is_locked() {
    if let Some(p) = std::env::var_os(CHILD) {
        // Child: hold the pool open until the parent closes our stdin.
        let pool = RawPool::open(std::path::Path::new(&p), Some(LAYOUT), &opts()).unwrap();
        // Straight to fd 1: libtest may capture `println!` even with
        // --nocapture on newer toolchains.
        let mut out = std::io::stdout();
        writeln!(out, "\nH3-READY").unwrap();
        out.flush().unwrap();
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink).unwrap();
        pool.close().unwrap();
        std::process::exit(0);
    }
    let dir = tempdir();
    let p = new_pool(dir.path());
    let mut c = child("pool_held_by_another_process_is_locked", CHILD, &p)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "child exited early");
        if line.trim_end().ends_with("H3-READY") {
            break;
        }
    }
    let rw = RawPool::open(&p, Some(LAYOUT), &opts()).map(drop);
    let ro = RawPool::open(&p, Some(LAYOUT), &opts().read_only(true)).map(drop);
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success());
    assert!(matches!(rw, Err(Error::Locked { .. })), "{rw:?}");
    assert!(matches!(ro, Err(Error::Locked { .. })), "{ro:?}");
    // The child closed cleanly: the pool opens again.
    let pool = RawPool::open(&p, Some(LAYOUT), &opts()).unwrap();
    assert_eq!(pool.run_id(), 3);
}
