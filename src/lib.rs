//! pmem-obj: keep data structures in persistent memory and change them
//! crash-atomically. This facade re-exports the crates below it.
#![deny(unsafe_code)]

pub use pmem_pool as pool;
