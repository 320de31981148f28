//! Transactions of small writes to the root's words, for the crash tests
//! of deferred writes (`crash_deferred`, `crash_deferred_lanes`).

use super::Root;
use pmem_tx::{Error, PPtr, Tx};
use std::collections::HashMap;

/// One action of a transaction, on the root seen as u64 words and
/// 64-byte slots.
#[derive(Clone, Copy, Debug)]
pub enum WordAct {
    /// `tx.write` of a u64 at word `w` (deferred when uncovered).
    Word(u64, u64),
    /// `tx.write` of a `[u64; 2]` at words `w, w+1` (deferred likewise).
    Pair(u64, u64),
    /// `tx.read` of word `w`, checked against what the transaction wrote.
    Read(u64),
    /// `get_mut` of slot `s` (snapshot), filled with a byte.
    Slot(u64, u8),
    /// `tx.replace` of word `w` with a value (deferred likewise); the old
    /// value is checked against what the transaction wrote.
    Replace(u64, u64),
}

/// Runs `acts` in `tx`, checking every word read back (by `Read` or
/// `Replace`) against what the transaction itself wrote there before.
pub fn run(tx: &mut Tx<'_>, root: PPtr<Root>, acts: &[WordAct]) -> Result<(), Error> {
    let words: PPtr<u64> = root.cast();
    // The transaction's own view of the words it touched.
    let mut mine = HashMap::new();
    for &a in acts {
        match a {
            WordAct::Word(w, v) => {
                tx.write(words.at(w), v)?;
                mine.insert(w, v);
            }
            WordAct::Pair(w, v) => {
                tx.write(words.at(w).cast::<[u64; 2]>(), [v, !v])?;
                mine.insert(w, v);
                mine.insert(w + 1, !v);
            }
            WordAct::Read(w) => {
                let got = tx.read(words.at(w))?;
                if let Some(&want) = mine.get(&w) {
                    assert_eq!(got, want, "word {w} does not read back");
                }
            }
            WordAct::Replace(w, v) => {
                let old = tx.replace(words.at(w), v)?;
                if let Some(&want) = mine.get(&w) {
                    assert_eq!(old, want, "word {w}: replace read another value");
                }
                mine.insert(w, v);
            }
            WordAct::Slot(s, b) => {
                tx.get_mut(root.cast::<[u8; 64]>().at(s))?.fill(b);
                for w in s * 8..s * 8 + 8 {
                    mine.insert(w, u64::from_ne_bytes([b; 8]));
                }
            }
        }
    }
    Ok(())
}

/// What a commit of `acts` does to the root's bytes `m`.
pub fn apply(m: &mut [u8], acts: &[WordAct]) {
    for &a in acts {
        match a {
            WordAct::Word(w, v) | WordAct::Replace(w, v) => {
                let o = w as usize * 8;
                m[o..o + 8].copy_from_slice(&v.to_ne_bytes());
            }
            WordAct::Pair(w, v) => {
                let o = w as usize * 8;
                m[o..o + 8].copy_from_slice(&v.to_ne_bytes());
                m[o + 8..o + 16].copy_from_slice(&(!v).to_ne_bytes());
            }
            WordAct::Read(_) => {}
            WordAct::Slot(s, b) => {
                let o = s as usize * 64;
                m[o..o + 64].fill(b);
            }
        }
    }
}
