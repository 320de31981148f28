//! Arena assignment: each thread reserves from one arena of a heap, picked
//! round-robin at its first use of that heap, so two threads allocating at
//! once normally lock different arenas.

use crate::sync::{AtomicUsize, Ordering};
use std::cell::Cell;

/// Hands out arena indexes round-robin, remembered per thread.
#[derive(Debug)]
pub struct ArenaPicker {
    id: u64,
    next: AtomicUsize,
    n: usize,
}

static NEXT_PICKER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[cfg(not(loom))]
std::thread_local! {
    /// (picker id, arena index) of the last heap this thread allocated from.
    static CACHED: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}
#[cfg(loom)]
loom::thread_local! {
    /// (picker id, arena index) of the last heap this thread allocated from.
    static CACHED: Cell<(u64, usize)> = Cell::new((0, 0));
}

impl ArenaPicker {
    /// A picker over `n` arenas (at least 1).
    pub fn new(n: usize) -> Self {
        ArenaPicker {
            id: NEXT_PICKER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            next: AtomicUsize::new(0),
            n: n.max(1),
        }
    }

    /// Number of arenas.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Never true (there is always one arena); for clippy.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The calling thread's arena: assigned round-robin the first time the
    /// thread asks this picker (or after it used another heap), then the
    /// same every time.
    pub fn pick(&self) -> usize {
        CACHED.with(|c| {
            let (id, i) = c.get();
            if id == self.id {
                return i;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.n;
            c.set((self.id, i));
            i
        })
    }
}
