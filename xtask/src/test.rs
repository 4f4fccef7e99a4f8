//! `cargo xtask test`: the README's test command. Fetches the pinned real models (cached), then runs
//! every test of the workspace, including the `#[ignore]`d ones that need those models, a short
//! pass of every fuzz target (`cargo xtask fuzz --seconds 4`), and the loom models of the thread
//! team's claim protocol (built with `--cfg loom` in a target directory of their own).

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::fetch;
use crate::paths::{cache_dir, workspace_root};

pub fn run(args: &[String]) -> Result<()> {
    let cache = cache_dir();
    fetch::fetch_all(&cache)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .env("OXFORMER_CACHE", &cache)
        .args(["test", "--workspace", "--profile", "test-release"])
        .args(args)
        .args(["--", "--include-ignored"])
        .status()
        .context("could not start cargo test")?;
    if !status.success() {
        bail!("cargo test failed with {status}");
    }
    crate::fuzz::short_pass()?;
    loom_models()
}

/// The loom models in `crates/tensor/src/threads/loom_model.rs`: `--cfg loom` swaps loom's atomics
/// into the thread team, which recompiles every dependency, so the build gets `target/loom` and the
/// usual build directory stays valid.
fn loom_models() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let root = workspace_root();
    eprintln!("test: the thread team's loom models (--cfg loom, target/loom)");
    let status = Command::new(cargo)
        .current_dir(&root)
        .env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", root.join("target").join("loom"))
        .args(["test", "-p", "oxformer-tensor", "--lib"])
        .args([
            "--profile",
            "test-release",
            "loom_model",
            "--",
            "--nocapture",
        ])
        .status()
        .context("could not start cargo test for the loom models")?;
    if !status.success() {
        bail!("the loom models failed with {status}");
    }
    Ok(())
}
