//! The `pmem` command-line tool: create, inspect, check and repair pools.
//!
//! Exit codes (like fsck):
//! - 0: success (`check`: consistent; `repair`: repaired or nothing to do);
//! - 1: the command ran and the pool is bad or the operation was refused
//!   (`check`: inconsistent; `repair`: could not repair; `create`: file
//!   exists; `info`: not a pool, damaged, locked...);
//! - 2: the command could not run: bad arguments (size, layout, mode),
//!   missing or unreadable file, bad environment. No file is created.
//!
//! Errors go to stderr as `pmem: <message>`.
#![deny(unsafe_code)]

mod heap;
#[allow(unsafe_code)]
mod image;
mod report;
mod size;
mod text;

use clap::{Parser, Subcommand, ValueEnum};
use pmem_pool::{
    Error, HeaderInfo, LAYOUT_MAX, LaneState, MIN_POOL_SIZE, Mode, PoolOptions, RawPool, check,
};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Success.
const EXIT_OK: u8 = 0;
/// The command ran; the pool is bad or the operation was refused.
const EXIT_FAILED: u8 = 1;
/// The command could not run (usage, missing file, environment).
const EXIT_CANNOT_RUN: u8 = 2;

const EXIT_HELP: &str = "\
Exit status: 0 success (check: consistent; repair: repaired or nothing to do),
1 the pool is bad or the operation was refused (check: inconsistent; repair:
could not repair), 2 the command could not run (bad arguments, missing or
unreadable file). Mode forcing: --mode, else PMEM_MODE=pmem|eadr|msync, else
PMEM_IS_PMEM_FORCE=1|0, else detected from the mapping.";

#[derive(Parser, Debug)]
#[command(
    name = "pmem",
    version,
    about = "Create, inspect, check and repair pmem-obj pools",
    after_help = EXIT_HELP
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a new pool file.
    Create {
        /// Path of the pool file to create (must not exist).
        file: PathBuf,
        /// Layout name stored in the pool (at most 1024 bytes, no NUL).
        #[arg(long)]
        layout: String,
        /// Pool size: bytes, or with K/M/G/T or KiB/MiB/GiB/TiB (powers of 1024).
        #[arg(long, value_parser = size::parse_size)]
        size: u64,
        /// Force a persistence mode instead of detecting it.
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
    },
    /// Show a pool's header and lane geometry, the persistence mode an open
    /// would choose and why, how it was last shut down, and the lanes
    /// holding logs a crash left (opens it read-only).
    Info {
        /// The pool file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also show the heap: objects per type number, used and free
        /// bytes, per-size-class usage and fragmentation (read-only).
        #[arg(long)]
        heap: bool,
    },
    /// Check a pool's header, backup header, lanes and heap without
    /// opening it as a pool (exit 0 consistent, 1 inconsistent, 2 could not
    /// run). Interrupted transactions are notes, not problems: the next
    /// read-write open recovers them (and may change the heap).
    Check {
        /// The pool file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Repair a damaged header from its intact copy (exit 0 repaired or
    /// nothing to do, 1 could not repair, 2 could not run).
    Repair {
        /// The pool file.
        file: PathBuf,
    },
}

/// Modes a user may force.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    /// CPU cache flushes (clwb) and fences: real persistent memory.
    Pmem,
    /// Fences only: persistence domain includes the CPU caches.
    Eadr,
    /// msync of dirty pages: any file.
    Msync,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Pmem => Mode::Pmem,
            ModeArg::Eadr => Mode::Eadr,
            ModeArg::Msync => Mode::Msync,
        }
    }
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// Exit code of a pool error from `create`/`info`/`repair`: 2 when the
/// command could not run at all, 1 when the pool refused it.
fn code_of(e: &Error) -> u8 {
    match e {
        Error::NotFound { .. }
        | Error::PermissionDenied { .. }
        | Error::InvalidLayout { .. }
        | Error::InvalidSize { .. }
        | Error::ModeUnavailable { .. }
        | Error::BadEnv { .. }
        | Error::Io { .. } => EXIT_CANNOT_RUN,
        _ => EXIT_FAILED,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::new(code_of(&e), e.to_string())
    }
}

/// Checks `create`'s arguments before touching the file system, so a bad
/// argument never leaves a file behind.
fn validate_create(layout: &str, size: u64) -> Result<(), Error> {
    if layout.len() > LAYOUT_MAX {
        return Err(Error::InvalidLayout {
            reason: format!(
                "it is {} bytes long, the limit is {LAYOUT_MAX}",
                layout.len()
            ),
        });
    }
    if layout.contains('\0') {
        return Err(Error::InvalidLayout {
            reason: "it contains a NUL byte".into(),
        });
    }
    if size < MIN_POOL_SIZE {
        return Err(Error::InvalidSize {
            size,
            reason: format!(
                "the smallest pool is {MIN_POOL_SIZE} bytes ({})",
                size::human_size(MIN_POOL_SIZE)
            ),
        });
    }
    Ok(())
}

fn print(s: &str) {
    // A closed stdout (e.g. `pmem info x | head -1`) is not worth a panic.
    let _ = std::io::stdout().write_all(s.as_bytes());
}

fn print_json(v: &serde_json::Value) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| Failure::new(EXIT_FAILED, format!("cannot encode JSON: {e}")))?;
    print(&s);
    print("\n");
    Ok(())
}

fn create(file: &Path, layout: &str, size: u64, mode: Option<ModeArg>) -> Result<u8, Failure> {
    validate_create(layout, size).map_err(|e| Failure::new(EXIT_CANNOT_RUN, e.to_string()))?;
    let mut opts = PoolOptions::new();
    if let Some(m) = mode {
        opts = opts.mode(m.into());
    }
    let pool = RawPool::create(file, layout, size, &opts)?;
    let msg = format!(
        "created {} ({} bytes, layout '{}'), mode {} ({})\n",
        file.display(),
        pool.size(),
        layout,
        pool.mode_choice().mode.name(),
        pool.mode_choice().reason
    );
    pool.close()?;
    print(&msg);
    Ok(EXIT_OK)
}

/// The heap of the pool at `file` whose validated header is `h`, the file
/// being `file_size` bytes long.
fn heap_view(
    file: &Path,
    h: &HeaderInfo,
    file_size: u64,
    lanes: &[(u32, LaneState)],
) -> Result<heap::HeapView, Failure> {
    if file_size < h.size {
        return Ok(heap::HeapView::NotChecked(format!(
            "the file is {file_size} bytes, shorter than the pool's {}",
            h.size
        )));
    }
    let img = image::PoolImage::open(file, h.size).map_err(|m| Failure::new(EXIT_CANNOT_RUN, m))?;
    Ok(heap::inspect(img.bytes(), h, heap::has_pending(lanes)))
}

fn info(file: &Path, as_json: bool, with_heap: bool) -> Result<u8, Failure> {
    let pool = RawPool::open(file, None, &PoolOptions::new().read_only(true))?;
    let pending = check::pending_lanes(file, pool.header())?;
    let heap = if with_heap {
        Some(heap_view(
            file,
            pool.header(),
            pool.size(),
            pending.as_deref().unwrap_or(&[]),
        )?)
    } else {
        None
    };
    let view = report::InfoView {
        path: file,
        header: pool.header(),
        mode: pool.mode_choice(),
        shutdown: pool.previous_shutdown(),
        run_id: pool.run_id(),
        pending: pending.as_deref(),
        heap: heap.as_ref(),
    };
    if as_json {
        print_json(&view.json())?;
    } else {
        print(&view.text());
    }
    pool.close()?;
    Ok(EXIT_OK)
}

fn run_check(file: &Path) -> Result<check::CheckReport, Failure> {
    check::check_file(file).map_err(|e| Failure::new(EXIT_CANNOT_RUN, e.to_string()))
}

fn check_cmd(file: &Path, as_json: bool) -> Result<u8, Failure> {
    let mut r = run_check(file)?;
    let heap = match &r.header {
        Some(h) => heap_view(file, h, r.file_size, &r.lanes)?,
        None => heap::HeapView::NotChecked("no valid header locates it".into()),
    };
    r.problems.extend(heap::problems(&heap));
    if as_json {
        print_json(&report::check_json(file, &r, &heap))?;
    } else {
        print(&report::check_text(file, &r, &heap));
    }
    Ok(if r.is_consistent() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

fn repair(file: &Path) -> Result<u8, Failure> {
    let before = run_check(file)?;
    if before.is_consistent() {
        print(&format!("{}: consistent, nothing to do\n", file.display()));
        return Ok(EXIT_OK);
    }
    let actions = check::repair_header(file).map_err(|e| {
        let code = match e {
            Error::NotFound { .. } | Error::PermissionDenied { .. } | Error::Locked { .. } => {
                EXIT_CANNOT_RUN
            }
            _ => EXIT_FAILED,
        };
        Failure::new(code, format!("cannot repair: {e}"))
    })?;
    for a in &actions {
        print(&format!("repaired: {a}\n"));
    }
    let after = run_check(file)?;
    if after.is_consistent() {
        print(&format!("{}: consistent after repair\n", file.display()));
        Ok(EXIT_OK)
    } else {
        let mut msg = String::from("problems left after repair:\n");
        for p in &after.problems {
            msg.push_str(&format!("  - {p}\n"));
        }
        print(&msg);
        Ok(EXIT_FAILED)
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.cmd {
        Cmd::Create {
            file,
            layout,
            size,
            mode,
        } => create(&file, &layout, size, mode),
        Cmd::Info { file, json, heap } => info(&file, json, heap),
        Cmd::Check { file, json } => check_cmd(&file, json),
        Cmd::Repair { file } => repair(&file),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::from(EXIT_OK);
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(EXIT_CANNOT_RUN);
            }
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("pmem: {text}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("pmem: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pmem").chain(args.iter().copied()))
    }

    #[test]
    fn create_parses_sizes_and_modes() {
        let c = parse(&["create", "a.pool", "--layout", "kv", "--size", "8MiB"]).unwrap();
        match c.cmd {
            Cmd::Create {
                size, mode, layout, ..
            } => {
                assert_eq!(size, 8 << 20);
                assert!(mode.is_none());
                assert_eq!(layout, "kv");
            }
            other => panic!("{other:?}"),
        }
        let c = parse(&[
            "create", "a", "--layout", "x", "--size", "1G", "--mode", "msync",
        ])
        .unwrap();
        assert!(matches!(
            c.cmd,
            Cmd::Create {
                size: 0x4000_0000,
                mode: Some(ModeArg::Msync),
                ..
            }
        ));
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let e = parse(&["create", "a", "--layout", "x", "--size", "12X"]).unwrap_err();
        assert!(e.to_string().contains("suffix"), "{e}");
        assert!(
            parse(&[
                "create", "a", "--layout", "x", "--size", "1M", "--mode", "sim"
            ])
            .is_err()
        );
        assert!(parse(&["create", "a", "--size", "8M"]).is_err());
        assert!(parse(&["info"]).is_err());
        assert!(parse(&["check", "a", "--json"]).is_ok());
        assert!(parse(&["info", "a", "--heap", "--json"]).is_ok());
        assert!(parse(&["repair", "a"]).is_ok());
    }

    #[test]
    fn create_validation_before_any_file_is_touched() {
        let long = "x".repeat(LAYOUT_MAX + 1);
        let e = validate_create(&long, 8 << 20).unwrap_err();
        assert!(matches!(e, Error::InvalidLayout { .. }));
        assert!(e.to_string().contains("1025 bytes"), "{e}");
        assert!(validate_create("a\0b", 8 << 20).is_err());
        let e = validate_create("kv", 4096).unwrap_err();
        assert!(matches!(e, Error::InvalidSize { size: 4096, .. }));
        assert!(e.to_string().contains("smallest pool"), "{e}");
        assert!(validate_create(&"x".repeat(LAYOUT_MAX), MIN_POOL_SIZE).is_ok());
    }

    #[test]
    fn exit_codes_of_pool_errors() {
        let p = PathBuf::from("p");
        assert_eq!(
            code_of(&Error::NotFound { path: p.clone() }),
            EXIT_CANNOT_RUN
        );
        assert_eq!(
            code_of(&Error::AlreadyExists { path: p.clone() }),
            EXIT_FAILED
        );
        assert_eq!(
            code_of(&Error::NotAPool {
                path: p,
                hint: None
            }),
            EXIT_FAILED
        );
        let f = Failure::from(Error::InvalidSize {
            size: 1,
            reason: "too small".into(),
        });
        assert_eq!(f.code, EXIT_CANNOT_RUN);
        assert_eq!(f.message, "invalid pool size 1: too small");
    }
}
