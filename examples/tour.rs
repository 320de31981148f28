//! A tour of pmem-obj: a root object in a pool, changed by transactions
//! that commit, fail, or panic, and what survives a reopen.
//!
//! ```text
//! cargo run --release --example tour [PATH]
//! ```
//!
//! Without PATH the pool lives in a temporary directory and is removed at
//! the end. With PATH it is created there, or reopened if it exists, so
//! each run finds the previous runs' work (the run counter grows). Try
//! `PMEM_MODE=msync`, or a path on a DAX mount, to see the mode change.

use pmem_obj::{PPtr, Pool, bytemuck};
use std::error::Error;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

const LAYOUT: &str = "tour-v2";

/// The root object: plain data, so any bytes are a valid `Bank` and it may
/// live in a pool.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "pmem_obj::bytemuck")]
struct Bank {
    /// Runs of this tour that got past their first transaction.
    runs: u64,
    /// Two accounts; every transfer keeps their sum.
    balance: [u64; 2],
    /// A ring of the last 8 amounts transferred; `len` counts them all.
    history: [u64; 8],
    len: u64,
}

fn main() {
    if let Err(e) = tour() {
        eprintln!("tour: {e}");
        std::process::exit(1);
    }
}

fn tour() -> Result<(), Box<dyn Error>> {
    let tmp = tempfile::tempdir()?;
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("tour.pool"));

    // 1. Create the pool, or open it (running recovery) if it exists. The
    //    persistence mode is chosen once, here.
    let pool = if path.exists() {
        Pool::open(&path, LAYOUT)?
    } else {
        Pool::create(&path, LAYOUT, 8 << 20)?
    };
    let why = pool.mode_choice();
    println!(
        "pool {}: mode {} ({})",
        path.display(),
        why.mode,
        why.reason
    );
    let bank = pool.root::<Bank>()?; // zeroed the first time
    show("found", &pool.read(bank)?);

    // 2. A transaction that commits: all of it is durable when it returns.
    pool.transaction(|tx| -> Result<(), pmem_obj::Error> {
        let mut b = tx.get_mut(bank)?; // snapshots the old bytes first
        if b.runs == 0 {
            b.balance = [100, 0];
        }
        b.runs += 1;
        Ok(())
    })?;
    let b = pool.read(bank)?; // a copy, taken under a shared lock
    let richer = usize::from(b.balance[0] < 50);
    transfer(&pool, bank, richer, 10 * (b.runs % 5 + 1))?;
    show("committed", &pool.read(bank)?);
    // (A one-range transaction costs 3 fences in Pmem mode; the Sim mode of
    // the test suite counts them: see FORMAT.md, "Transactions".)

    // 3. A transaction that returns Err: everything it changed, even the
    //    credit made before the check failed, is rolled back.
    let e = transfer(&pool, bank, 0, 1_000_000).unwrap_err();
    show(&format!("failed ({e}), rolled back"), &pool.read(bank)?);

    // 4. A transaction that panics: rolled back, then the panic goes on
    //    (caught here to show the pool afterwards).
    std::panic::set_hook(Box::new(|_| {})); // keep the demo's output clean
    let r = catch_unwind(AssertUnwindSafe(|| {
        pool.transaction(|tx| -> Result<(), pmem_obj::Error> {
            tx.get_mut(bank)?.balance = [0, 0];
            panic!("a bug in the middle of a transaction");
        })
    }));
    let _ = std::panic::take_hook();
    assert!(r.is_err());
    show("panicked, rolled back", &pool.read(bank)?);

    // 5. Close and reopen: the committed state is what survives.
    pool.close()?;
    let pool = Pool::open(&path, LAYOUT)?;
    println!(
        "reopened: {} lane(s) needed recovery",
        pool.recovered().len()
    );
    // 6. A read view: while it lives no transaction writes (they wait),
    //    so `get` hands out a plain reference without taking any lock.
    {
        let view = pool.view()?;
        show(
            "survived (read through a view)",
            view.get(pool.root::<Bank>()?)?,
        );
    }
    pool.close()?;
    Ok(())
}

/// Moves `amount` from account `from` to the other one, or fails and
/// changes nothing. The credit is made first on purpose: the rollback
/// undoes it.
fn transfer(pool: &Pool, bank: PPtr<Bank>, from: usize, amount: u64) -> Result<(), Box<dyn Error>> {
    pool.transaction(|tx| {
        let mut b = tx.get_mut(bank)?;
        b.balance[1 - from] += amount;
        if b.balance[from] < amount {
            let have = b.balance[from];
            return Err(format!("cannot move {amount}, account {from} holds {have}").into());
        }
        b.balance[from] -= amount;
        let slot = (b.len % 8) as usize;
        b.history[slot] = amount;
        b.len += 1;
        Ok(())
    })
}

fn show(what: &str, b: &Bank) {
    let n = (b.len as usize).min(8);
    println!(
        "{what}:\n    runs {}, balances {:?} (sum {}), {} transfer(s), last {:?}",
        b.runs,
        b.balance,
        b.balance[0] + b.balance[1],
        b.len,
        &b.history[..n]
    );
}
