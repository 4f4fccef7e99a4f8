//! Model ids: a local folder, or `org/name` / `name` found offline in the Hugging Face cache.
//!
//! The cache layout is huggingface_hub's (`file_download.py`):
//! `<hub>/models--org--name/refs/main` holds a commit hash and the files are in
//! `<hub>/models--org--name/snapshots/<hash>/`. `<hub>` is `$HF_HUB_CACHE`, else `$HF_HOME/hub`,
//! else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. oxformer never
//! downloads: a model that is in none of these places is an error saying how to get it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The folder of model `id`: `id` itself when it is an existing folder, else the snapshot of
/// `refs/main` in the first Hugging Face cache (see the module docs) that holds it, else
/// `$OXFORMER_CACHE/models/<id>` (where `cargo xtask fetch` puts models).
///
/// # Errors
/// [`Error::ModelNotFound`] listing every place searched; [`Error::InvalidModelId`] for an id
/// that is neither a folder nor of the form `name` / `org/name`, or a cache entry whose
/// `refs/main` names a snapshot that is not there.
pub fn resolve_model(id: &str) -> Result<PathBuf> {
    resolve_model_in(id, &hub_cache_dirs(), oxformer_cache().as_deref())
}

/// [`resolve_model`] with explicit places: `hub_dirs` are Hugging Face hub caches (searched in
/// order), `oxformer_cache` a folder holding `models/<id>`.
///
/// # Errors
/// As [`resolve_model`].
pub fn resolve_model_in(
    id: &str,
    hub_dirs: &[PathBuf],
    oxformer_cache: Option<&Path>,
) -> Result<PathBuf> {
    let as_path = Path::new(id);
    if as_path.is_dir() {
        return Ok(as_path.to_path_buf());
    }
    let mut searched = vec![as_path.to_path_buf()];
    if !is_repo_id(id) {
        if looks_like_path(id) {
            return Err(Error::ModelNotFound {
                id: id.to_string(),
                searched,
            });
        }
        return Err(Error::InvalidModelId {
            id: id.to_string(),
            reason: "not a folder, and not a model id of the form `name` or `org/name` \
                     (letters, digits, `-`, `_`, `.`)"
                .to_string(),
        });
    }
    let repo_folder = format!("models--{}", id.replace('/', "--"));
    for hub in hub_dirs {
        let repo = hub.join(&repo_folder);
        searched.push(repo.clone());
        if repo.is_dir() {
            return snapshot_of(id, &repo);
        }
    }
    if let Some(cache) = oxformer_cache {
        let folder = cache.join("models").join(id);
        if folder.is_dir() {
            return Ok(folder);
        }
        searched.push(folder);
    }
    Err(Error::ModelNotFound {
        id: id.to_string(),
        searched,
    })
}

/// The Hugging Face hub caches named by the environment, most specific first.
pub fn hub_cache_dirs() -> Vec<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    let mut dirs = Vec::new();
    if let Some(hub) = var("HF_HUB_CACHE") {
        dirs.push(hub);
    }
    if let Some(home) = var("HF_HOME") {
        dirs.push(home.join("hub"));
    } else if let Some(xdg) = var("XDG_CACHE_HOME") {
        dirs.push(xdg.join("huggingface").join("hub"));
    } else if let Some(home) = var("HOME") {
        dirs.push(home.join(".cache").join("huggingface").join("hub"));
    }
    dirs
}

fn oxformer_cache() -> Option<PathBuf> {
    std::env::var_os("OXFORMER_CACHE")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// The snapshot `refs/main` points at; with no `refs/main`, the only snapshot if there is one.
fn snapshot_of(id: &str, repo: &Path) -> Result<PathBuf> {
    let invalid = |reason: String| Error::InvalidModelId {
        id: id.to_string(),
        reason,
    };
    let snapshots = repo.join("snapshots");
    let refs_main = repo.join("refs").join("main");
    match std::fs::read_to_string(&refs_main) {
        Ok(revision) => {
            let revision = revision.trim();
            if revision.is_empty() || revision.contains(['/', '\\']) || revision.starts_with('.') {
                return Err(invalid(format!(
                    "{} does not hold a commit hash",
                    refs_main.display()
                )));
            }
            let snapshot = snapshots.join(revision);
            if snapshot.is_dir() {
                Ok(snapshot)
            } else {
                Err(invalid(format!(
                    "{} names revision {revision}, but {} does not exist (incomplete download?)",
                    refs_main.display(),
                    snapshot.display()
                )))
            }
        }
        Err(_) => {
            let entries: Vec<PathBuf> = std::fs::read_dir(&snapshots)
                .map(|entries| {
                    entries
                        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                        .filter(|path| path.is_dir())
                        .collect()
                })
                .unwrap_or_default();
            match entries.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(invalid(format!(
                    "{} has no refs/main and no snapshot in {}",
                    repo.display(),
                    snapshots.display()
                ))),
                _ => Err(invalid(format!(
                    "{} has no refs/main and {} snapshots; pass the snapshot folder itself",
                    repo.display(),
                    entries.len()
                ))),
            }
        }
    }
}

/// `name` or `org/name`, each part of letters, digits, `-`, `_`, `.` (not `.` / `..`).
fn is_repo_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            !part.is_empty()
                && *part != "."
                && *part != ".."
                && !part.starts_with('-')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

fn looks_like_path(id: &str) -> bool {
    id.starts_with(['/', '.', '~']) || id.contains('\\') || id.split('/').count() > 2
}
