//! `pmem check` and `pmem repair` on damaged and missing files.

mod common;

use common::{pmem, text};
use std::path::Path;

const LAYOUT: &str = "cli-corruption-layout-v1";

/// Creates a pool and flips one byte of the layout name in the primary
/// header (the first 4 KiB), which the header checksum covers.
fn corrupted_pool(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("bad.pool");
    let out = pmem(&[
        "create",
        p.to_str().unwrap(),
        "--layout",
        LAYOUT,
        "--size",
        "8M",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut bytes = std::fs::read(&p).unwrap();
    let at = bytes[..4096]
        .windows(LAYOUT.len())
        .position(|w| w == LAYOUT.as_bytes())
        .expect("layout name in the primary header");
    bytes[at] ^= 0x20;
    std::fs::write(&p, &bytes).unwrap();
    p
}

#[test]
fn check_of_a_corrupted_primary_exits_1_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = corrupted_pool(dir.path());

    let out = pmem(&["check", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let t = text(&out.stdout);
    assert!(t.contains("primary:   BAD: checksum mismatch"), "{t}");
    assert!(t.contains("backup:    ok"), "{t}");
    assert!(t.contains("INCONSISTENT"), "{t}");
    assert!(t.to_lowercase().contains("primary"), "{t}");

    let out = pmem(&["check", p.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["consistent"], false);
    assert_eq!(v["primary"]["status"], "bad_checksum");
    assert_eq!(v["backup"]["status"], "ok");
    assert_eq!(v["copies_match"], false);
    // The backup is in force, so the header shows the undamaged layout.
    assert_eq!(v["header"]["layout"], LAYOUT);
    let problems = v["problems"].as_array().unwrap();
    assert!(!problems.is_empty());
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap_or("").to_lowercase().contains("primary")),
        "{problems:?}"
    );
}

#[test]
fn check_of_a_missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.pool");
    for cmd in ["check", "info", "repair"] {
        let out = pmem(&[cmd, p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", text(&out.stderr));
        let e = text(&out.stderr);
        assert!(e.starts_with("pmem: "), "{cmd}: {e}");
        assert!(e.contains("nope.pool"), "{cmd}: {e}");
        assert!(!e.contains("panicked"), "{cmd}: {e}");
    }
}

#[test]
fn repair_restores_a_corrupted_primary() {
    let dir = tempfile::tempdir().unwrap();
    let p = corrupted_pool(dir.path());

    let out = pmem(&["repair", p.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {} stderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("consistent after repair"));

    let out = pmem(&["check", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    let out = pmem(&["info", p.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["layout"], LAYOUT);

    // A second repair has nothing to do.
    let out = pmem(&["repair", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("nothing to do"));
}

#[test]
fn repair_of_a_file_that_is_not_a_pool_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.pool");
    std::fs::write(&p, vec![0xa5u8; 4 << 20]).unwrap();
    let out = pmem(&["check", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = pmem(&["repair", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("pmem: "));
}
