//! `pmem-pool`: the bottom layer of pmem-obj.
//!
//! It owns mapping a pool file or device-dax device into memory, the
//! persistence primitives that make stores durable ([`Persister`]: flush,
//! drain, non-temporal copy/fill) and the [`Mode`] that picks them, the
//! simulated persistence domain used by crash tests (feature `sim`), and the
//! pool header. It knows nothing of objects, allocation or transactions.
//!
//! # Invariants
//! - Every store the upper layers want durable goes through one seam, the
//!   [`Persister`] of the pool: `flush` marks a range, `drain` makes every
//!   range this thread flushed durable and orders it before later stores.
//! - The header and its backup are written only at create (and by repair);
//!   the mutable pool state (run id, dirty flag, root) is updated with
//!   8-byte failure-atomic stores.
//!
//! # Unsafe boundary
//! `unsafe` is denied at the crate root and allowed only in the modules that
//! need it: `map` (mmap/munmap, flock), `persist` and its children
//! (cache-flush instructions, non-temporal stores, msync), `sim` (copying
//! lines out of the live mapping), `crc` (the SSE4.2 `crc32` instruction).
//! `UNSAFE.md` at the project root lists the invariants each relies on.
#![deny(unsafe_code)]

pub mod check;
pub mod cpu;
#[allow(unsafe_code)]
pub mod crc;
mod error;
mod header;
#[allow(unsafe_code)]
pub mod lane;
pub mod lane_set;
mod layout;
#[allow(unsafe_code)]
mod map;
mod mode;
mod options;
#[allow(unsafe_code)]
pub mod persist;
mod pool;
#[cfg(feature = "sim")]
#[allow(unsafe_code)]
pub mod sim;
pub mod sync;
#[cfg(all(test, feature = "sim"))]
#[allow(unsafe_code)]
mod test_sim_buf;
#[allow(unsafe_code)]
pub mod ulog;

pub use error::{Error, Result};
pub use header::{HeaderInfo, INCOMPAT_GEN_COPY, LAYOUT_MAX};
pub use lane::{LaneLayout, LaneState};
pub use layout::{BACKUP_HEADER_OFFSET, HEADER_OFFSET, MIN_POOL_SIZE, STATE_OFFSET};
pub use mode::{Mode, ModeChoice};
pub use options::PoolOptions;
pub use persist::Persister;
pub use pool::{RawPool, ShutdownState};
