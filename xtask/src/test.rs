//! `cargo xtask test`: the README's test command. Fetches the pinned real models (cached), then runs
//! every test of the workspace, including the `#[ignore]`d ones that need those models, and a
//! short pass of every fuzz target (`cargo xtask fuzz --seconds 4`).

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
    crate::fuzz::short_pass()
}
