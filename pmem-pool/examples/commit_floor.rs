//! The hardware floor of a two-fence commit on this machine: exactly the
//! persist steps of a pmem-obj transaction that updates one random 64-byte
//! slot of 16 MiB (`pmem-bench tx_update`), without locks, lanes or any
//! bookkeeping:
//! 1. read the slot, checksum an 80-byte undo entry, stream it with
//!    non-temporal stores, flush the lane's generation word, fence;
//! 2. write the slot, flush its lines, stream a 40-byte commit record
//!    carrying the slot's checksum, fence; store the next generation.
//!
//! `cargo run --release -p pmem-pool --example commit_floor [FILE] [OPS]`
//! (default `/dev/shm/commit_floor.bin`, 1,000,000). Prints ns per
//! operation; BENCHMARKS-HISTORY.md compares it with `tx_update`. x86-64
//! with clwb only.

#[cfg(target_arch = "x86_64")]
fn main() -> std::io::Result<()> {
    use std::arch::x86_64::{_mm_sfence, _mm_stream_si64};
    use std::time::Instant;

    fn splitmix64(x: &mut u64) -> u64 {
        *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// # Safety
    /// `p` points into a live mapping.
    unsafe fn clwb(p: *const u8) {
        // SAFETY: the caller's contract; clwb only writes a line back.
        unsafe { std::arch::asm!("clwb [{0}]", in(reg) p, options(nostack, preserves_flags)) };
    }
    /// # Safety
    /// `dst..dst+src.len()` lies in the mapping, 8-aligned; `src.len()` is
    /// a multiple of 8.
    unsafe fn stream(dst: *mut u8, src: &[u8]) {
        for (i, w) in src.chunks_exact(8).enumerate() {
            let v = i64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
            // SAFETY: the caller's contract.
            unsafe { _mm_stream_si64((dst as *mut i64).add(i), v) };
        }
    }

    if !std::is_x86_feature_detected!("sse2") {
        return Ok(());
    }
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/dev/shm/commit_floor.bin".into());
    let ops: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    f.set_len(64 << 20)?;
    // SAFETY: a file this program just created and alone uses.
    let mut m = unsafe { memmap2::MmapMut::map_mut(&f)? };
    m.fill(1);
    let base = m.as_mut_ptr();
    // Slots start 16 bytes into a line, as a root object's data does.
    const SLOTS: u64 = 250_000;
    let (log, data) = (base, 32usize << 20);
    let mut rng = 42u64;
    let mut check = 0u32;
    let t0 = Instant::now();
    for i in 0..ops {
        let slot_off = data + 16 + (splitmix64(&mut rng) % SLOTS) as usize * 64;
        // SAFETY: every offset below lies in the 64 MiB mapping (log area
        // 0..4096, slots 32 MiB + 16 .. 48 MiB), and nothing else uses it.
        unsafe {
            let slot = base.add(slot_off);
            let mut entry = [0u8; 80];
            std::ptr::copy_nonoverlapping(slot, entry.as_mut_ptr().add(16), 64);
            let c = pmem_pool::crc::crc32c(&entry);
            check ^= c;
            entry[12..16].copy_from_slice(&c.to_le_bytes());
            stream(log.add(64), &entry);
            clwb(log);
            _mm_sfence();
            for k in 0..8 {
                (slot as *mut u64).add(k).write_volatile(i * 8 + k as u64);
            }
            clwb(slot);
            clwb(slot.add(63));
            let mut record = [0u8; 40];
            record[..8].copy_from_slice(&i.to_le_bytes());
            let d = pmem_pool::crc::crc32c(std::slice::from_raw_parts(slot, 64));
            record[16..20].copy_from_slice(&d.to_le_bytes());
            stream(log.add(2048 + (i as usize % 2) * 512), &record);
            _mm_sfence();
            (log as *mut u64).write_volatile(i + 1);
        }
    }
    let ns = t0.elapsed().as_nanos() as f64 / ops as f64;
    println!("commit_floor ops={ops} ns_per_op={ns:.1} check={check:08x}");
    drop(m);
    std::fs::remove_file(&path)
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {}
