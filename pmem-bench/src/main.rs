//! `pmem-bench`: the reference workloads of `peer/WORKLOADS.md`, with the
//! arguments, data layout, operation order, seeds and result lines of the
//! C programs in `peer/pmdk/`, so that `peer/compare.sh` runs both sides
//! alternately. Only the public API of `pmem-obj` is used.
//!
//! ```text
//! pmem-bench PROGRAM ARGS...          timed, mode from PMEM_MODE / PMEM_IS_PMEM_FORCE
//! pmem-bench counts PROGRAM ARGS...   Mode::Sim: flushes and fences per operation
//! ```
//!
//! The persistence primitives alone are measured by
//! `cargo bench -p pmem-pool --bench primitives` (beside `pmdk/primitives.c`).
//!
//! Exit status: 0 when the run and its result check pass, 1 on a library
//! error or a wrong result, 2 on bad arguments.
#![deny(unsafe_code)]

mod atomic_alloc_free;
mod common;
#[allow(unsafe_code)]
mod cpu_time;
mod hashmap;
#[allow(unsafe_code)]
mod large_write;
mod ptr_array;
mod tx_alloc_free;
mod tx_paths;
mod tx_update;

use common::{BenchError, Ctx};
use std::process::ExitCode;

const PROGRAMS: &str = "\
usage: pmem-bench [counts] PROGRAM ARGS...
  tx_update <pool> <threads> <ops_per_thread> [pool_MiB=1024] [seed=42]
  tx_alloc_free <pool> <n> [pool_MiB=1024]
  atomic_alloc_free <pool> <size_bytes> <n> [pool_MiB=1024]
  hashmap <pool> <nkeys> [pool_MiB=1024] [seed=42]
  large_write <pool> <nt|memcpy> [total_MiB=1024] [chunk_MiB=8] [pool_MiB=2048]
  tx_paths <pool> <threads> <blocks> [block_ops=10000] [pool_MiB=1024] [seed=42]
      (not a WORKLOADS.md program: tx_update's transaction through several
      paths, taking turns in blocks inside one process)
`counts` runs the program in Mode::Sim (smaller default pool sizes; pass
small operation counts) and prints, after each result line, a `counts` line
with the flushes and fences per operation of that phase.";

fn run(args: &[String]) -> Result<(), BenchError> {
    let (ctx, args) = match args.first().map(String::as_str) {
        Some("counts") => (Ctx { counting: true }, &args[1..]),
        _ => (Ctx { counting: false }, args),
    };
    let Some((program, rest)) = args.split_first() else {
        return Err(BenchError::Usage("no program given".into()));
    };
    match program.as_str() {
        "tx_update" => tx_update::run(&ctx, rest),
        "tx_alloc_free" => tx_alloc_free::run(&ctx, rest),
        "atomic_alloc_free" => atomic_alloc_free::run(&ctx, rest),
        "hashmap" => hashmap::run(&ctx, rest),
        "large_write" => large_write::run(&ctx, rest),
        "tx_paths" => tx_paths::run(&ctx, rest),
        other => Err(BenchError::Usage(format!("unknown program '{other}'"))),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ BenchError::Usage(_)) => {
            eprintln!("pmem-bench: {e}\n{PROGRAMS}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("pmem-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
