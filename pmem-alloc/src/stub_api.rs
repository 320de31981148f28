//! TEMPORARY: the signatures of the heap, stubbed so that pmem-tx can be
//! built against them while the heap is written. Replaced by the real
//! implementation.
#![allow(missing_docs, clippy::missing_safety_doc, unsafe_code)]

use crate::{RedoOp, Result};
use pmem_pool::Persister;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapRegion {
    pub offset: u64,
    pub size: u64,
}
pub struct Heap;
#[derive(Debug)]
pub struct Reservation {
    pub off: u64,
    pub usable: u64,
}
#[derive(Debug)]
pub struct FreeTicket {
    pub off: u64,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocInfo {
    pub off: u64,
    pub size: u64,
    pub usable: u64,
    pub type_num: u64,
}
#[derive(Clone, Debug, Default)]
pub struct HeapStats;
#[derive(Clone, Debug, Default)]
pub struct HeapReport {
    pub problems: Vec<String>,
    pub objects: u64,
    pub objects_by_type: BTreeMap<u64, u64>,
    pub used_bytes: u64,
    pub free_bytes: u64,
}
impl Heap {
    pub unsafe fn open(_p: &Persister, _region: HeapRegion) -> Result<Heap> {
        todo!()
    }
    pub fn reserve(&self, _p: &Persister, _size: u64, _type_num: u64) -> Result<Reservation> {
        todo!()
    }
    pub unsafe fn write_header(&self, _p: &Persister, _r: &Reservation) {
        todo!()
    }
    pub fn publish_ops(&self, _r: &Reservation, _out: &mut Vec<RedoOp>) {
        todo!()
    }
    pub fn cancel(&self, _r: Reservation) {
        todo!()
    }
    pub fn free_ops(
        &self,
        _p: &Persister,
        _off: u64,
        _out: &mut Vec<RedoOp>,
    ) -> Result<FreeTicket> {
        todo!()
    }
    pub fn cancel_free(&self, _t: FreeTicket) {
        todo!()
    }
    pub fn after_commit(&self, _published: Vec<Reservation>, _freed: Vec<FreeTicket>) {
        todo!()
    }
    pub fn alloc_info(&self, _p: &Persister, _off: u64) -> Result<AllocInfo> {
        todo!()
    }
    pub fn objects(&self, _p: &Persister, _type_num: Option<u64>) -> Vec<AllocInfo> {
        todo!()
    }
    pub fn stats(&self) -> HeapStats {
        todo!()
    }
    pub fn check(&self, _p: &Persister) -> HeapReport {
        todo!()
    }
}
pub fn check_bytes(_pool: &[u8], _region: HeapRegion) -> HeapReport {
    todo!()
}
