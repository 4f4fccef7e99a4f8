//! `cargo xtask fuzz [--seconds N] [--target NAME[,NAME]] [--seed S] [--replay I]`: builds the
//! CLI and the fuzz driver (`fuzz/`), then runs every fuzz target for N seconds each (default
//! 60). `cargo xtask test` runs a short pass of each ([`short_pass`]).
//!
//! `cargo xtask fuzz --afl NAME[,NAME]|all [--seconds N]` runs the same targets coverage-guided,
//! under AFL++ through cargo-afl ([`afl`]); only that command needs cargo-afl.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths::workspace_root;

/// Seconds per target of the pass `cargo xtask test` runs.
pub const SHORT_PASS_SECONDS: &str = "4";

pub fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|arg| arg == "--afl") {
        return afl(args);
    }
    let mut args = args.to_vec();
    if !args
        .iter()
        .any(|arg| arg == "--seconds" || arg == "--replay")
    {
        args.extend(["--seconds".to_string(), "60".to_string()]);
    }
    fuzz(&args)
}

/// A few seconds of every target, as CI runs it.
pub fn short_pass() -> Result<()> {
    fuzz(&["--seconds".to_string(), SHORT_PASS_SECONDS.to_string()])
}

fn fuzz(args: &[String]) -> Result<()> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    eprintln!("fuzz: building the CLI and the fuzz driver (profile test-release)");
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            "test-release",
            "-p",
            "oxformer-cli",
            "-p",
            "oxformer-fuzz",
        ])
        .status()
        .context("could not start cargo build")?;
    if !status.success() {
        bail!("cargo build failed with {status}");
    }
    let binaries = root.join("target").join("test-release");
    let status = Command::new(binaries.join("oxformer-fuzz"))
        .current_dir(&root)
        .env("OXFORMER_BIN", binaries.join("oxformer"))
        .arg("--root")
        .arg(&root)
        .args(args)
        .status()
        .context("could not start the fuzz driver")?;
    if !status.success() {
        bail!("fuzzing found problems (see FINDING lines above; inputs under fuzz/findings/)");
    }
    Ok(())
}

// --- coverage-guided: AFL++ through cargo-afl --------------------------------------------------

/// The targets AFL++ runs with `--afl all`: every one but `cli_stdin`, which runs the CLI in a
/// child process whose coverage AFL++ cannot see (it stays on the deterministic driver).
const AFL_TARGETS: &[&str] = &[
    "safetensors",
    "shard_index",
    "config",
    "model_folder",
    "tokenizer",
    "generation_config",
    "pipeline_call",
];

/// `cargo xtask fuzz --afl NAME[,NAME]|all [--seconds N] [--timeout MS]`: builds the driver with
/// cargo-afl (instrumented, in `target/afl`), writes each target's seeds as afl-fuzz's input
/// folder, runs afl-fuzz for N seconds per target (default 60) with a timeout per input (default
/// 1000 ms, wall clock: raise it on a loaded machine), and copies what it saved as crashes or
/// hangs to `fuzz/findings/<target>/afl-*`.
fn afl(args: &[String]) -> Result<()> {
    let mut names = None;
    let mut seconds = 60u64;
    let mut timeout_ms = 1000u64;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--afl" => names = iter.next().cloned(),
            "--seconds" => {
                seconds = iter
                    .next()
                    .and_then(|value| value.parse::<f64>().ok())
                    .map(|value| value.ceil().max(1.0) as u64)
                    .context("--seconds takes a number")?
            }
            "--timeout" => {
                timeout_ms = iter
                    .next()
                    .and_then(|value| value.parse().ok())
                    .context("--timeout takes milliseconds")?
            }
            other => bail!("`{other}` does not go with --afl (only --seconds N, --timeout MS)"),
        }
    }
    let names = names.context("--afl takes a target name, a comma-separated list, or all")?;
    let targets: Vec<&str> = if names == "all" {
        AFL_TARGETS.to_vec()
    } else {
        names.split(',').collect()
    };
    for target in &targets {
        if *target == "cli_stdin" {
            bail!(
                "cli_stdin runs the CLI in a child process, whose coverage AFL++ cannot see: fuzz \
                 it with the deterministic driver (cargo xtask fuzz --target cli_stdin)"
            );
        }
    }

    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let afl_found = Command::new(&cargo)
        .args(["afl", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !afl_found {
        bail!(
            "cargo-afl is not installed: cargo install cargo-afl --version 0.18.2 --locked \
             (it builds AFL++ on first use; the deterministic pass needs none of it)"
        );
    }
    let target_dir = root.join("target").join("afl");
    eprintln!(
        "fuzz: building the driver with cargo-afl (instrumented, {})",
        target_dir.display()
    );
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["afl", "build", "--profile", "test-release"])
        .args(["-p", "oxformer-fuzz", "--features", "afl", "--target-dir"])
        .arg(&target_dir)
        .status()
        .context("could not start cargo afl build")?;
    if !status.success() {
        bail!("cargo afl build failed with {status}");
    }
    let driver = target_dir.join("test-release").join("oxformer-fuzz");

    let mut found = Vec::new();
    for target in targets {
        let work = target_dir.join("runs").join(target);
        let (input, output) = (work.join("in"), work.join("out"));
        if work.exists() {
            std::fs::remove_dir_all(&work)
                .with_context(|| format!("could not clear {}", work.display()))?;
        }
        let status = Command::new(&driver)
            .arg("--root")
            .arg(&root)
            .args(["--target", target, "--write-seeds"])
            .arg(&input)
            .status()
            .context("could not start the fuzz driver")?;
        if !status.success() {
            bail!("writing the seeds of {target} failed with {status}");
        }
        eprintln!("fuzz {target}: afl-fuzz for {seconds} s");
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args(["afl", "fuzz", "-i"])
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .args(["-V", &seconds.to_string(), "-t", &timeout_ms.to_string()])
            .args(["-m", "none", "--"])
            .arg(&driver)
            .arg("--root")
            .arg(&root)
            .args(["--afl", "--target", target])
            // a shared machine: no CPU pinning, no governor or core-pattern demands, a log
            // instead of the full-screen status
            .env("AFL_NO_AFFINITY", "1")
            .env("AFL_SKIP_CPUFREQ", "1")
            .env("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1")
            .env("AFL_NO_UI", "1")
            .stdout(std::process::Stdio::null())
            .status()
            .context("could not start cargo afl fuzz")?;
        if !status.success() {
            bail!("afl-fuzz on {target} failed with {status}");
        }
        let instance = output.join("default");
        let stats = std::fs::read_to_string(instance.join("fuzzer_stats")).unwrap_or_default();
        let stat = |key: &str| {
            stats
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    (name.trim() == key).then(|| value.trim().to_string())
                })
                .unwrap_or_else(|| "?".to_string())
        };
        eprintln!(
            "fuzz {target}: {} inputs run in {} s ({}/s), {} paths in the corpus, edge \
             coverage {}, stability {}, {} crashes, {} hangs",
            stat("execs_done"),
            stat("run_time"),
            stat("execs_per_sec"),
            stat("corpus_count"),
            stat("bitmap_cvg"),
            stat("stability"),
            stat("saved_crashes"),
            stat("saved_hangs"),
        );
        for kind in ["crashes", "hangs"] {
            let Ok(entries) = std::fs::read_dir(instance.join(kind)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if !name.starts_with("id:") {
                    continue;
                }
                let saved = root
                    .join("fuzz")
                    .join("findings")
                    .join(target)
                    .join(format!("afl-{kind}-{}", name.replace([':', ','], "_")));
                std::fs::create_dir_all(saved.parent().expect("a findings folder"))?;
                std::fs::copy(entry.path(), &saved)?;
                eprintln!(
                    "fuzz: FINDING: target {target}: afl-fuzz saved {kind} input {} (replay: \
                     {} --root {} --afl --target {target} < {})",
                    saved.display(),
                    driver.display(),
                    root.display(),
                    saved.display()
                );
                found.push(saved);
            }
        }
    }
    if !found.is_empty() {
        bail!(
            "afl-fuzz found {} crashing or hanging inputs (FINDING lines above)",
            found.len()
        );
    }
    Ok(())
}
