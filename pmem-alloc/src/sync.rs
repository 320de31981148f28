//! The primitive shim: the heap's volatile concurrent structures take their
//! locks, atomics and `Arc` from here, so that `--cfg loom` swaps in loom's
//! and the loom model (`tests/loom_arenas.rs`) checks the real code.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::{Arc, Mutex, MutexGuard, RwLock};

#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Locks `m`, ignoring poisoning: every critical section of the heap leaves
/// its state consistent before anything in it can panic.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `l`, ignoring poisoning (as [`lock`]).
#[cfg(not(loom))]
pub fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `l`, ignoring poisoning (as [`lock`]).
#[cfg(not(loom))]
pub fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `l`, ignoring poisoning (as [`lock`]).
#[cfg(loom)]
pub fn read<T>(l: &RwLock<T>) -> loom::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `l`, ignoring poisoning (as [`lock`]).
#[cfg(loom)]
pub fn write<T>(l: &RwLock<T>) -> loom::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
