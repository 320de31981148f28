//! Lanes in `pmem check` / `pmem info`: a crash mid-transaction leaves an
//! undo log that `check` reports as a note (exit 0) and `info` lists as
//! pending, until the next read-write open rolls it back; a committed but
//! unapplied redo log likewise; a log entry aiming into the header is
//! damage (`check` exit 1, open refused).
//!
//! The crashes are built by hand with the pool layer: append entries to a
//! lane's log with `LogWriter`, drain, change the target bytes, and close
//! without bumping the lane's generation (what a process killed before its
//! commit point leaves).

mod common;

use common::{pmem, serial, text};
use pmem_obj::pool::lane::LaneLayout;
use pmem_obj::pool::ulog::{EntryKind, LogWriter};
use pmem_obj::pool::{LaneState, PoolOptions, RawPool};
use pmem_obj::{Error, Pool};
use std::path::Path;

const LAYOUT: &str = "cli-lanes-v1";
const OLD: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// A pool whose root is `OLD`, closed cleanly. Returns the root's offset.
fn pool_with_root(path: &Path) -> u64 {
    let pool = Pool::create(path, LAYOUT, 8 << 20).unwrap();
    let root = pool.root::<[u64; 8]>().unwrap();
    pool.transaction(|tx| tx.write(root, OLD)).unwrap();
    let off = root.offset();
    pool.close().unwrap();
    off
}

/// Opens the pool with the pool layer only (no recovery) and returns it
/// with its lane layout and the current generation of `lane`.
fn raw_open(path: &Path, lane: u32) -> (RawPool, LaneLayout, u64) {
    let raw = RawPool::open(path, Some(LAYOUT), &PoolOptions::new()).unwrap();
    let layout = LaneLayout::from_header(raw.header());
    assert!(lane < layout.count);
    let off = layout.generation_off(lane);
    assert!(off + 8 <= raw.size() as usize);
    // SAFETY: the generation word is 8-aligned inside the live mapping and
    // nothing else uses this pool.
    let generation = unsafe { (raw.base().add(off) as *const u64).read_volatile() };
    (raw, layout, u64::from_le(generation))
}

/// The root's 8 words as stored in the file.
fn stored_root(raw: &RawPool, off: u64) -> [u64; 8] {
    let mut v = [0u64; 8];
    // SAFETY: `off` is the root object's offset, 64 bytes inside the heap
    // of this live mapping; nothing writes it meanwhile.
    unsafe {
        std::ptr::copy_nonoverlapping(
            raw.base().add(off as usize) as *const u64,
            v.as_mut_ptr(),
            8,
        )
    };
    v
}

/// Leaves lane 0 as a crash before the commit point does: an undo
/// snapshot of the root, durable, then the root overwritten.
fn crash_mid_transaction(path: &Path, root: u64) {
    let (raw, layout, generation) = raw_open(path, 0);
    let p = raw.persister();
    let old: Vec<u8> = OLD.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut w = LogWriter::new(layout.undo(0), pmem_pool::lane::log_key(0, generation));
    // SAFETY: lane 0's undo log is ours alone (no transaction runs on a
    // raw pool) and `old` is a private buffer.
    unsafe { w.append(p, EntryKind::Snapshot, root, &old) }.unwrap();
    p.drain().unwrap();
    // SAFETY: the root lies in the heap, inside the mapping; nothing else
    // references it.
    unsafe { p.memcpy_persist(root as usize, &[0xee; 64]) }.unwrap();
    assert_eq!(stored_root(&raw, root), [0xeeee_eeee_eeee_eeee; 8]);
    raw.close().unwrap();
}

#[test]
fn interrupted_transaction_is_a_note_until_open_rolls_it_back() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("undo.pool");
    let p = path.to_str().unwrap();
    let root = pool_with_root(&path);
    crash_mid_transaction(&path, root);

    let out = pmem(&["check", p]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(
            "lane 0: interrupted transaction: the next open rolls back 1 snapshot (64 bytes)"
        ),
        "{t}"
    );
    assert!(t.contains("result:    consistent"), "{t}");

    let out = pmem(&["check", p, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["consistent"], true);
    assert_eq!(v["lanes"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["lanes"][0]["lane"], 0);
    assert_eq!(v["lanes"][0]["state"], "undo_pending");
    assert_eq!(v["lanes"][0]["entries"], 1);
    assert_eq!(v["lanes"][0]["bytes"], 64);

    let out = pmem(&["info", p]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        t.contains("lanes with pending logs: 1\n  - lane 0: interrupted"),
        "{t}"
    );
    let out = pmem(&["info", p, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pending_lanes"][0]["lane"], 0, "{v}");
    assert_eq!(v["pending_lanes"][0]["state"], "undo_pending");

    // A read-write open rolls the transaction back before returning.
    let pool = Pool::open(&path, LAYOUT).unwrap();
    let recovered = pool.recovered();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].lane, 0);
    assert_eq!(
        recovered[0].was,
        LaneState::UndoPending {
            entries: 1,
            bytes: 64
        }
    );
    assert_eq!(pool.read(pool.root::<[u64; 8]>().unwrap()).unwrap(), OLD);
    pool.close().unwrap();

    let out = pmem(&["check", p]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains("lane 0:") && !t.contains("notes:"), "{t}");
    let out = pmem(&["check", p, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lanes"].as_array().map(Vec::len), Some(0), "{v}");
    let t = text(&pmem(&["info", p]).stdout);
    assert!(t.contains("lanes with pending logs: none"), "{t}");
}

#[test]
fn committed_redo_log_is_a_note_until_open_applies_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("redo.pool");
    let p = path.to_str().unwrap();
    let root = pool_with_root(&path);

    let (raw, layout, generation) = raw_open(&path, 0);
    let per = raw.persister();
    let mut w = LogWriter::new(
        layout.redo(0, generation),
        pmem_pool::lane::log_key(0, generation),
    );
    // SAFETY: lane 0's redo log is ours alone; the payloads are private.
    unsafe {
        w.append(per, EntryKind::Set64, root, &42u64.to_le_bytes())
            .unwrap();
        w.append(per, EntryKind::Or64, root + 8, &0x100u64.to_le_bytes())
            .unwrap();
        w.append_commit(per).unwrap();
    }
    per.drain().unwrap();
    raw.close().unwrap();

    let out = pmem(&["check", p]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(
            "lane 0: committed transaction whose log is still live: the next open re-applies 2 redo records (changing nothing if they were applied) and retires it"
        ),
        "{t}"
    );

    let pool = Pool::open(&path, LAYOUT).unwrap();
    assert_eq!(pool.recovered().len(), 1);
    assert_eq!(
        pool.recovered()[0].was,
        LaneState::RedoPending { entries: 2 }
    );
    let v = pool.read(pool.root::<[u64; 8]>().unwrap()).unwrap();
    assert_eq!(v[..3], [42, 0x102, 3]);
    pool.close().unwrap();
    let t = text(&pmem(&["check", p]).stdout);
    assert!(!t.contains("notes:"), "{t}");
}

#[test]
fn log_entry_aiming_into_the_header_is_damage() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.pool");
    let p = path.to_str().unwrap();
    let root = pool_with_root(&path);

    // The last lane, so the report must name the right one.
    let lane = LaneLayout::from_header(
        &pmem_obj::pool::check::check_file(&path)
            .unwrap()
            .header
            .unwrap(),
    )
    .count
        - 1;
    let (raw, layout, generation) = raw_open(&path, lane);
    let mut w = LogWriter::new(
        layout.undo(lane),
        pmem_pool::lane::log_key(lane, generation),
    );
    // A checksum-valid entry that would overwrite the header at 0x100.
    // SAFETY: the lane's undo log is ours alone; the payload is private.
    unsafe { w.append(raw.persister(), EntryKind::Snapshot, 0x100, &[0u8; 16]) }.unwrap();
    raw.persister().drain().unwrap();
    raw.close().unwrap();

    let out = pmem(&["check", p]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("lane {lane} holds")), "{t}");
    assert!(t.contains("must not be trusted"), "{t}");
    let out = pmem(&["check", p, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["consistent"], false);
    assert_eq!(v["lanes"][0]["lane"], lane);
    assert_eq!(v["lanes"][0]["state"], "damaged");

    let e = Pool::open(&path, LAYOUT).unwrap_err();
    assert!(
        matches!(e, Error::Pool(pmem_obj::pool::Error::LaneDamaged { lane: l }) if l == lane),
        "{e:?}"
    );
    assert!(
        e.to_string().contains(&format!(
            "lane {lane} holds a log entry that points outside the heap"
        )),
        "{e}"
    );
    // The refused open applied nothing: the root is untouched and the
    // damage is still there to be reported.
    let raw = RawPool::open(&path, Some(LAYOUT), &PoolOptions::new().read_only(true)).unwrap();
    assert_eq!(stored_root(&raw, root), OLD);
    raw.close().unwrap();
    assert_eq!(pmem(&["check", p]).status.code(), Some(1));
}
