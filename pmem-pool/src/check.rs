//! Offline consistency check of a pool file (`pmem check`), without opening
//! it as a pool: works on files whose header is damaged.
//!
//! Both header copies are validated independently (magic, checksum,
//! fields), compared byte for byte, and the file size is compared with the
//! size the header records. Then every lane's logs are inspected
//! ([`lane::inspect`]) in the file prefix that holds them: a lane whose
//! log aims outside the heap and state block is damage; a lane holding an
//! interrupted or committed-but-unapplied transaction is normal after a
//! crash (the next read-write open recovers it) and is reported as a note.
//! Only plain reads, under a shared `flock`. The heap joins the report
//! with the allocator.

use crate::error::{Error, Result};
use crate::header::{self, HeaderInfo, KNOWN_INCOMPAT, KNOWN_RO_COMPAT};
use crate::lane::{self, LaneLayout, LaneState};
use crate::layout::{BACKUP_HEADER_OFFSET, BLOCK_SIZE, HEADER_OFFSET, STATE_OFFSET};
use crate::map::Target;
use crate::pool::{Opened, lock, open_file, read_block};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The state of one header copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyStatus {
    /// Magic, checksum and fields are valid.
    Ok,
    /// The copy does not carry the pool magic.
    BadMagic,
    /// Magic is right but the checksum does not match.
    BadChecksum {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// Checksum matches but a field is invalid (named in the text).
    BadField(String),
}

/// What `check_file` found.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// Primary header state.
    pub primary: CopyStatus,
    /// Backup header state.
    pub backup: CopyStatus,
    /// The header in force (primary if valid, else backup), if any copy is.
    pub header: Option<HeaderInfo>,
    /// Whether the two copies are byte-identical.
    pub copies_match: bool,
    /// Actual file size.
    pub file_size: u64,
    /// Problems found, one sentence each; empty means consistent.
    pub problems: Vec<String>,
    /// The lanes that are not idle, in lane order: pending logs (which the
    /// next read-write open recovers) and damaged lanes (also listed in
    /// `problems`). Empty when no header copy is valid: the lanes cannot
    /// be located then.
    pub lanes: Vec<(u32, LaneState)>,
    /// Facts worth knowing that are not problems (pending logs), one
    /// sentence each.
    pub notes: Vec<String>,
}

impl CheckReport {
    /// True when nothing is wrong.
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One sentence about a non-idle lane: a note for a pending log, the
/// problem for a damaged lane; `None` for an idle lane.
pub fn lane_sentence(lane: u32, state: &LaneState) -> Option<String> {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    Some(match state {
        LaneState::Idle => return None,
        LaneState::UndoPending { entries: 0, .. } => format!(
            "lane {lane}: interrupted transaction with no snapshot yet: the next open discards its log"
        ),
        LaneState::UndoPending { entries, bytes } => format!(
            "lane {lane}: interrupted transaction: the next open rolls back {} ({bytes} bytes)",
            plural(*entries, "snapshot", "snapshots")
        ),
        LaneState::RedoPending { entries: 0 } => format!(
            "lane {lane}: committed transaction whose log is still live (its retirement is made durable lazily): the next open retires it"
        ),
        LaneState::RedoPending { entries } => format!(
            "lane {lane}: committed transaction whose log is still live: the next open re-applies {} (changing nothing if they were applied) and retires it",
            plural(*entries, "redo record", "redo records")
        ),
        LaneState::Damaged => format!(
            "lane {lane} holds a checksum-valid log entry that points outside the heap and the state block: the pool is damaged and its contents must not be trusted (a read-write open refuses it)"
        ),
    })
}

/// The non-idle lanes of the pool whose validated header is `h`, read
/// from the file at `path` (plain reads; the caller may hold the pool open,
/// e.g. read-only for `pmem info`). `Ok(None)` if the file is too short to
/// hold the lanes.
pub fn pending_lanes(path: &Path, h: &HeaderInfo) -> Result<Option<Vec<(u32, LaneState)>>> {
    let o = open_file(path, false)?;
    lane_states(&o, path, h)
}

/// Reads the prefix holding the headers and lanes (up to `heap_offset`)
/// and inspects every lane in it.
fn lane_states(o: &Opened, path: &Path, h: &HeaderInfo) -> Result<Option<Vec<(u32, LaneState)>>> {
    if o.len < h.heap_offset {
        return Ok(None);
    }
    let Ok(len) = usize::try_from(h.heap_offset) else {
        return Ok(None);
    };
    let mut prefix = vec![0u8; len];
    match o.target {
        Target::File => o.file.read_exact_at(&mut prefix, 0),
        Target::DevDax => crate::map::read_devdax(&o.file, o.dev, 0, &mut prefix),
    }
    .map_err(|e| Error::io(format!("reading the lanes of {}", path.display()), e))?;
    let layout = LaneLayout::from_header(h);
    Ok(Some(
        (0..layout.count)
            .map(|i| (i, lane::inspect(&prefix, &layout, i)))
            .filter(|(_, s)| *s != LaneState::Idle)
            .collect(),
    ))
}

/// Checks the pool file at `path` read-only. `Err` means the check could
/// not run (file missing, unreadable, locked by a writer).
pub fn check_file(path: &Path) -> Result<CheckReport> {
    let o = open_file(path, false)?;
    lock(&o.file, path, false)?;
    let primary = read_block(&o, path, HEADER_OFFSET)?;
    let backup = read_block(&o, path, BACKUP_HEADER_OFFSET)?;
    let p_status = status(primary.as_deref(), HEADER_OFFSET);
    let b_status = status(backup.as_deref(), BACKUP_HEADER_OFFSET);
    let decoded = |b: &Option<Box<[u8; BLOCK_SIZE as usize]>>| {
        b.as_deref().and_then(|b| header::decode_copy(b).ok())
    };
    let header = decoded(&primary)
        .or_else(|| decoded(&backup))
        .map(|h| h.info());
    let copies_match = match (&primary, &backup) {
        (Some(p), Some(b)) => p[..] == b[..],
        _ => false,
    };
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut lanes = Vec::new();
    describe("primary", &p_status, &mut problems);
    describe("backup", &b_status, &mut problems);
    if p_status == CopyStatus::Ok && b_status == CopyStatus::Ok && !copies_match {
        problems.push(
            "the primary and backup headers are both valid but differ; `pmem repair` rewrites the backup from the primary".into(),
        );
    }
    if p_status == CopyStatus::BadMagic && b_status == CopyStatus::BadMagic {
        let hint = primary
            .as_deref()
            .and_then(|b| header::foreign_hint(&b[..]))
            .unwrap_or("no known signature");
        problems.push(format!("this is not a pmem-obj pool ({hint})"));
    }
    if let Some(h) = &header {
        if h.version != header::FORMAT_VERSION {
            problems.push(format!(
                "format version {} is not the version this library reads ({}); use a matching pmem",
                h.version,
                header::FORMAT_VERSION
            ));
        }
        let unknown = h.incompat & !KNOWN_INCOMPAT;
        if unknown != 0 {
            problems.push(format!(
                "unknown incompatible features {unknown:#x}: this library cannot open the pool"
            ));
        }
        let unknown = h.ro_compat & !KNOWN_RO_COMPAT;
        if unknown != 0 {
            problems.push(format!(
                "unknown read-only-compatible features {unknown:#x}: the pool can be opened read-only only"
            ));
        }
        if o.len < h.size {
            problems.push(format!(
                "the file is {} bytes but the header records {}: it was truncated",
                o.len, h.size
            ));
        } else {
            check_state(&o, path, &mut problems)?;
        }
        // The lane format is known only for this version and features.
        let readable = h.version == header::FORMAT_VERSION && h.incompat & !KNOWN_INCOMPAT == 0;
        if readable && let Some(found) = lane_states(&o, path, h)? {
            for (i, state) in &found {
                if let Some(s) = lane_sentence(*i, state) {
                    if *state == LaneState::Damaged {
                        problems.push(s);
                    } else {
                        notes.push(s);
                    }
                }
            }
            lanes = found;
        }
    }
    Ok(CheckReport {
        primary: p_status,
        backup: b_status,
        header,
        copies_match,
        file_size: o.len,
        problems,
        lanes,
        notes,
    })
}

fn status(b: Option<&[u8; BLOCK_SIZE as usize]>, off: u64) -> CopyStatus {
    match b {
        None => CopyStatus::BadField(format!("the file ends before this copy (offset {off:#x})")),
        Some(b) => match header::decode_copy(b) {
            Ok(_) => CopyStatus::Ok,
            Err(s) => s,
        },
    }
}

fn describe(which: &str, s: &CopyStatus, problems: &mut Vec<String>) {
    match s {
        CopyStatus::Ok => {}
        CopyStatus::BadMagic => {
            problems.push(format!("the {which} header does not carry the pool magic"))
        }
        CopyStatus::BadChecksum { stored, computed } => problems.push(format!(
            "the {which} header checksum does not match (stored {stored:#010x}, computed {computed:#010x})"
        )),
        CopyStatus::BadField(r) => problems.push(format!("the {which} header is invalid: {r}")),
    }
}

/// The state block: the shutdown flag must be 0 or 1, reserved words zero.
fn check_state(o: &crate::pool::Opened, path: &Path, problems: &mut Vec<String>) -> Result<()> {
    let Some(b) = read_block(o, path, STATE_OFFSET)? else {
        problems.push("the file ends before the state block".into());
        return Ok(());
    };
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[8..16]);
    let flag = u64::from_le_bytes(w);
    if flag > 1 {
        problems.push(format!(
            "the shutdown flag holds {flag:#x} (expected 0 or 1); the next open treats it as unclean"
        ));
    }
    if b[0x20..].iter().any(|&x| x != 0) {
        problems.push("reserved bytes of the pool state block are not zero".into());
    }
    Ok(())
}

/// Rewrites a damaged header copy from the intact one (exclusive lock;
/// `fsync` before returning). Returns what was done, one sentence each
/// (empty if both copies were valid and identical). Refuses, writing
/// nothing, when neither copy is valid. When both are valid but differ, the
/// primary (the copy `open` uses) wins.
pub fn repair_header(path: &Path) -> Result<Vec<String>> {
    let o = open_file(path, true)?;
    lock(&o.file, path, true)?;
    let primary = read_block(&o, path, HEADER_OFFSET)?;
    let backup = read_block(&o, path, BACKUP_HEADER_OFFSET)?;
    let p_ok = primary
        .as_deref()
        .is_some_and(|b| header::decode_copy(b).is_ok());
    let b_ok = backup
        .as_deref()
        .is_some_and(|b| header::decode_copy(b).is_ok());
    let (src, dst_off, what) = match (&primary, &backup) {
        (Some(p), Some(b)) if p_ok && b_ok && p[..] == b[..] => return Ok(Vec::new()),
        (Some(p), _) if p_ok => (
            p,
            BACKUP_HEADER_OFFSET,
            "rewrote the backup header from the primary",
        ),
        (_, Some(b)) if b_ok => (
            b,
            HEADER_OFFSET,
            "rewrote the primary header from the backup",
        ),
        _ => return Err(unrepairable(path, primary.as_deref())),
    };
    if o.len < dst_off + BLOCK_SIZE {
        return Err(Error::TooSmall {
            path: path.into(),
            size: o.len,
            min: crate::layout::MIN_POOL_SIZE,
        });
    }
    o.file
        .write_all_at(&src[..], dst_off)
        .map_err(|e| Error::io(format!("writing the header of {}", path.display()), e))?;
    o.file
        .sync_all()
        .map_err(|e| Error::io(format!("fsync of {}", path.display()), e))?;
    Ok(vec![format!("{what} ({BLOCK_SIZE} bytes at {dst_off:#x})")])
}

/// The error for a file whose two header copies are both unusable,
/// named after what is wrong with the primary.
fn unrepairable(path: &Path, primary: Option<&[u8; BLOCK_SIZE as usize]>) -> Error {
    let Some(p) = primary else {
        return Error::TooSmall {
            path: path.into(),
            size: 0,
            min: crate::layout::MIN_POOL_SIZE,
        };
    };
    match header::decode_copy(p) {
        Err(CopyStatus::BadMagic) => Error::NotAPool {
            path: path.into(),
            hint: header::foreign_hint(&p[..]),
        },
        Err(CopyStatus::BadChecksum { stored, computed }) => Error::ChecksumMismatch {
            path: path.into(),
            which: "primary",
            stored,
            computed,
            backup_ok: false,
        },
        Err(CopyStatus::BadField(reason)) => Error::BadHeader {
            path: path.into(),
            which: "primary",
            reason: format!("{reason}; the backup is not valid either, nothing to repair from"),
        },
        _ => Error::BadHeader {
            path: path.into(),
            which: "backup",
            reason: "neither header copy is valid".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sentences_name_the_lane_and_what_the_next_open_does() {
        assert_eq!(lane_sentence(0, &LaneState::Idle), None);
        let undo = |entries, bytes| LaneState::UndoPending { entries, bytes };
        assert_eq!(
            lane_sentence(3, &undo(2, 128)).unwrap(),
            "lane 3: interrupted transaction: the next open rolls back 2 snapshots (128 bytes)"
        );
        assert!(
            lane_sentence(3, &undo(1, 8))
                .unwrap()
                .contains("rolls back 1 snapshot (8 bytes)")
        );
        assert!(
            lane_sentence(9, &undo(0, 0))
                .unwrap()
                .contains("no snapshot yet")
        );
        assert_eq!(
            lane_sentence(5, &LaneState::RedoPending { entries: 4 }).unwrap(),
            "lane 5: committed transaction whose log is still live: the next open re-applies 4 redo records (changing nothing if they were applied) and retires it"
        );
        assert!(
            lane_sentence(6, &LaneState::RedoPending { entries: 0 })
                .unwrap()
                .contains("log is still live (its retirement is made durable lazily)")
        );
        let d = lane_sentence(7, &LaneState::Damaged).unwrap();
        assert!(
            d.starts_with("lane 7 ") && d.contains("must not be trusted"),
            "{d}"
        );
    }
}
