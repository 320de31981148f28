//! `pmem create` then `info` (text and JSON) and `check` on a fresh pool.

mod common;

use common::{pmem, text};
use std::path::Path;

fn create(path: &Path, layout: &str) {
    let out = pmem(&[
        "create",
        path.to_str().unwrap(),
        "--layout",
        layout,
        "--size",
        "8MiB",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(path.exists());
}

#[test]
fn create_then_info_text_shows_header_mode_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pool");
    create(&p, "cli-info-v1");
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 8 << 20);

    let out = pmem(&["info", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("layout:    cli-info-v1"), "{t}");
    assert!(t.contains("incompat 0x1 = gen_copy, ro_compat 0x0"), "{t}");
    assert!(t.contains("size:      8388608 bytes (8 MiB)"), "{t}");
    assert!(t.contains("mode:      "), "{t}");
    assert!(t.contains("shutdown:  clean"), "{t}");
    assert!(t.contains("run id:    "), "{t}");
}

#[test]
fn info_json_fields() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("j.pool");
    create(&p, "cli-json-v1");

    let out = pmem(&["info", p.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info --json is JSON");
    assert_eq!(v["layout"], "cli-json-v1");
    assert_eq!(v["size"], 8u64 << 20);
    assert!(v["format_version"].as_u64().is_some_and(|n| n >= 1), "{v}");
    // A new pool keeps its lanes' generation copies (FORMAT.md, feature
    // flags), named beside the raw bits.
    assert_eq!(v["incompat"], 1, "{v}");
    assert_eq!(
        v["incompat_features"],
        serde_json::json!(["gen_copy"]),
        "{v}"
    );

    let uuid = v["uuid"].as_str().expect("uuid string");
    let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
    assert!(uuid.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    assert_ne!(uuid, "00000000-0000-0000-0000-000000000000");

    let created = v["created"].as_str().expect("created string");
    assert!(created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T');
    let year: u32 = created[..4].parse().expect("year");
    assert!(year >= 2024, "{created}");

    assert!(v["lanes"]["count"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(v["heap"]["size"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(v["heap"]["offset"].as_u64().unwrap() + v["heap"]["size"].as_u64().unwrap() <= 8 << 20);
    let mode = v["mode"]["name"].as_str().expect("mode name");
    assert!(["pmem", "eadr", "msync"].contains(&mode), "{mode}");
    assert!(!v["mode"]["reason"].as_str().unwrap_or("").is_empty());
    assert_eq!(v["previous_shutdown"], "clean");
    assert!(v["run_id"].as_u64().is_some(), "{v}");
}

#[test]
fn check_of_a_fresh_pool_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.pool");
    create(&p, "cli-check-v1");

    let out = pmem(&["check", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stdout: {}", text(&out.stdout));
    let t = text(&out.stdout);
    assert!(t.contains("primary:   ok"), "{t}");
    assert!(t.contains("backup:    ok"), "{t}");
    assert!(t.contains("result:    consistent"), "{t}");

    let out = pmem(&["check", p.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["consistent"], true);
    assert_eq!(v["primary"]["status"], "ok");
    assert_eq!(v["backup"]["status"], "ok");
    assert_eq!(v["copies_match"], true);
    assert_eq!(v["header"]["layout"], "cli-check-v1");
    assert_eq!(v["problems"].as_array().map(Vec::len), Some(0));
}

#[test]
fn create_over_an_existing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("e.pool");
    std::fs::write(&p, b"precious").unwrap();
    let out = pmem(&[
        "create",
        p.to_str().unwrap(),
        "--layout",
        "x",
        "--size",
        "8M",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("pmem: "),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&p).unwrap(), b"precious");
}
