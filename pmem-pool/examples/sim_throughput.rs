//! Throughput of the simulated persistence domain (not a test: numbers are
//! printed, never asserted).
//!
//! `cargo run --release -p pmem-pool --features sim --example sim_throughput`
//!
//! Builds a 4 MiB domain over a heap buffer, runs a transaction-like
//! workload (each step writes a few lines, flushes most of them, drains;
//! some lines stay dirty for a while) with and without a crash trace, then
//! replays every crash image of the trace with a cheap callback. With the
//! argument `leaky`, the 4th line of each step is never flushed, so dirty
//! lines pile up (a workload with a missing flush).

#[cfg(feature = "sim")]
fn main() {
    use pmem_pool::sim::{CrashOptions, SimDomain};
    use std::ops::ControlFlow;
    use std::time::Instant;

    const POOL: usize = 4 << 20;
    const LINE: usize = 64;
    const STEPS: usize = 2000;

    let mut mem = vec![0u8; POOL].into_boxed_slice();
    let base = mem.as_mut_ptr();
    // SAFETY: `mem` outlives the domain (dropped at the end of main, after
    // `d`) and is written only through `base` below, from this thread.
    let d = unsafe { SimDomain::new(base, POOL) };

    let mut rng = 0x1234_5678_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Each step writes 4 random lines, flushes 3 of them and the 4th of the
    // previous step (a deferred flush, as a commit flushes data written
    // earlier), then drains: a few lines are dirty at every drain point.
    let leaky = std::env::args().nth(1).as_deref() == Some("leaky");
    let mut deferred: Option<usize> = None;
    let mut step = |d: &SimDomain, i: usize| {
        let lines: Vec<usize> = (0..4).map(|_| next() as usize % (POOL / LINE)).collect();
        for &l in &lines {
            // SAFETY: l * LINE + 8 <= POOL; only this thread writes `mem`.
            unsafe {
                base.add(l * LINE)
                    .cast::<u64>()
                    .write_unaligned(i as u64 + 1)
            };
        }
        for &l in &lines[..3] {
            d.flush(l * LINE, 8);
        }
        if let Some(l) = deferred.replace(lines[3])
            && !leaky
        {
            d.flush(l * LINE, 8);
        }
        d.drain();
    };

    let t0 = Instant::now();
    for i in 0..STEPS {
        step(&d, i);
    }
    let untraced = t0.elapsed();

    d.start_trace();
    let t0 = Instant::now();
    for i in 0..STEPS {
        step(&d, STEPS + i);
    }
    let traced = t0.elapsed();
    let mut trace = d.take_trace().expect("trace started above");

    let opts = CrashOptions::default();
    let t0 = Instant::now();
    let mut images = 0u64;
    let mut sum = 0u64;
    let _ = trace.for_each_image(&opts, |img| {
        images += 1;
        // Touch the image: the first byte of every added line and of line 0.
        sum = sum.wrapping_add(img.bytes[0] as u64);
        for &l in img.added_lines {
            sum = sum.wrapping_add(img.bytes[l * LINE] as u64);
        }
        ControlFlow::<()>::Continue(())
    });
    let replay = t0.elapsed();

    let dirty: usize = (0..trace.points())
        .filter_map(|k| trace.point(k))
        .map(|p| p.dirty_lines.len())
        .sum();
    println!(
        "pool {} MiB, {STEPS} drains{}",
        POOL >> 20,
        if leaky { ", leaky" } else { "" }
    );
    println!(
        "untraced drain     {:>9.2} us/drain",
        untraced.as_secs_f64() * 1e6 / STEPS as f64
    );
    println!(
        "traced drain       {:>9.2} us/drain (whole-pool compare + diff)",
        traced.as_secs_f64() * 1e6 / STEPS as f64
    );
    println!(
        "trace              {:>9} points, {:.1} dirty lines/point, {:.1} MiB",
        trace.points(),
        dirty as f64 / trace.points() as f64,
        trace.heap_bytes() as f64 / (1 << 20) as f64
    );
    println!(
        "crash images       {:>9} in {:.3} s = {:.0} images/s (checksum {sum})",
        images,
        replay.as_secs_f64(),
        images as f64 / replay.as_secs_f64()
    );
    drop(d);
    drop(mem);
}

#[cfg(not(feature = "sim"))]
fn main() {
    eprintln!("sim_throughput needs the `sim` feature: add --features sim");
}
