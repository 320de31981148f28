//! The primitive shim of the persistent-lock table: `--cfg loom` swaps in
//! loom's mutex and condition variable, so `tests/loom_plock.rs` checks the
//! real table code.
//!
//! Under loom, `Condvar::wait_timeout` never times out (loom does not model
//! time); the table therefore behaves as with an infinite timeout there,
//! which is what a lost wake-up model needs: a waiter nobody wakes is a
//! deadlock loom reports.

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: the table's state is changed only by
/// code that cannot panic half-way (counter updates, map insert/remove).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` for at most `dur`, ignoring poisoning as [`lock`] does.
pub(crate) fn wait_timeout<'a, T>(
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    dur: std::time::Duration,
) -> MutexGuard<'a, T> {
    match cv.wait_timeout(g, dur) {
        Ok((g, _)) => g,
        Err(e) => e.into_inner().0,
    }
}
