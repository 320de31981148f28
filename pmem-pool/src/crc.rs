//! CRC-32C (Castagnoli), the checksum of log entries and of the committed
//! data a commit record covers.
//!
//! These checksums are computed on every transaction over a few dozen bytes
//! (an entry header and a 64-byte snapshot, say). At that size a general
//! CRC-32 (IEEE) spends most of its time setting up its folding, while x86's
//! SSE4.2 `crc32` instruction takes eight bytes per instruction with no
//! set-up. Where the CPU lacks SSE4.2 (or off x86-64) a table computes the
//! same value a byte at a time.
//!
//! The value is the standard CRC-32C (reflected polynomial `0x82F63B78`,
//! initial value and final xor `0xFFFF_FFFF`): `crc32c(b"123456789")` is
//! `0xE306_9283`.

/// Incremental CRC-32C: `update` with each piece, then `finalize`. The
/// result is the same however the input is split.
#[derive(Clone, Copy, Debug)]
pub struct Crc32c {
    /// The running remainder, not yet complemented.
    state: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32c {
    /// A checksum over nothing yet.
    #[inline]
    pub const fn new() -> Self {
        Self { state: !0 }
    }

    /// Adds `bytes`.
    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        self.state = update(self.state, bytes);
    }

    /// The checksum of everything added.
    #[inline]
    pub fn finalize(self) -> u32 {
        !self.state
    }
}

/// CRC-32C of `bytes`.
#[inline]
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut h = Crc32c::new();
    h.update(bytes);
    h.finalize()
}

/// CRC-32C of the 8 little-endian bytes of each of `words`, then the 4
/// of `word32`, then `bytes`: a log entry's checksum (its generation and
/// header words, then its payload) without laying the header out in
/// memory first, and with one CPU feature check.
#[inline]
pub fn crc32c_words_then(words: &[u64], word32: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2, checked just above.
            return unsafe { words_then_sse42(words, word32, bytes) };
        }
    }
    words_then_table(words, word32, bytes)
}

fn words_then_table(words: &[u64], word32: u32, bytes: &[u8]) -> u32 {
    let mut c = !0;
    for w in words {
        c = update_table(&TABLE, c, &w.to_le_bytes());
    }
    c = update_table(&TABLE, c, &word32.to_le_bytes());
    !update_table(&TABLE, c, bytes)
}

/// CRC-32 (IEEE: reflected polynomial `0xEDB88320`, as zlib), which
/// format versions 1 and 2 used. Read only to recognise an older pool's
/// header, so that opening one says "older version" instead of "corrupt
/// header"; a byte at a time.
pub fn crc32_ieee(bytes: &[u8]) -> u32 {
    !update_table(&IEEE_TABLE, !0, bytes)
}

#[inline]
fn update(state: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2, checked just above.
            return unsafe { update_sse42(state, bytes) };
        }
    }
    update_table(&TABLE, state, bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn update_sse42(state: u32, bytes: &[u8]) -> u32 {
    use core::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let mut words = bytes.chunks_exact(8);
    let mut c = u64::from(state);
    for w in &mut words {
        let v = u64::from_le_bytes(w.try_into().unwrap_or_default());
        c = _mm_crc32_u64(c, v);
    }
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    c
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn words_then_sse42(words: &[u64], word32: u32, bytes: &[u8]) -> u32 {
    use core::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    let mut c = u64::from(!0u32);
    for &w in words {
        c = _mm_crc32_u64(c, w);
    }
    let c = _mm_crc32_u32(c as u32, word32);
    !update_sse42(c, bytes)
}

/// A byte at a time through `table` (the CRC-32C one, or the IEEE one).
fn update_table(table: &[u32; 256], mut c: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        c = table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c
}

/// The byte-at-a-time table of the reflected polynomial `poly`.
const fn table(poly: u32) -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = table(0x82F6_3B78);
static IEEE_TABLE: [u32; 256] = table(0xEDB8_8320);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 (iSCSI), appendix B.4: 32 bytes of zeros, of ones.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn legacy_ieee_known_value() {
        assert_eq!(crc32_ieee(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32_ieee(b""), 0);
    }

    #[test]
    fn the_table_agrees_with_the_instruction_and_splits_do_not_matter() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 84, 255, 300] {
            let whole = !update_table(&TABLE, !0, &data[..len]);
            assert_eq!(crc32c(&data[..len]), whole, "len {len}");
            if len >= 20 {
                let w = |i: usize| u64::from_le_bytes(data[i..i + 8].try_into().unwrap());
                let w32 = u32::from_le_bytes(data[16..20].try_into().unwrap());
                let fast = crc32c_words_then(&[w(0), w(8)], w32, &data[20..len]);
                assert_eq!(fast, whole, "len {len} by words");
                let table = words_then_table(&[w(0), w(8)], w32, &data[20..len]);
                assert_eq!(table, whole, "len {len} by words, table");
            }
            for cut in [0, 1, 3, 8, len / 2, len] {
                let cut = cut.min(len);
                let mut h = Crc32c::new();
                h.update(&data[..cut]);
                h.update(&data[cut..len]);
                assert_eq!(h.finalize(), whole, "len {len} cut {cut}");
            }
        }
    }
}
