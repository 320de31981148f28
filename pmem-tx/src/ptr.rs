//! `PPtr<T>`: a typed, pool-relative, null-able pointer, and the
//! `Persistent` bound of the types that may live in a pool.

use std::marker::PhantomData;

/// Types that may live in a pool: plain data with no references, no heap
/// pointers and no padding-dependent invariants, every bit pattern valid.
/// This is exactly [`bytemuck::Pod`]; derive it with
/// `#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]` on a
/// `#[repr(C)]` struct. Pointers to other pool objects are [`PPtr`]s.
pub trait Persistent: bytemuck::Pod {}

impl<T: bytemuck::Pod> Persistent for T {}

/// A pointer to a `T` inside one pool: the pool's id (the low 64 bits of
/// its UUID, as libpmemobj's `PMEMoid`) and a byte offset. 16 bytes,
/// `Copy`, null when the offset is 0, never a raw address: it stays valid
/// wherever the pool is mapped, and using it with another pool is an error.
#[repr(C)]
pub struct PPtr<T> {
    pool: u64,
    off: u64,
    _t: PhantomData<fn() -> T>,
}

static_assertions::assert_eq_size!(PPtr<u64>, [u64; 2]);

impl<T> PPtr<T> {
    /// The null pointer.
    pub const fn null() -> Self {
        PPtr {
            pool: 0,
            off: 0,
            _t: PhantomData,
        }
    }

    /// Builds a pointer from its parts (as read from a file or built by the
    /// allocator). Using it is checked, so this is safe.
    pub const fn from_raw(pool: u64, off: u64) -> Self {
        PPtr {
            pool,
            off,
            _t: PhantomData,
        }
    }

    /// Whether this is the null pointer.
    pub const fn is_null(self) -> bool {
        self.off == 0
    }

    /// Byte offset inside the pool.
    pub const fn offset(self) -> u64 {
        self.off
    }

    /// Id of the pool the pointer belongs to.
    pub const fn pool_id(self) -> u64 {
        self.pool
    }

    /// The same address as a pointer to `U`. Every dereference checks size,
    /// alignment and bounds, and `Persistent` types accept any bytes, so
    /// reinterpreting is safe.
    pub const fn cast<U>(self) -> PPtr<U> {
        PPtr::from_raw(self.pool, self.off)
    }

    /// Pointer to the field at `byte_offset` inside `*self`, of type `U`
    /// (use `core::mem::offset_of!`). Snapshotting it copies only the
    /// field, not the whole object.
    pub fn field<U>(self, byte_offset: usize) -> PPtr<U> {
        debug_assert!(byte_offset + size_of::<U>() <= size_of::<T>());
        PPtr::from_raw(self.pool, self.off + byte_offset as u64)
    }

    /// Pointer to the `i`-th `T` after this one (for arrays of `T`).
    pub fn at(self, i: u64) -> Self {
        PPtr::from_raw(self.pool, self.off + i * size_of::<T>() as u64)
    }
}

impl<T, const N: usize> PPtr<[T; N]> {
    /// Pointer to element `i` of the array, or `None` past its end.
    pub fn index(self, i: usize) -> Option<PPtr<T>> {
        (i < N).then(|| PPtr::from_raw(self.pool, self.off + (i * size_of::<T>()) as u64))
    }
}

impl<T> Clone for PPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for PPtr<T> {}
impl<T> PartialEq for PPtr<T> {
    fn eq(&self, o: &Self) -> bool {
        self.pool == o.pool && self.off == o.off
    }
}
impl<T> Eq for PPtr<T> {}
impl<T> std::hash::Hash for PPtr<T> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.pool, self.off).hash(h)
    }
}
impl<T> Default for PPtr<T> {
    fn default() -> Self {
        Self::null()
    }
}
impl<T> std::fmt::Debug for PPtr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_null() {
            write!(f, "PPtr(null)")
        } else {
            write!(f, "PPtr({:#x}@{:#x})", self.off, self.pool)
        }
    }
}

// SAFETY: PPtr is #[repr(C)] of two u64 (PhantomData is zero-sized), so
// all-zero bytes are a valid value (the null pointer).
unsafe impl<T: 'static> bytemuck::Zeroable for PPtr<T> {}
// SAFETY: as above, with no padding and every bit pattern valid (validity
// is checked at each use, not assumed); it is Copy and 'static.
unsafe impl<T: 'static> bytemuck::Pod for PPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_arithmetic() {
        let p: PPtr<u64> = PPtr::null();
        assert!(p.is_null());
        let q = PPtr::<[u32; 4]>::from_raw(7, 0x1000);
        assert_eq!(q.index(3).unwrap().offset(), 0x100c);
        assert!(q.index(4).is_none());
        assert_eq!(q.cast::<u32>().at(2).offset(), 0x1008);
        assert_eq!(q.field::<u32>(4).offset(), 0x1004);
        assert_eq!(bytemuck::bytes_of(&q).len(), 16);
    }
}
