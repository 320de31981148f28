//! The simulated persistence domain (feature `sim`).
//!
//! TODO(H2): real implementation.

/// A simulated persistence domain beside a live mapping.
pub struct SimDomain {
    _base: *mut u8,
    _len: usize,
}

// SAFETY: placeholder; H2 documents the real reasoning.
unsafe impl Send for SimDomain {}
// SAFETY: placeholder; H2 documents the real reasoning.
unsafe impl Sync for SimDomain {}

impl SimDomain {
    /// # Safety
    /// `base..base+len` is a live mapping for the life of the domain.
    pub(crate) unsafe fn new(base: *mut u8, len: usize) -> Self {
        SimDomain {
            _base: base,
            _len: len,
        }
    }

    pub(crate) fn flush(&self, off: usize, len: usize) {
        let _ = (off, len);
        todo!("H2")
    }

    pub(crate) fn drain(&self) {
        todo!("H2")
    }
}
