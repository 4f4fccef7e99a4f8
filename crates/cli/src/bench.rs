//! `oxformer bench`: forward-pass and generation timings on random ids.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// Options of `oxformer bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model folder or id.
    #[arg(long)]
    pub model: PathBuf,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark.
pub fn run(_args: &BenchArgs) -> Result<()> {
    bail!("`oxformer bench` is not written yet")
}
