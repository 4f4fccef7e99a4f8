//! `cargo xtask fixtures [--check]`: the reference outputs of HF transformers that the tests compare
//! against, written by the Python scripts in `xtask/python/` from a pinned environment.
//!
//! - The environment is a venv at `<cache>/pyenv`, created with `python3 -m venv` and filled from
//!   `xtask/python/requirements.txt`; pip runs again only when that file changed (a sha256 stamp in
//!   the venv says which requirements it holds).
//! - `fixtures_tokenizers.py --out DIR` writes the trained tokenizers, then
//!   `fixtures_models.py --out DIR` writes the tiny checkpoints and every reference output
//!   (layout in `fixtures/README.md`), `fixtures_configs.py` the config defaults, and
//!   `fixtures_seq2seq.py` the encoder-decoder checkpoints (T5, BART, Marian) and their references.
//! - Without `--check`, DIR is `<workspace>/fixtures`. With `--check`, DIR is a fresh folder in the
//!   cache; every file is then compared byte for byte with the committed `fixtures/`, the drifting,
//!   missing and unexpected files are listed, and the task fails if there is any.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use crate::fetch;
use crate::paths::{cache_dir, workspace_root};

/// Files in `fixtures/` written by hand, not by the scripts: never compared.
const HAND_WRITTEN: &[&str] = &["README.md"];

/// The scripts, in the order they run (models copy the tokenizers' folders).
const SCRIPTS: &[&str] = &[
    "fixtures_tokenizers.py",
    "fixtures_sentencepiece.py",
    "fixtures_models.py",
    "fixtures_configs.py",
    "fixtures_seq2seq.py",
    "fixtures_seq2seq_pipelines.py",
];

pub fn run(args: &[String]) -> Result<()> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => bail!("usage: cargo xtask fixtures [--check]"),
    };
    let root = workspace_root();
    let cache = cache_dir();
    // The MiniLM references come from the real model, fetched into the cache.
    fetch::fetch_all(&cache)?;
    let python = ensure_venv(&cache, &root.join("xtask/python/requirements.txt"))?;
    let committed = root.join("fixtures");
    if !check {
        generate(&python, &root, &cache, &committed)?;
        println!("fixtures written to {}", committed.display());
        return Ok(());
    }
    let fresh = cache.join("fixtures-check");
    if fresh.exists() {
        fs::remove_dir_all(&fresh).with_context(|| format!("removing {}", fresh.display()))?;
    }
    generate(&python, &root, &cache, &fresh)?;
    let drift = compare_trees(&committed, &fresh)?;
    if drift.is_empty() {
        println!(
            "no drift: {} matches a fresh regeneration ({})",
            committed.display(),
            fresh.display()
        );
        return Ok(());
    }
    for line in &drift {
        eprintln!("{line}");
    }
    bail!(
        "{} fixture files drift from a fresh regeneration in {}",
        drift.len(),
        fresh.display()
    )
}

/// The venv's python, after creating the venv and installing the requirements when needed.
pub(crate) fn ensure_venv(cache: &Path, requirements: &Path) -> Result<PathBuf> {
    let venv = cache.join("pyenv");
    let python = venv.join("bin/python");
    if !python.is_file() {
        let base = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
        run_command(Command::new(base).args(["-m", "venv"]).arg(&venv))?;
    }
    let wanted = sha256_hex(
        &fs::read(requirements).with_context(|| format!("reading {}", requirements.display()))?,
    );
    let stamp = venv.join("oxformer-requirements.sha256");
    let installed = fs::read_to_string(&stamp).unwrap_or_default();
    if installed.trim() != wanted {
        run_command(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(requirements),
        )?;
        fs::write(&stamp, format!("{wanted}\n"))
            .with_context(|| format!("writing {}", stamp.display()))?;
    }
    Ok(python)
}

/// Runs every script into `out`, deterministically and offline.
fn generate(python: &Path, root: &Path, cache: &Path, out: &Path) -> Result<()> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for script in SCRIPTS {
        let path = root.join("xtask/python").join(script);
        if !path.is_file() {
            bail!("{} is missing", path.display());
        }
        run_command(
            Command::new(python)
                .arg(&path)
                .arg("--out")
                .arg(out)
                .env("OXFORMER_CACHE", cache)
                .env("HF_HUB_OFFLINE", "1")
                .env("TRANSFORMERS_OFFLINE", "1")
                .env("HF_HUB_DISABLE_TELEMETRY", "1")
                .env("TOKENIZERS_PARALLELISM", "false")
                .env("PYTHONHASHSEED", "0")
                .env("OMP_NUM_THREADS", "1")
                .env("MKL_NUM_THREADS", "1")
                .env("CUDA_VISIBLE_DEVICES", ""),
        )?;
    }
    Ok(())
}

/// One line per file that differs between the two trees (hand-written files left out).
fn compare_trees(committed: &Path, fresh: &Path) -> Result<Vec<String>> {
    let committed_files = list_files(committed)?;
    let fresh_files = list_files(fresh)?;
    let mut drift = Vec::new();
    for file in committed_files.union(&fresh_files) {
        if HAND_WRITTEN.iter().any(|name| Path::new(name) == file) {
            continue;
        }
        match (committed_files.contains(file), fresh_files.contains(file)) {
            (true, false) => drift.push(format!(
                "not regenerated (stale?): fixtures/{}",
                file.display()
            )),
            (false, true) => drift.push(format!("not committed: fixtures/{}", file.display())),
            _ => {
                let old = fs::read(committed.join(file))?;
                let new = fs::read(fresh.join(file))?;
                if old != new {
                    let detail = if file.extension().is_some_and(|ext| ext == "safetensors") {
                        tensor_drift(&old, &new)
                    } else {
                        format!("{} bytes committed, {} regenerated", old.len(), new.len())
                    };
                    drift.push(format!("drifts: fixtures/{} ({detail})", file.display()));
                }
            }
        }
    }
    Ok(drift)
}

/// Which tensors of two safetensors files differ, and by how much for float32 ones, so that rounding
/// noise can be told from a real change.
fn tensor_drift(old: &[u8], new: &[u8]) -> String {
    let (old, new) = match (SafeTensors::deserialize(old), SafeTensors::deserialize(new)) {
        (Ok(old), Ok(new)) => (old, new),
        _ => return "not readable as safetensors".to_string(),
    };
    let names: BTreeSet<&str> = old.names().into_iter().chain(new.names()).collect();
    let mut parts = Vec::new();
    for name in names {
        match (old.tensor(name), new.tensor(name)) {
            (Ok(before), Ok(after)) if before.data() != after.data() => {
                if before.dtype() == Dtype::F32
                    && after.dtype() == Dtype::F32
                    && before.shape() == after.shape()
                {
                    parts.push(format!(
                        "{name}: max |diff| {:e}",
                        max_abs_diff(before.data(), after.data())
                    ));
                } else {
                    parts.push(format!(
                        "{name}: {:?} {:?} -> {:?} {:?}",
                        before.dtype(),
                        before.shape(),
                        after.dtype(),
                        after.shape()
                    ));
                }
            }
            (Ok(_), Ok(_)) => {}
            (Ok(_), Err(_)) => parts.push(format!("{name}: no longer written")),
            (Err(_), _) => parts.push(format!("{name}: new")),
        }
    }
    if parts.is_empty() {
        // Same tensors, same bytes: the header (order or metadata) changed.
        return "same tensors, different header".to_string();
    }
    parts.join("; ")
}

/// Largest absolute difference between two little-endian float32 buffers of equal length.
fn max_abs_diff(before: &[u8], after: &[u8]) -> f32 {
    let floats = |bytes: &[u8]| -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect()
    };
    floats(before)
        .iter()
        .zip(floats(after))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Every file under `dir`, relative to it, sorted.
fn list_files(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    let mut files = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries =
            fs::read_dir(&folder).with_context(|| format!("listing {}", folder.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .expect("walked from dir")
                    .to_path_buf();
                files.insert(relative);
            }
        }
    }
    Ok(files)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder under the system temp dir, emptied first.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "oxformer-xtask-fixtures-{}-{name}",
            std::process::id()
        ));
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(root: &Path, relative: &str, bytes: &[u8]) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn compare_trees_lists_drifting_missing_and_unexpected_files() {
        let committed = scratch("committed");
        let fresh = scratch("fresh");
        for root in [&committed, &fresh] {
            write(root, "models/bert/config.json", b"{}");
        }
        write(&committed, "models/bert/reference.json", b"old");
        write(&fresh, "models/bert/reference.json", b"new!");
        write(&committed, "pipelines/stale.json", b"[]");
        write(&fresh, "pipelines/new.json", b"[]");
        write(&committed, "README.md", b"written by hand");

        let drift = compare_trees(&committed, &fresh).unwrap();

        assert_eq!(
            drift,
            vec![
                "drifts: fixtures/models/bert/reference.json (3 bytes committed, 4 regenerated)",
                "not committed: fixtures/pipelines/new.json",
                "not regenerated (stale?): fixtures/pipelines/stale.json",
            ]
        );
        fs::remove_dir_all(committed).unwrap();
        fs::remove_dir_all(fresh).unwrap();
    }

    fn safetensors_bytes(tensors: &[(&str, &[f32])]) -> Vec<u8> {
        let buffers: Vec<(String, Vec<u8>, usize)> = tensors
            .iter()
            .map(|(name, values)| {
                let bytes = values
                    .iter()
                    .flat_map(|value| value.to_le_bytes())
                    .collect();
                (name.to_string(), bytes, values.len())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = buffers
            .iter()
            .map(|(name, bytes, len)| {
                let view =
                    safetensors::tensor::TensorView::new(Dtype::F32, vec![*len], bytes).unwrap();
                (name.clone(), view)
            })
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn tensor_drift_names_the_changed_tensors_and_their_largest_difference() {
        let old = safetensors_bytes(&[("logits", &[1.0, 2.0]), ("same", &[0.5]), ("gone", &[1.0])]);
        let new =
            safetensors_bytes(&[("logits", &[1.0, 2.5]), ("same", &[0.5]), ("added", &[1.0])]);
        assert_eq!(
            tensor_drift(&old, &new),
            "added: new; gone: no longer written; logits: max |diff| 5e-1"
        );
    }

    #[test]
    fn compare_trees_accepts_identical_trees() {
        let committed = scratch("same-committed");
        let fresh = scratch("same-fresh");
        for root in [&committed, &fresh] {
            write(root, "generation/gpt2/greedy.json", b"{\"a\": 1}\n");
        }
        assert!(compare_trees(&committed, &fresh).unwrap().is_empty());
        fs::remove_dir_all(committed).unwrap();
        fs::remove_dir_all(fresh).unwrap();
    }
}
