//! Test support shared by the unit tests of the log and the lanes: a heap
//! buffer standing in for a mapping, driven by a `Sim` persister.

use crate::Mode;
use crate::persist::Persister;

/// Bytes of the simulated pool.
pub(crate) const POOL: usize = 1 << 20;

/// A heap buffer standing in for a mapping, written only through its raw
/// pointer (as the pool writes the mapping). 8-aligned (`u64` words).
struct Buf {
    ptr: *mut u64,
    words: usize,
}

impl Buf {
    fn new(len: usize) -> Self {
        let b = vec![0u64; len.div_ceil(8)].into_boxed_slice();
        let words = b.len();
        Buf {
            ptr: Box::into_raw(b).cast::<u64>(),
            words,
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: ptr/words come from Box::into_raw of a boxed slice of
        // `words` u64s, and the persister using it was dropped before (it is
        // declared before the buffer in `SimBuf`).
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.words)) });
    }
}

/// A `Sim` persister over a [`POOL`]-byte buffer.
pub(crate) struct SimBuf {
    pub(crate) p: Persister,
    _buf: Buf,
}

impl SimBuf {
    /// A buffer whose volatile and persisted images are `img`.
    pub(crate) fn with(img: &[u8]) -> Self {
        assert_eq!(img.len(), POOL);
        let buf = Buf::new(POOL);
        // SAFETY: `img` is POOL bytes, the buffer a separate allocation of
        // POOL bytes.
        unsafe { std::ptr::copy_nonoverlapping(img.as_ptr(), buf.ptr.cast::<u8>(), POOL) };
        // SAFETY: the buffer is live, writable and outlives the persister
        // (field order: `p` is dropped first).
        let p = unsafe { Persister::new(buf.ptr.cast::<u8>(), POOL, Mode::Sim) }.unwrap();
        SimBuf { p, _buf: buf }
    }

    /// A zeroed buffer.
    pub(crate) fn zeroed() -> Self {
        Self::with(&vec![0u8; POOL])
    }

    /// A copy of the volatile bytes.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut v = vec![0u8; POOL];
        // SAFETY: the buffer holds POOL bytes; nothing writes it meanwhile.
        unsafe { std::ptr::copy_nonoverlapping(self.p.base(), v.as_mut_ptr(), POOL) };
        v
    }

    /// Plain stores into the buffer (no flush), like a transaction's.
    pub(crate) fn poke(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= POOL);
        // SAFETY: inside the buffer; no reference into it is alive.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.p.base().add(off), data.len()) };
    }

    /// A copy of `len` volatile bytes at `off`.
    pub(crate) fn peek(&self, off: usize, len: usize) -> Vec<u8> {
        self.bytes()[off..off + len].to_vec()
    }
}
