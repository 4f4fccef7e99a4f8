//! Fuzz targets for every oxformer parser that reads outside bytes, run by the deterministic
//! driver in `main.rs` (`cargo xtask fuzz [--seconds N]`).
//!
//! Each target takes one input, a byte string. Its first byte picks the mode: even, the rest is
//! the outside bytes themselves (a safetensors file, a config.json, a stdin); odd, the rest feeds
//! [`arbitrary::Unstructured`] to build a structured, near-valid input (a header whose offsets
//! almost agree, a fixture's tokenizer.json with a few values changed) that gets past the first
//! checks. A target returns normally whatever the parser answers: errors are expected. What it
//! must never do is panic, hang, or allocate more than its input justifies; the driver watches
//! for all three.

pub mod json;
mod targets;

use std::path::{Path, PathBuf};

pub use targets::{TARGETS, make};

/// One fuzz target.
pub trait Target {
    /// Runs one input (see the crate docs for its layout); true when the parser accepted it
    /// (how deep the inputs get, for the report).
    fn run(&mut self, data: &[u8]) -> bool;

    /// Seed inputs beside the committed corpus: the fixtures' own files, in raw mode.
    fn seeds(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
}

/// The input of `mode` (`0` raw, `1` structured) with `body`.
pub fn input(mode: u8, body: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(body.len() + 1);
    data.push(mode);
    data.extend_from_slice(body);
    data
}

/// The workspace's `fixtures/` folder.
pub fn fixtures(root: &Path) -> PathBuf {
    root.join("fixtures")
}
