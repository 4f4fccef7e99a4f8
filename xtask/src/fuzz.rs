//! `cargo xtask fuzz [--seconds N] [--target NAME[,NAME]] [--seed S] [--replay I]`: builds the
//! CLI and the fuzz driver (`fuzz/`), then runs every fuzz target for N seconds each (default
//! 60). `cargo xtask test` runs a short pass of each ([`short_pass`]).

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths::workspace_root;

/// Seconds per target of the pass `cargo xtask test` runs.
pub const SHORT_PASS_SECONDS: &str = "4";

pub fn run(args: &[String]) -> Result<()> {
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
