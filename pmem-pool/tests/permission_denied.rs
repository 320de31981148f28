//! A file this user may not open gives `PermissionDenied`. Tests usually
//! run as root, which bypasses file modes, so the attempt runs in a child
//! of this test binary with uid/gid 65534 (nobody); as a non-root user the
//! attempt runs in-process.

mod common;

use common::*;
use pmem_pool::{Error, RawPool};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;

const CHILD: &str = "H3_PERM_CHILD_POOL";

/// What an open as this user gives: "denied-rw", "denied-ro", "ok", or other.
fn attempt(p: &Path, read_only: bool) -> String {
    match RawPool::open(p, Some(LAYOUT), &opts().read_only(read_only)) {
        Ok(_) => "ok".into(),
        Err(Error::PermissionDenied { write: true, .. }) => "denied-rw".into(),
        Err(Error::PermissionDenied { write: false, .. }) => "denied-ro".into(),
        Err(e) => format!("other: {e}"),
    }
}

#[test]
fn unreadable_file_is_permission_denied() {
    if let Some(p) = std::env::var_os(CHILD) {
        let p = Path::new(&p);
        let line = format!("RESULT rw={} ro={}", attempt(p, false), attempt(p, true));
        // Straight to fd 1, past libtest's output capture.
        let mut out = std::io::stdout();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
        std::process::exit(0);
    }
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = new_pool(dir.path());
    let set_mode = |m| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
    let am_root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let run = |mode: u32| -> String {
        set_mode(mode);
        if !am_root {
            return format!("RESULT rw={} ro={}", attempt(&p, false), attempt(&p, true));
        }
        let out = child("unreadable_file_is_permission_denied", CHILD, &p)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "child failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    // Mode 0600 owned by root: nobody may neither read nor write.
    let denied = run(0o600);
    assert!(
        denied.contains("RESULT rw=denied-rw ro=denied-ro"),
        "{denied}"
    );
    // Control: 0644 lets the same child read, so the denial above came
    // from the file mode, not from an unreachable path.
    let readable = run(0o644);
    if am_root {
        assert!(readable.contains("RESULT rw=denied-rw ro=ok"), "{readable}");
    }
}
