//! Where things live: the workspace root and the model cache.

use std::path::PathBuf;

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The cache for fetched packages and the HF folders laid out from them:
/// `$OXFORMER_CACHE`, or `<workspace>/.cache` (git-ignored).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("OXFORMER_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".cache"),
    }
}
