//! Crash simulation of deferred writes: `tx.write` of a small value goes
//! to the redo log and is stored after the commit record. Transactions mix
//! such writes (and `tx.replace`, which reads then defers) with reads of
//! the same words (which store them in place first, the undo way),
//! snapshotted writes of whole 64-byte slots, and aborts. After recovery
//! from any crash image the root equals the model exactly before or after
//! the interrupted transaction.

mod common;

use common::{Harness, Rng};
use pmem_tx::{Error, PPtr};

/// One action of a transaction, on the root seen as 64-byte slots.
#[derive(Clone, Copy, Debug)]
enum Act {
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

const WORDS: u64 = 1024; // the first 8 KiB of the root

#[test]
fn deferred_writes_survive_every_crash() {
    let mut h = Harness::new();
    let mut rng = Rng(7);
    for t in 0..120u64 {
        let n = 1 + rng.below(5);
        let acts: Vec<Act> = (0..n)
            .map(|_| match rng.below(9) {
                0..=2 => Act::Word(rng.below(WORDS), rng.next()),
                3 | 4 => Act::Pair(rng.below(WORDS / 2) * 2, rng.next()),
                5 | 6 => Act::Read(rng.below(WORDS)),
                7 => Act::Replace(rng.below(WORDS), rng.next()),
                _ => Act::Slot(rng.below(WORDS / 8), rng.next() as u8),
            })
            .collect();
        let abort = rng.below(6) == 0;
        let run = acts.clone();
        h.step(
            format!("tx {t}: {acts:?}{}", if abort { ", aborted" } else { "" }),
            move |pool, root| {
                let words: PPtr<u64> = root.cast();
                // The transaction's own view of the words it touched.
                let mut mine = std::collections::HashMap::new();
                let r = pool.transaction(|tx| -> Result<(), Error> {
                    for &a in &run {
                        match a {
                            Act::Word(w, v) => {
                                tx.write(words.at(w), v)?;
                                mine.insert(w, v);
                            }
                            Act::Pair(w, v) => {
                                tx.write(words.at(w).cast::<[u64; 2]>(), [v, !v])?;
                                mine.insert(w, v);
                                mine.insert(w + 1, !v);
                            }
                            Act::Read(w) => {
                                let got = tx.read(words.at(w))?;
                                if let Some(&want) = mine.get(&w) {
                                    assert_eq!(got, want, "word {w} does not read back");
                                }
                            }
                            Act::Replace(w, v) => {
                                let old = tx.replace(words.at(w), v)?;
                                if let Some(&want) = mine.get(&w) {
                                    assert_eq!(old, want, "word {w}: replace read another value");
                                }
                                mine.insert(w, v);
                            }
                            Act::Slot(s, b) => {
                                tx.get_mut(root.cast::<[u8; 64]>().at(s))?.fill(b);
                                for w in s * 8..s * 8 + 8 {
                                    mine.insert(w, u64::from_ne_bytes([b; 8]));
                                }
                            }
                        }
                    }
                    if abort {
                        return Err(Error::Aborted);
                    }
                    Ok(())
                });
                assert_eq!(r.is_err(), abort, "{r:?}");
                true
            },
            move |m| {
                if abort {
                    return;
                }
                for a in acts {
                    match a {
                        Act::Word(w, v) | Act::Replace(w, v) => {
                            let o = w as usize * 8;
                            m[o..o + 8].copy_from_slice(&v.to_ne_bytes());
                        }
                        Act::Pair(w, v) => {
                            let o = w as usize * 8;
                            m[o..o + 8].copy_from_slice(&v.to_ne_bytes());
                            m[o + 8..o + 16].copy_from_slice(&(!v).to_ne_bytes());
                        }
                        Act::Read(_) => {}
                        Act::Slot(s, b) => {
                            let o = s as usize * 64;
                            m[o..o + 64].fill(b);
                        }
                    }
                }
            },
        );
    }
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes(16);
    println!(
        "crash_deferred: {steps} transactions, {points} drain points, {images} crash images recovered and checked"
    );
    // At least one drain per transaction (a transaction of deferred words
    // only parks its lane instead of fencing its apply; the next one's
    // drain fences it).
    assert!(
        points >= steps,
        "{points} drain points for {steps} transactions"
    );
}
