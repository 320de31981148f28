//! pmem-obj: keep data structures in persistent memory and change them
//! crash-atomically.
//!
//! This facade re-exports what an application needs: [`Pool`] (create,
//! open, root object, transactions), [`Tx`], [`PPtr`], the [`Persistent`]
//! bound (derive it with the re-exported `bytemuck`, naming it with
//! `#[bytemuck(crate = "pmem_obj::bytemuck")]`, or depend on `bytemuck`
//! directly), [`PoolOptions`] and [`Error`]. The
//! crates underneath are reachable as [`pool`] (mapping, persistence
//! primitives, header, logs) and [`tx`].
//!
//! ```
//! use pmem_obj::{Pool, bytemuck};
//!
//! #[repr(C)]
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[bytemuck(crate = "pmem_obj::bytemuck")]
//! struct Account { balance: u64, ops: u64 }
//!
//! # fn main() -> Result<(), pmem_obj::Error> {
//! let dir = tempfile::tempdir().unwrap();
//! let pool = Pool::create(dir.path().join("bank.pool"), "bank-v1", 8 << 20)?;
//! let root = pool.root::<[Account; 2]>()?;
//! pool.transaction(|tx| -> Result<(), pmem_obj::Error> {
//!     let mut a = tx.get_mut(root)?;
//!     a[0].balance = 100;
//!     a[1].balance = 50;
//!     Ok(())
//! })?;
//! // Move 30 from one account to the other: both or neither.
//! pool.transaction(|tx| -> Result<(), pmem_obj::Error> {
//!     let mut a = tx.get_mut(root)?;
//!     a[0].balance -= 30;
//!     a[1].balance += 30;
//!     a[0].ops += 1;
//!     Ok(())
//! })?;
//! assert_eq!(pool.read(root)?[1].balance, 80);
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

pub use pmem_pool as pool;
pub use pmem_tx as tx;
pub use pmem_tx::{
    Error, Flags, Mode, ModeChoice, PPtr, PRef, Persistent, Pool, PoolOptions, Tx, TxMut, TxRef,
    View, bytemuck,
};

/// The README's example, compiled and run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
