//! The persistent heap of pmem-obj: chunks, runs, size classes and allocation
//! headers inside the heap region of a pool (see `FORMAT.md`).
//!
//! Not built yet: the allocator is delivered by its own issue. This crate
//! sits between `pmem-pool` (below) and `pmem-tx` (above) and knows nothing
//! of transactions or user types.
#![deny(unsafe_code)]
