//! Shared helpers of the tokenizer tests: where the fixtures and the fetched models are.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `<workspace>/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// `$OXFORMER_CACHE`, else `<workspace>/.cache` (where `cargo xtask fetch` puts the real models).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("OXFORMER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache"))
}
