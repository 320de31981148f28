//! Helpers shared by the CLI integration tests: running the `pmem` binary
//! with the environment's mode overrides removed, and reading its output.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// Runs `pmem` with `args`, `PMEM_MODE` and `PMEM_IS_PMEM_FORCE` unset.
pub fn pmem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pmem"))
        .args(args)
        .env_remove("PMEM_MODE")
        .env_remove("PMEM_IS_PMEM_FORCE")
        .output()
        .expect("run pmem")
}

/// Bytes of output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The standard error of a run, as text.
pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// Serializes the tests of one file that open pools in this process while
/// others spawn `pmem`: a child holds copies of every descriptor open in
/// this process between its fork and its exec, so it can briefly hold a
/// pool's `flock` that a test just closed, and the test's next open would
/// fail with `Locked`.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
