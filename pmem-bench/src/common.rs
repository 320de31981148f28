//! What every workload shares: argument parsing, the splitmix64 generator,
//! opening or creating the pool, timed phases with their result line, and
//! the flush/fence counts of `pmem-bench counts`.

use crate::cpu_time::process_cpu_secs;
use pmem_obj::{Error, Mode, PPtr, Pool, PoolOptions, bytemuck};
use std::fmt;
use std::path::Path;
use std::time::Instant;

/// Why a workload failed: bad arguments (exit 2), the library (exit 1), or
/// a wrong result found by its check (exit 1).
#[derive(Debug)]
pub enum BenchError {
    /// The command line is wrong; the message says how.
    Usage(String),
    /// The library returned an error.
    Pool(Error),
    /// The workload ran but its result is wrong.
    Wrong(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "usage: {m}"),
            BenchError::Pool(e) => write!(f, "pool error: {e}"),
            BenchError::Wrong(m) => write!(f, "wrong result: {m}"),
        }
    }
}

impl From<Error> for BenchError {
    fn from(e: Error) -> Self {
        BenchError::Pool(e)
    }
}

impl From<pmem_obj::pool::Error> for BenchError {
    fn from(e: pmem_obj::pool::Error) -> Self {
        BenchError::Pool(Error::from(e))
    }
}

/// Result alias of the workloads.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// splitmix64, the generator pinned by the C programs (`common.h`).
pub fn splitmix64(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The positional arguments of one program, after its name.
pub struct Args<'a> {
    usage: &'static str,
    args: &'a [String],
}

impl<'a> Args<'a> {
    /// Wraps `args`; `usage` is printed with any error.
    pub fn new(usage: &'static str, args: &'a [String]) -> Self {
        Args { usage, args }
    }

    fn bad(&self, what: String) -> BenchError {
        BenchError::Usage(format!("{what}\n  {}", self.usage))
    }

    /// Argument `i` as a string.
    pub fn str(&self, i: usize, name: &str) -> Result<&'a str> {
        self.args
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| self.bad(format!("missing argument <{name}>")))
    }

    /// Argument `i` as a number (decimal, or hex with `0x`, as `strtoull(.., 0)`).
    pub fn num(&self, i: usize, name: &str) -> Result<u64> {
        let s = self.str(i, name)?;
        parse_num(s).ok_or_else(|| self.bad(format!("<{name}> must be a number, not '{s}'")))
    }

    /// Argument `i` as a number, or `default` when absent.
    pub fn num_or(&self, i: usize, name: &str, default: u64) -> Result<u64> {
        if i < self.args.len() {
            self.num(i, name)
        } else {
            Ok(default)
        }
    }

    /// Fails unless `ok`, with `what` and the usage.
    pub fn check(&self, ok: bool, what: &str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.bad(what.to_string()))
        }
    }
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// How the program runs: timed with the environment's persistence mode,
/// or counting flushes and fences in `Mode::Sim`.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// `pmem-bench counts ...`: Sim mode, counters printed per phase.
    pub counting: bool,
}

impl Ctx {
    /// A default argument: `normal` (the C default) when timing,
    /// `counting` in Sim mode (smaller: Sim keeps a second image of the pool).
    pub fn default_for(&self, normal: u64, counting: u64) -> u64 {
        if self.counting { counting } else { normal }
    }

    /// Opens the pool at `path` if the file exists, else creates it with
    /// `size_mib` MiB (as `pool_open_or_create` in `common.h`). The mode
    /// comes from the environment (`PMEM_MODE`, `PMEM_IS_PMEM_FORCE`), or
    /// is Sim when counting.
    pub fn open_or_create(&self, path: &str, layout: &str, size_mib: u64) -> Result<Pool> {
        let opts = if self.counting {
            PoolOptions::new().mode(Mode::Sim)
        } else {
            PoolOptions::new()
        };
        let pool = if Path::new(path).exists() {
            Pool::open_with(path, Some(layout), &opts)?
        } else {
            let size = size_mib
                .checked_mul(1 << 20)
                .ok_or_else(|| BenchError::Usage(format!("pool size {size_mib} MiB overflows")))?;
            Pool::create_with(path, layout, size, &opts)?
        };
        Ok(pool)
    }

    /// Starts a timed phase: resets the Sim counters (when counting), then
    /// notes the wall and CPU clocks.
    pub fn start(&self, pool: &Pool) -> Phase {
        if self.counting
            && let Some(sim) = pool.raw().persister().sim()
        {
            sim.reset_counters();
        }
        Phase {
            cpu0: process_cpu_secs(),
            t0: Instant::now(),
        }
    }
}

/// One timed phase of a workload.
pub struct Phase {
    /// Wall clock at the start.
    pub t0: Instant,
    cpu0: f64,
}

impl Phase {
    /// Seconds since the start.
    pub fn secs(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Prints the result line (the C programs' `print_result`, with
    /// `mode=` instead of `pmem_force=`) and, when counting, the flushes
    /// and fences per operation of the phase.
    #[allow(clippy::too_many_arguments)]
    pub fn report(
        &self,
        ctx: &Ctx,
        pool: &Pool,
        workload: &str,
        threads: u64,
        ops: u64,
        secs: f64,
        extra: &str,
    ) {
        let cpu = process_cpu_secs() - self.cpu0;
        let n = ops.max(1) as f64;
        let sep = if extra.is_empty() { "" } else { " " };
        println!(
            "workload={workload} threads={threads} ops={ops} secs={secs:.6} ops_per_s={:.1} \
             ns_per_op={:.1} cpu_secs={cpu:.6} cpu_ns_per_op={:.1}{sep}{extra} mode={}",
            n / secs,
            secs * 1e9 / n,
            cpu * 1e9 / n,
            pool.mode(),
        );
        if ctx.counting
            && let Some(sim) = pool.raw().persister().sim()
        {
            let c = sim.counters();
            println!(
                "counts workload={workload} threads={threads} ops={ops} fences={} flush_calls={} \
                 flushed_lines={} fences_per_op={:.2} flush_calls_per_op={:.2} \
                 flushed_lines_per_op={:.2}",
                c.fences,
                c.flush_calls,
                c.flushed_lines,
                c.fences as f64 / n,
                c.flush_calls as f64 / n,
                c.flushed_lines as f64 / n,
            );
        }
    }
}

/// The root of the workloads whose C root is sized at run time
/// (`PMEMoid oids[n]`, `char data[total]`): our root has a fixed type, so
/// it holds a pointer to one block of `len` bytes allocated beside it.
/// Per operation the work is the same (the block's pointer is read once,
/// before the timed loop).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "pmem_obj::bytemuck")]
pub struct BlockRoot {
    /// The block, null until first use.
    pub block: PPtr<u8>,
    /// Its length in bytes.
    pub len: u64,
    /// Zero.
    pub reserved: u64,
}

/// Type number of the root's block (the C programs have no such object).
pub const BLOCK_TYPE_NUM: u64 = 100;

/// The root's block of `len` bytes, allocated zeroed on first use (which
/// faults its pages in, as `pmemobj_root`'s zeroing does in C). An existing
/// block of another length is a usage error: the pool was made by another
/// run.
pub fn root_block(pool: &Pool, len: u64) -> Result<PPtr<u8>> {
    let root = pool.root::<BlockRoot>()?;
    let r = pool.read(root)?;
    if !r.block.is_null() {
        if r.len != len {
            return Err(BenchError::Usage(format!(
                "the pool holds a root block of {} bytes but this run needs {len}: \
                 use the same arguments as the run that made it, or a fresh pool file",
                r.len
            )));
        }
        prefault(pool, r.block, len)?;
        return Ok(r.block);
    }
    pool.transaction(|tx| -> Result<PPtr<u8>, Error> {
        let block = tx.alloc_bytes(len, BLOCK_TYPE_NUM)?;
        tx.write(
            root,
            BlockRoot {
                block,
                len,
                reserved: 0,
            },
        )?;
        Ok(block)
    })
    .map_err(BenchError::from)
}

/// Reads every page of `p..p+len` so no page fault lands in a timed phase
/// when an existing pool is reopened (`prefault` in `common.h`; a read is
/// enough on a shared mapping of tmpfs or DAX).
pub fn prefault(pool: &Pool, p: PPtr<u8>, len: u64) -> Result<()> {
    const PIECE: u64 = 1 << 20;
    let mut done = 0;
    while done < len {
        let n = PIECE.min(len - done);
        std::hint::black_box(pool.read_bytes(p.at(done), n)?);
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_stream() {
        // First outputs for seed 0 of the reference splitmix64 (Vigna).
        let mut s = 0;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(&mut s), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn numbers_parse_like_strtoull() {
        assert_eq!(parse_num("42"), Some(42));
        assert_eq!(parse_num("0x10"), Some(16));
        assert_eq!(parse_num("x"), None);
        assert_eq!(parse_num("-1"), None);
    }
}
