//! What `info`, `check` and `repair` print: human text and JSON.
//!
//! Rendering is kept apart from the pool calls so it can be tested on
//! hand-made headers and reports.

use crate::heap::{self, HeapView};
use crate::size::human_size;
use crate::text::rfc3339_utc;
use pmem_pool::check::{CheckReport, CopyStatus, lane_sentence};
use pmem_pool::{HeaderInfo, LaneLayout, LaneState, ModeChoice, ShutdownState};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;

/// What `pmem info` shows about an open pool.
pub struct InfoView<'a> {
    /// The pool path.
    pub path: &'a Path,
    /// Its validated header.
    pub header: &'a HeaderInfo,
    /// The mode an open would choose, and why.
    pub mode: &'a ModeChoice,
    /// How the previous user left it.
    pub shutdown: ShutdownState,
    /// The run id stored in the pool.
    pub run_id: u64,
    /// The lanes holding logs a crash left (`None`: the file is too short
    /// to hold the lanes).
    pub pending: Option<&'a [(u32, LaneState)]>,
    /// The heap, when asked for (`info --heap`).
    pub heap: Option<&'a HeapView>,
}

/// Undo and redo log capacity of each lane, in bytes.
fn log_capacities(h: &HeaderInfo) -> (usize, usize) {
    let l = LaneLayout::from_header(h);
    (l.undo(0).cap, l.redo(0, 0).cap)
}

/// One non-idle lane as JSON: `{lane, state, entries, bytes}` (`null`
/// where the state has no such count).
pub fn lane_json(lane: u32, s: &LaneState) -> Value {
    let (state, entries, bytes) = match s {
        LaneState::UndoPending { entries, bytes } => ("undo_pending", json!(entries), json!(bytes)),
        LaneState::RedoPending { entries } => ("redo_pending", json!(entries), Value::Null),
        LaneState::Damaged => ("damaged", Value::Null, Value::Null),
        LaneState::Idle => ("idle", Value::Null, Value::Null),
    };
    json!({ "lane": lane, "state": state, "entries": entries, "bytes": bytes })
}

fn lanes_json(lanes: &[(u32, LaneState)]) -> Value {
    Value::Array(lanes.iter().map(|(i, s)| lane_json(*i, s)).collect())
}

fn shutdown_name(s: ShutdownState) -> &'static str {
    match s {
        ShutdownState::Clean => "clean",
        ShutdownState::Unclean => "unclean",
    }
}

/// The header as JSON (shared by `info` and `check`).
pub fn header_json(h: &HeaderInfo) -> Value {
    json!({
        "format_version": h.version,
        "compat": h.compat,
        "incompat": h.incompat,
        "incompat_features": h.incompat_names(),
        "ro_compat": h.ro_compat,
        "layout": h.layout,
        "uuid": h.uuid_string(),
        "size": h.size,
        "created": rfc3339_utc(h.created_unix_ns),
        "created_unix_ns": h.created_unix_ns,
        "lanes": {
            "offset": h.lanes_offset,
            "count": h.lane_count,
            "size": h.lane_size,
            "undo_capacity": log_capacities(h).0,
            "redo_capacity": log_capacities(h).1,
        },
        "heap": { "offset": h.heap_offset, "size": h.heap_size },
    })
}

fn header_text(out: &mut String, h: &HeaderInfo) {
    // Writing to a String cannot fail.
    let names = h.incompat_names();
    let features = if names.is_empty() {
        String::new()
    } else {
        format!(" = {}", names.join(", "))
    };
    let _ = writeln!(
        out,
        "format:    version {} (compat {:#x}, incompat {:#x}{features}, ro_compat {:#x})",
        h.version, h.compat, h.incompat, h.ro_compat
    );
    let _ = writeln!(out, "layout:    {}", h.layout);
    let _ = writeln!(out, "uuid:      {}", h.uuid_string());
    let _ = writeln!(out, "size:      {} bytes ({})", h.size, human_size(h.size));
    let _ = writeln!(out, "created:   {}", rfc3339_utc(h.created_unix_ns));
    let (undo, redo) = log_capacities(h);
    let _ = writeln!(
        out,
        "lanes:     {} x {} bytes at {:#x} (per lane: undo log {undo} bytes, redo log {redo} bytes)",
        h.lane_count, h.lane_size, h.lanes_offset
    );
    let _ = writeln!(
        out,
        "heap:      {} bytes ({}) at {:#x}",
        h.heap_size,
        human_size(h.heap_size),
        h.heap_offset
    );
}

impl InfoView<'_> {
    /// Human-readable, one field per line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "pool:      {}", self.path.display());
        header_text(&mut out, self.header);
        let _ = writeln!(
            out,
            "mode:      {} ({})",
            self.mode.mode.name(),
            self.mode.reason
        );
        let _ = writeln!(
            out,
            "shutdown:  {} (how the previous user left the pool)",
            shutdown_name(self.shutdown)
        );
        let _ = writeln!(out, "run id:    {}", self.run_id);
        // At rest no lane is in use; what survives a process is a pending
        // log, which the next read-write open recovers.
        match self.pending {
            None => {
                let _ = writeln!(
                    out,
                    "lanes with pending logs: unknown (the file ends in the lanes)"
                );
            }
            Some([]) => {
                let _ = writeln!(out, "lanes with pending logs: none");
            }
            Some(lanes) => {
                let _ = writeln!(out, "lanes with pending logs: {}", lanes.len());
                for (i, s) in lanes {
                    if let Some(t) = lane_sentence(*i, s) {
                        let _ = writeln!(out, "  - {t}");
                    }
                }
            }
        }
        if let Some(h) = self.heap {
            heap::text(&mut out, h, true);
        }
        out
    }

    /// JSON object: the header fields plus `path`, `mode`,
    /// `previous_shutdown`, `run_id` and `pending_lanes` (an array of
    /// [`lane_json`] objects, `null` if the lanes could not be read).
    pub fn json(&self) -> Value {
        let mut v = header_json(self.header);
        if let Value::Object(m) = &mut v {
            m.insert("path".into(), json!(self.path.display().to_string()));
            m.insert(
                "mode".into(),
                json!({ "name": self.mode.mode.name(), "reason": self.mode.reason }),
            );
            m.insert(
                "previous_shutdown".into(),
                json!(shutdown_name(self.shutdown)),
            );
            m.insert("run_id".into(), json!(self.run_id));
            m.insert(
                "pending_lanes".into(),
                self.pending.map_or(Value::Null, lanes_json),
            );
            // `info --heap`: the heap object (offset, size) gains the
            // check's fields.
            if let (Some(h), Some(Value::Object(dst))) = (self.heap, m.get_mut("heap"))
                && let Value::Object(src) = heap::json(h)
            {
                dst.extend(src);
            }
        }
        v
    }
}

fn copy_text(s: &CopyStatus) -> String {
    match s {
        CopyStatus::Ok => "ok (magic and checksum valid)".into(),
        CopyStatus::BadMagic => "BAD: no pool magic".into(),
        CopyStatus::BadChecksum { stored, computed } => {
            format!("BAD: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
        }
        CopyStatus::BadField(why) => format!("BAD: {why}"),
    }
}

fn copy_json(s: &CopyStatus) -> Value {
    match s {
        CopyStatus::Ok => json!({ "status": "ok" }),
        CopyStatus::BadMagic => json!({ "status": "bad_magic" }),
        CopyStatus::BadChecksum { stored, computed } => {
            json!({ "status": "bad_checksum", "stored": stored, "computed": computed })
        }
        CopyStatus::BadField(why) => json!({ "status": "bad_field", "detail": why }),
    }
}

/// `pmem check` text: both copies, the header in force, the problems and a
/// verdict line.
pub fn check_text(path: &Path, r: &CheckReport, heap: &HeapView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pool:      {} ({} bytes on disk)",
        path.display(),
        r.file_size
    );
    let _ = writeln!(out, "primary:   {}", copy_text(&r.primary));
    let _ = writeln!(out, "backup:    {}", copy_text(&r.backup));
    let _ = writeln!(
        out,
        "copies:    {}",
        if r.copies_match {
            "identical"
        } else {
            "differ"
        }
    );
    match &r.header {
        Some(h) => header_text(&mut out, h),
        None => {
            let _ = writeln!(out, "header:    none valid");
        }
    }
    heap::text(&mut out, heap, false);
    if !r.notes.is_empty() {
        let _ = writeln!(out, "notes:");
        for n in &r.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    if r.is_consistent() {
        let _ = writeln!(out, "result:    consistent");
    } else {
        let _ = writeln!(out, "problems:");
        for p in &r.problems {
            let _ = writeln!(out, "  - {p}");
        }
        let n = r.problems.len();
        let _ = writeln!(
            out,
            "result:    INCONSISTENT ({n} problem{})",
            if n == 1 { "" } else { "s" }
        );
    }
    out
}

/// `pmem check --json`: the header copies, `problems` (heap problems
/// included, prefixed `heap: `), `lanes` (the non-idle lanes as
/// [`lane_json`] objects), `heap` ([`heap::json`]), `notes` and
/// `consistent`.
pub fn check_json(path: &Path, r: &CheckReport, heap: &HeapView) -> Value {
    json!({
        "path": path.display().to_string(),
        "file_size": r.file_size,
        "primary": copy_json(&r.primary),
        "backup": copy_json(&r.backup),
        "copies_match": r.copies_match,
        "header": r.header.as_ref().map(header_json),
        "problems": r.problems,
        "lanes": lanes_json(&r.lanes),
        "heap": heap::json(heap),
        "notes": r.notes,
        "consistent": r.is_consistent(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmem_pool::Mode;

    fn header() -> HeaderInfo {
        HeaderInfo {
            version: 1,
            compat: 0,
            incompat: 0,
            ro_compat: 0,
            layout: "kv-v1".into(),
            uuid: core::array::from_fn(|i| i as u8),
            size: 8 << 20,
            created_unix_ns: 1_735_689_600_000_000_000,
            lanes_offset: 0x3000,
            lane_count: 256,
            lane_size: 4096,
            heap_offset: 0x103000,
            heap_size: (8 << 20) - 0x103000,
        }
    }

    #[test]
    fn info_json_has_the_documented_fields() {
        let h = header();
        let mode = ModeChoice {
            mode: Mode::Msync,
            reason: "MAP_SYNC refused (not on DAX)".into(),
        };
        let v = InfoView {
            path: Path::new("/p/a.pool"),
            header: &h,
            mode: &mode,
            shutdown: ShutdownState::Unclean,
            run_id: 7,
            heap: None,
            pending: Some(&[(
                3,
                LaneState::UndoPending {
                    entries: 2,
                    bytes: 128,
                },
            )]),
        }
        .json();
        assert_eq!(v["path"], "/p/a.pool");
        assert_eq!(v["format_version"], 1);
        assert_eq!(v["layout"], "kv-v1");
        assert_eq!(v["uuid"], "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert_eq!(v["size"], 8 << 20);
        assert_eq!(v["created"], "2025-01-01T00:00:00Z");
        assert_eq!(v["lanes"]["count"], 256);
        assert_eq!(v["heap"]["offset"], 0x103000);
        assert_eq!(v["mode"]["name"], "msync");
        assert_eq!(v["mode"]["reason"], "MAP_SYNC refused (not on DAX)");
        assert_eq!(v["previous_shutdown"], "unclean");
        assert_eq!(v["run_id"], 7);
        assert_eq!(v["lanes"]["undo_capacity"], 4096 - 64 - 1024);
        assert_eq!(v["lanes"]["redo_capacity"], 512);
        assert_eq!(v["pending_lanes"][0]["lane"], 3);
        assert_eq!(v["pending_lanes"][0]["state"], "undo_pending");
        assert_eq!(v["pending_lanes"][0]["entries"], 2);
        assert_eq!(v["pending_lanes"][0]["bytes"], 128);
    }

    #[test]
    fn info_text_names_mode_reason_and_shutdown() {
        let h = header();
        let mode = ModeChoice {
            mode: Mode::Pmem,
            reason: "MAP_SYNC mapping succeeded".into(),
        };
        let t = InfoView {
            path: Path::new("a.pool"),
            header: &h,
            mode: &mode,
            shutdown: ShutdownState::Clean,
            run_id: 1,
            heap: None,
            pending: Some(&[]),
        }
        .text();
        assert!(
            t.contains("mode:      pmem (MAP_SYNC mapping succeeded)"),
            "{t}"
        );
        assert!(t.contains("shutdown:  clean"), "{t}");
        assert!(t.contains("8388608 bytes (8 MiB)"), "{t}");
        assert!(t.contains("created:   2025-01-01T00:00:00Z"), "{t}");
        assert!(
            t.contains(
                "256 x 4096 bytes at 0x3000 (per lane: undo log 3008 bytes, redo log 512 bytes)"
            ),
            "{t}"
        );
        assert!(t.contains("lanes with pending logs: none"), "{t}");
    }

    #[test]
    fn check_json_of_a_damaged_primary() {
        let r = CheckReport {
            primary: CopyStatus::BadChecksum {
                stored: 0xdead_beef,
                computed: 0x1234_5678,
            },
            backup: CopyStatus::Ok,
            header: Some(header()),
            copies_match: false,
            file_size: 8 << 20,
            problems: vec!["primary header checksum mismatch".into()],
            lanes: vec![
                (5, LaneState::RedoPending { entries: 4 }),
                (6, LaneState::Damaged),
            ],
            notes: vec!["lane 5: pending".into()],
        };
        let v = check_json(Path::new("a.pool"), &r, &HeapView::NotFormatted);
        assert_eq!(v["consistent"], false);
        assert_eq!(v["primary"]["status"], "bad_checksum");
        assert_eq!(v["primary"]["stored"], 0xdead_beefu32);
        assert_eq!(v["backup"]["status"], "ok");
        assert_eq!(v["copies_match"], false);
        assert_eq!(v["header"]["layout"], "kv-v1");
        assert_eq!(v["problems"][0], "primary header checksum mismatch");
        assert_eq!(v["lanes"][0]["state"], "redo_pending");
        assert_eq!(v["lanes"][0]["entries"], 4);
        assert!(v["lanes"][0]["bytes"].is_null());
        assert_eq!(v["lanes"][1]["lane"], 6);
        assert_eq!(v["lanes"][1]["state"], "damaged");
        assert_eq!(v["notes"][0], "lane 5: pending");
        let t = check_text(Path::new("a.pool"), &r, &HeapView::NotFormatted);
        assert!(t.contains("stored 0xdeadbeef, computed 0x12345678"), "{t}");
        assert!(t.contains("INCONSISTENT (1 problem)"), "{t}");
        assert!(t.contains("notes:\n  - lane 5: pending\n"), "{t}");
    }

    #[test]
    fn check_json_with_no_valid_header() {
        let none = HeapView::NotChecked("no valid header locates it".into());
        let r = CheckReport {
            primary: CopyStatus::BadMagic,
            backup: CopyStatus::BadField("size 0 is below the minimum".into()),
            header: None,
            copies_match: false,
            file_size: 100,
            problems: vec!["a".into(), "b".into()],
            lanes: Vec::new(),
            notes: Vec::new(),
        };
        let v = check_json(Path::new("x"), &r, &none);
        assert!(v["header"].is_null());
        assert_eq!(v["backup"]["status"], "bad_field");
        assert_eq!(v["backup"]["detail"], "size 0 is below the minimum");
        assert_eq!(v["problems"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["lanes"].as_array().map(Vec::len), Some(0));
        assert!(check_text(Path::new("x"), &r, &none).contains("header:    none valid"));
    }
}
