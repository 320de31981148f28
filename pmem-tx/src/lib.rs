//! Transactions over a pmem-obj pool: undo log for user data, redo log for
//! allocator publish/free, one commit point, recovery at open, and the typed
//! API (`PPtr<T>`, `Persistent`, root object).
//!
//! Not built yet: delivered by its own issue.
#![deny(unsafe_code)]
