//! `cargo xtask bench kernels [--json] [--rounds N] [--cpu]`: our packed GEMM beside
//! matrixmultiply 0.3.11 on BERT-base's shapes, both on 2 threads, alternating in one process,
//! medians of the rounds.
//!
//! `--cpu` divides the work by the CPU time the process's threads got (from
//! `/proc/self/task/*/schedstat`, nanoseconds, Linux) over 2 threads instead of by the wall
//! clock: on a machine others are loading, time spent descheduled then does not count (cache
//! lines others evicted meanwhile still do; threads spinning or waiting for work count as busy).
//!
//! Ours runs in an `oxformer_tensor::ThreadPool` of 2 threads against weights packed once;
//! matrixmultiply (features avx512 + threading) gets `MATMUL_NUM_THREADS=2` and the plain
//! row-major weights, as a user of it would call it. No epilogue on either side.
//!
//! First it measures this machine's FMA peak for the instruction set in use
//! (`oxformer_tensor::isa()`, capped by `OXFORMER_ISA`): 12 independent chains of register-only
//! FMAs on each of the 2 threads at once; each product's rate is printed as a share of it.
//! matrixmultiply picks its own instruction set at run time; only its build-time
//! `MMTEST_FEATURE` (e.g. `MMTEST_FEATURE=avx2,fma,avx cargo xtask bench kernels`, which rebuilds
//! it) caps it, and the header says which applies.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ndarray::Array2;
use oxformer_tensor::{
    Epilogue, PackedMatrix, ThreadPool, cpu_model, fma_peak_loop, gemm_path, isa,
    matmul_packed_into,
};

const USAGE: &str = "usage: cargo xtask bench kernels [--json] [--rounds N] [--cpu]";

const THREADS: usize = 2;

/// (scenario, K, N): BERT-base's four products.
const SHAPES: [(&str, usize, usize); 4] = [
    ("attention_output", 768, 768),
    ("qkv", 768, 2304),
    ("ffn_up", 768, 3072),
    ("ffn_down", 3072, 768),
];

/// M: one token (decoding), a 128-token sequence, one 512-token sequence, 8 × 128 tokens.
const ROWS: [usize; 4] = [1, 128, 512, 1024];

pub fn run(args: &[String]) -> Result<()> {
    let Some((what, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    if what != "kernels" {
        bail!("unknown benchmark `{what}`\n{USAGE}");
    }
    let mut json = false;
    let mut cpu = false;
    let mut rounds = 7usize;
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--cpu" => cpu = true,
            "--rounds" => {
                rounds = rest
                    .next()
                    .context("--rounds needs a number")?
                    .parse()
                    .context("--rounds needs a number")?;
                if rounds == 0 {
                    bail!("--rounds must be at least 1");
                }
            }
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    if cfg!(debug_assertions) {
        return rerun_optimised(args);
    }
    if cpu {
        process_cpu_seconds().context("--cpu reads /proc/self/task/*/schedstat (Linux)")?;
    }
    kernels(json, rounds, cpu)
}

/// The products run in this process, so `cargo xtask` (a dev build: workspace crates at
/// opt-level 1) would time unoptimised kernels at a fraction of their speed: the same command
/// again from a release build of xtask.
fn rerun_optimised(args: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = std::process::Command::new(&cargo)
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "bench",
        ])
        .args(args)
        .status()
        .with_context(|| format!("running `{cargo} run --release --package xtask`"))?;
    if !status.success() {
        bail!("the release build of `xtask bench` failed ({status})");
    }
    Ok(())
}

fn kernels(json: bool, rounds: usize, cpu: bool) -> Result<()> {
    // SAFETY: set before any thread exists (matrixmultiply reads it on first use).
    unsafe { std::env::set_var("MATMUL_NUM_THREADS", THREADS.to_string()) };
    let pool = ThreadPool::new(THREADS)?;
    let peak_gflops = fma_peak_gflops(rounds, cpu)?;
    // matrixmultiply reads MMTEST_FEATURE when it is compiled, in the same cargo run as this
    let baseline_isa = match option_env!("MMTEST_FEATURE") {
        Some(features) if !features.is_empty() => format!("capped at build to {features}"),
        _ => "its own choice: AVX-512 where the CPU has it".to_string(),
    };
    if !json {
        println!(
            "CPU: {}; instruction set {} (OXFORMER_ISA={}); FMA peak on {THREADS} threads: {peak_gflops:.1} GFLOP/s",
            cpu_model(),
            isa(),
            std::env::var("OXFORMER_ISA").unwrap_or_else(|_| "unset".to_string())
        );
        println!("matrixmultiply: {baseline_isa}");
        let clock = if cpu {
            "per CPU time of the threads"
        } else {
            "per wall-clock time"
        };
        println!(
            "GEMM, {THREADS} threads, median of {rounds} alternating rounds, {clock}; ours = {:?} path, packed weights",
            gemm_path()
        );
        println!(
            "{:<24} {:>5} {:>5} {:>5} {:>12} {:>8} {:>16} {:>7}",
            "case", "m", "k", "n", "ours GFLOP/s", "of peak", "matrixmultiply", "ratio"
        );
    }
    for m in ROWS {
        for (scenario, k, n) in SHAPES {
            let case = format!("{scenario}_m{m}");
            let a = filled((m, k), 1);
            let b = filled((k, n), 2);
            let packed = PackedMatrix::from_in_out(b.view());
            let mut c_ours = Array2::<f32>::zeros((m, n));
            let mut c_base = Array2::<f32>::zeros((m, n));
            let flops = 2.0 * (m * k * n) as f64;

            let mut ours = || {
                pool.install(|| {
                    matmul_packed_into(a.view(), &packed, &Epilogue::none(), c_ours.view_mut())
                })
            };
            let mut baseline = || unsafe {
                // SAFETY: row-major arrays of the stated shapes.
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    c_base.as_mut_ptr(),
                    n as isize,
                    1,
                )
            };
            // warm up both, and size the repetitions to about 40 ms per measurement
            let repeats_ours = repeats_for(&mut ours);
            let repeats_base = repeats_for(&mut baseline);
            let mut ours_rates = Vec::new();
            let mut base_rates = Vec::new();
            for _ in 0..rounds {
                ours_rates.push(flops / seconds_per_call(&mut ours, repeats_ours, cpu)? / 1e9);
                base_rates.push(flops / seconds_per_call(&mut baseline, repeats_base, cpu)? / 1e9);
            }
            let ours_gflops = median(&mut ours_rates);
            let baseline_gflops = median(&mut base_rates);
            if json {
                // keys in the documented order (serde_json's map would sort them)
                println!(
                    "{{\"case\": {}, \"m\": {m}, \"k\": {k}, \"n\": {n}, \"isa\": \"{}\", \"ours_gflops\": {}, \"peak_gflops\": {}, \"ours_share_of_peak\": {}, \"baseline\": \"matrixmultiply\", \"baseline_gflops\": {}}}",
                    serde_json::to_string(&case)?,
                    isa(),
                    round2(ours_gflops),
                    round2(peak_gflops),
                    round3(ours_gflops / peak_gflops),
                    round2(baseline_gflops),
                );
            } else {
                println!(
                    "{case:<24} {m:>5} {k:>5} {n:>5} {ours_gflops:>12.1} {:>7.1}% {baseline_gflops:>16.1} {:>6.2}x",
                    100.0 * ours_gflops / peak_gflops,
                    ours_gflops / baseline_gflops
                );
            }
        }
    }
    Ok(())
}

/// The FMA peak of [`THREADS`] threads at once on the instruction set in use, GFLOP/s: the median
/// of `rounds` runs of about 0.1 s each; each thread's rate by its own clock (with `cpu`, the CPU
/// time it got, `/proc/thread-self/schedstat`), summed.
fn fma_peak_gflops(rounds: usize, cpu: bool) -> Result<f64> {
    // ≈ 0.1 s: schedstat advances by scheduler ticks (4 ms)
    const ITERATIONS: u64 = 50_000_000;
    let isa = isa();
    let mut rates = Vec::new();
    for _ in 0..rounds {
        let rate = std::thread::scope(|scope| -> Result<f64> {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    scope.spawn(move || -> Result<f64> {
                        let clock = || -> Result<f64> {
                            if cpu {
                                thread_cpu_seconds()
                            } else {
                                Ok(Instant::now().duration_since(*EPOCH).as_secs_f64())
                            }
                        };
                        let start = clock()?;
                        let flops = fma_peak_loop(isa, ITERATIONS);
                        Ok(flops / (clock()? - start).max(1e-9) / 1e9)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().expect("the peak loop does not panic"))
                .sum()
        })?;
        rates.push(rate);
    }
    Ok(median(&mut rates))
}

static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// CPU time of the calling thread so far, in seconds (`/proc/thread-self/schedstat`).
fn thread_cpu_seconds() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat")?;
    let first = text
        .split_whitespace()
        .next()
        .context("/proc/thread-self/schedstat: empty")?;
    Ok(first.parse::<u64>().context("schedstat: not a number")? as f64 * 1e-9)
}

fn filled(shape: (usize, usize), seed: u32) -> Array2<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    Array2::from_shape_simple_fn(shape, || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    })
}

fn repeats_for(work: &mut impl FnMut()) -> usize {
    work();
    let start = Instant::now();
    work();
    let once = start.elapsed().max(Duration::from_micros(1));
    ((Duration::from_millis(40).as_secs_f64() / once.as_secs_f64()) as usize).clamp(1, 100_000)
}

/// Seconds per call: wall clock, or (`cpu`) the process's CPU time shared out over [`THREADS`].
fn seconds_per_call(work: &mut impl FnMut(), repeats: usize, cpu: bool) -> Result<f64> {
    let start = Instant::now();
    let cpu_start = if cpu { process_cpu_seconds()? } else { 0.0 };
    for _ in 0..repeats {
        work();
    }
    let seconds = if cpu {
        (process_cpu_seconds()? - cpu_start) / THREADS as f64
    } else {
        start.elapsed().as_secs_f64()
    };
    Ok(seconds.max(1e-9) / repeats as f64)
}

/// CPU time of every thread of this process so far, in seconds: the first field (time on the
/// CPU, nanoseconds) of each `/proc/self/task/<tid>/schedstat`. A thread that ends in between
/// takes its time with it, so the pools here keep theirs.
fn process_cpu_seconds() -> Result<f64> {
    let mut nanoseconds = 0u64;
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path().join("schedstat");
        // a thread may end between the listing and the read
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let first = text
            .split_whitespace()
            .next()
            .with_context(|| format!("{}: empty", path.display()))?;
        nanoseconds += first
            .parse::<u64>()
            .with_context(|| format!("{}: not a number of nanoseconds", path.display()))?;
    }
    Ok(nanoseconds as f64 * 1e-9)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
