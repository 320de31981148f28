//! Every program of `pmem-bench`, run small in `counts` mode (Sim): it
//! must pass its own result check (exit 0), print the C programs' result
//! lines, and cost the fences per operation that FORMAT.md states.

use std::collections::HashMap;
use std::process::Command;

/// Runs `pmem-bench counts ARGS` on a fresh pool; returns, per workload,
/// the key=value pairs of its result and counts lines.
fn counts(args: &[&str]) -> HashMap<String, HashMap<String, String>> {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("b.pool");
    let mut full = vec!["counts", args[0], pool.to_str().unwrap()];
    full.extend_from_slice(&args[1..]);
    let out = Command::new(env!("CARGO_BIN_EXE_pmem-bench"))
        .args(&full)
        .env_remove("PMEM_MODE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{full:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows: HashMap<String, HashMap<String, String>> = HashMap::new();
    for line in stdout.lines() {
        let kv: HashMap<String, String> = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let prefix = if line.starts_with("counts ") {
            "counts:"
        } else {
            ""
        };
        rows.insert(format!("{prefix}{}", kv["workload"]), kv);
    }
    rows
}

fn fences(rows: &HashMap<String, HashMap<String, String>>, w: &str) -> f64 {
    rows[&format!("counts:{w}")]["fences_per_op"]
        .parse()
        .unwrap()
}

#[test]
fn tx_update_two_fences_per_transaction() {
    let r = counts(&["tx_update", "2", "300"]);
    assert_eq!(r["tx_update_64"]["ops"], "600");
    assert_eq!(r["tx_update_64"]["threads"], "2");
    // Snapshot, then data with the commit record (`get_mut`, as the C
    // program's `pmemobj_tx_add_range`).
    assert_eq!(fences(&r, "tx_update_64"), 2.0);
}

#[test]
fn tx_alloc_free_one_fence_and_nothing_left() {
    let r = counts(&["tx_alloc_free", "500"]);
    // The slot is written with `tx.write`, which goes to the redo log:
    // the commit record's fence; the redo apply is flushed and fenced by
    // the next transaction's drain (the lane waits parked).
    assert_eq!(fences(&r, "tx_alloc_64"), 1.0);
    assert_eq!(fences(&r, "tx_free_64"), 1.0);
}

#[test]
fn atomic_alloc_free_one_fence() {
    let r = counts(&["atomic_alloc_free", "64", "500"]);
    assert!(r.contains_key("atomic_alloc_64") && r.contains_key("atomic_free_64"));
    assert_eq!(fences(&r, "atomic_free_64"), 1.0);
    // Creating a run costs 2 more fences, once per run of blocks.
    assert!((1.0..1.1).contains(&fences(&r, "atomic_alloc_64")));
}

#[test]
fn hashmap_finds_every_key_and_lookups_cost_no_fence() {
    let r = counts(&["hashmap", "2000"]);
    assert_eq!(r["hashmap_lookup"]["found"], "2000");
    // Sum of 0..2000: every key holds its own index.
    assert_eq!(r["hashmap_lookup"]["chk"], "1999000");
    assert_eq!(fences(&r, "hashmap_insert"), 1.0);
    assert_eq!(fences(&r, "hashmap_lookup"), 0.0);
}

#[test]
fn large_write_one_fence_per_chunk_both_ways() {
    for mode in ["nt", "memcpy"] {
        let r = counts(&["large_write", mode, "4", "1", "32"]);
        let w = if mode == "nt" {
            "large_write_memcpy_persist"
        } else {
            "large_write_memcpy+persist"
        };
        assert_eq!(r[w]["ops"], "4");
        assert_eq!(r[w]["MiB"], "4");
        assert_eq!(fences(&r, w), 1.0);
    }
}

#[test]
fn tx_paths_write_saves_the_snapshot_fence() {
    // Two threads, three rounds of 100 transactions per variant and
    // thread; the first round is warm-up. The run checks every slot.
    let r = counts(&["tx_paths", "2", "3", "100"]);
    for v in ["get_mut", "write", "get_mut_hot", "empty"] {
        assert_eq!(r[&format!("tx_paths_{v}")]["ops"], "400", "{v}");
    }
    // Snapshot, then commit; the redo log's commit record is the only
    // fence of a `tx.write`. With two threads, now and then a tidy of
    // lanes the other thread left idle adds one.
    assert!((2.0..2.03).contains(&fences(&r, "tx_paths_get_mut")));
    assert!((1.0..1.03).contains(&fences(&r, "tx_paths_write")));
    assert!((2.0..2.03).contains(&fences(&r, "tx_paths_get_mut_hot")));
    assert_eq!(fences(&r, "tx_paths_empty"), 0.0);
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["nope"][..],
        &["tx_update", "/nonexistent/p", "0", "10"][..],
        &["tx_paths", "/nonexistent/p", "1", "1"][..],
    ] {
        let st = Command::new(env!("CARGO_BIN_EXE_pmem-bench"))
            .args(args)
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(2), "{args:?}");
    }
}
