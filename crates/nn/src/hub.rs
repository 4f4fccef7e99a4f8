//! Model ids: a local folder, or `org/name` / `name` from the Hugging Face cache, downloaded into
//! it first when the `hub` feature is on.
//!
//! The cache layout is huggingface_hub's (`file_download.py`), so Python and oxformer share one
//! cache: `<hub>/models--org--name/refs/<revision>` holds a commit hash, the files are symlinks in
//! `<hub>/models--org--name/snapshots/<hash>/` to `<hub>/models--org--name/blobs/<etag>`.
//! `<hub>` is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`.
//!
//! With the `hub` feature, a model that is not complete in the cache is downloaded from
//! `$HF_ENDPOINT` (default `https://huggingface.co`) with `$HF_TOKEN` (else the token file
//! `huggingface-cli login` wrote), unless `$HF_HUB_OFFLINE` is set. Only the files a model
//! folder needs are fetched (see [`is_needed_file`]): safetensors weights, never pickles.

#[cfg(feature = "hub")]
mod download;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checkpoint::{WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
use crate::error::{Error, Result};

/// The branch a model id means when no revision is given.
pub const DEFAULT_REVISION: &str = "main";

/// The hub's address when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// huggingface_hub's `HF_HUB_DOWNLOAD_TIMEOUT` and `HF_HUB_ETAG_TIMEOUT` when unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where models are looked up and downloaded, as the environment sets it (see the module docs).
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Hugging Face hub caches, searched in order; downloads go to the first.
    pub hub_dirs: Vec<PathBuf>,
    /// A folder holding `models/<id>` (`$OXFORMER_CACHE`, where `cargo xtask fetch` puts models).
    pub oxformer_cache: Option<PathBuf>,
    /// The hub's address, without a trailing `/` (`$HF_ENDPOINT`).
    pub endpoint: String,
    /// The access token (`$HF_TOKEN`, else the token file).
    pub token: Option<String>,
    /// Never make a request (`$HF_HUB_OFFLINE`).
    pub offline: bool,
    /// Draw a progress bar while downloading (when stderr is a terminal).
    pub progress: bool,
    /// How long connecting, or waiting for any data, may take before a download fails
    /// (`$HF_HUB_DOWNLOAD_TIMEOUT` seconds, default 10, as huggingface_hub).
    pub download_timeout: Duration,
    /// How long a file's metadata request may take (`$HF_HUB_ETAG_TIMEOUT` seconds, default 10).
    pub etag_timeout: Duration,
}

impl HubSettings {
    /// The settings the process environment gives.
    pub fn from_env() -> Self {
        let mut settings = Self::from_vars(|name| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        });
        settings.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        settings
    }

    /// The settings that the variables `var` returns give (`var(name)` is `None` for an unset or
    /// empty variable), as huggingface_hub's `constants.py` reads them. No progress bar.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let path = |name: &str| var(name).map(PathBuf::from);
        let hf_home = path("HF_HOME").or_else(|| {
            path("XDG_CACHE_HOME")
                .or_else(|| path("HOME").map(|home| home.join(".cache")))
                .map(|cache| cache.join("huggingface"))
        });
        let mut hub_dirs = Vec::new();
        if let Some(hub) = path("HF_HUB_CACHE").or_else(|| path("HUGGINGFACE_HUB_CACHE")) {
            hub_dirs.push(hub);
        }
        if let Some(home) = &hf_home {
            let hub = home.join("hub");
            if !hub_dirs.contains(&hub) {
                hub_dirs.push(hub);
            }
        }
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                let file = path("HF_TOKEN_PATH")
                    .or_else(|| hf_home.as_ref().map(|home| home.join("token")))?;
                let token = std::fs::read_to_string(file).ok()?;
                Some(token.trim().to_string()).filter(|token| !token.is_empty())
            })
            .map(|token| token.trim().to_string());
        // huggingface_hub's constants.py: a number of seconds, 10 when unset.
        let seconds = |name: &str| {
            var(name)
                .and_then(|value| value.trim().parse::<f64>().ok())
                .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64)
        };
        let is_true = |name: &str| {
            var(name).is_some_and(|value| {
                matches!(
                    value.trim().to_ascii_uppercase().as_str(),
                    "1" | "ON" | "YES" | "TRUE"
                )
            })
        };
        Self {
            hub_dirs,
            oxformer_cache: path("OXFORMER_CACHE"),
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
                .trim_end_matches('/')
                .to_string(),
            token,
            offline: is_true("HF_HUB_OFFLINE") || is_true("TRANSFORMERS_OFFLINE"),
            progress: false,
            download_timeout: seconds("HF_HUB_DOWNLOAD_TIMEOUT"),
            etag_timeout: seconds("HF_HUB_ETAG_TIMEOUT"),
        }
    }

    /// The folder of model `id` at `revision` (a branch, tag or commit hash; `None`: `main`):
    /// `id` itself when it is an existing folder; else its snapshot in the first hub cache that
    /// holds it complete (see [`is_complete_snapshot`]); else `$OXFORMER_CACHE/models/<id>`
    /// (for the default revision); else, with the `hub` feature and not offline, the snapshot
    /// downloaded into the first hub cache. A cached second run makes no request.
    ///
    /// # Errors
    /// [`Error::InvalidModelId`] for an id that is neither a folder nor of the form `name` /
    /// `org/name`, or a malformed revision; [`Error::OfflineNotCached`] when offline and the
    /// model is not cached; [`Error::ModelNotFound`] when it is not cached and this build cannot
    /// download; [`Error::RemoteNotFound`] / [`Error::Download`] when the download fails.
    pub fn resolve(&self, id: &str, revision: Option<&str>) -> Result<PathBuf> {
        let as_path = Path::new(id);
        if as_path.is_dir() {
            return Ok(as_path.to_path_buf());
        }
        check_repo_id(id)?;
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        check_revision(id, revision)?;
        let mut searched = vec![as_path.to_path_buf()];
        let mut incomplete = None;
        for hub in &self.hub_dirs {
            let repo = hub.join(repo_folder(id));
            searched.push(repo.clone());
            if let Some(snapshot) = cached_snapshot(&repo, revision) {
                if is_complete_snapshot(&snapshot) {
                    return Ok(snapshot);
                }
                incomplete.get_or_insert(snapshot);
            }
        }
        if revision == DEFAULT_REVISION
            && let Some(cache) = &self.oxformer_cache
        {
            let folder = cache.join("models").join(id);
            if folder.is_dir() {
                return Ok(folder);
            }
            searched.push(folder);
        }
        if self.offline {
            // Offline, a partial snapshot is all there is: let loading name what it lacks.
            return incomplete.ok_or_else(|| Error::OfflineNotCached {
                id: id.to_string(),
                revision: revision.to_string(),
                searched,
            });
        }
        #[cfg(feature = "hub")]
        {
            let Some(hub) = self.hub_dirs.first() else {
                return Err(Error::InvalidModelId {
                    id: id.to_string(),
                    reason: "no Hugging Face cache to download into: set HF_HOME or HF_HUB_CACHE"
                        .to_string(),
                });
            };
            download::snapshot(self, hub, id, revision)
        }
        #[cfg(not(feature = "hub"))]
        {
            incomplete.ok_or_else(|| Error::ModelNotFound {
                id: id.to_string(),
                searched,
            })
        }
    }
}

/// The folder of model `id` (see [`HubSettings::resolve`]), with the settings of the environment
/// and the default revision.
///
/// # Errors
/// As [`HubSettings::resolve`].
pub fn resolve_model(id: &str) -> Result<PathBuf> {
    HubSettings::from_env().resolve(id, None)
}

/// [`resolve_model`] at `revision` (a branch, tag or commit hash).
///
/// # Errors
/// As [`HubSettings::resolve`].
pub fn resolve_model_at(id: &str, revision: &str) -> Result<PathBuf> {
    HubSettings::from_env().resolve(id, Some(revision))
}

/// [`resolve_model`] in explicit places, offline: `hub_dirs` are Hugging Face hub caches
/// (searched in order), `oxformer_cache` a folder holding `models/<id>`. A cached snapshot is
/// used even when it lacks files.
///
/// # Errors
/// [`Error::ModelNotFound`] listing every place searched; [`Error::InvalidModelId`] as
/// [`HubSettings::resolve`], or for a cache entry whose `refs/main` names a snapshot that is not
/// there.
pub fn resolve_model_in(
    id: &str,
    hub_dirs: &[PathBuf],
    oxformer_cache: Option<&Path>,
) -> Result<PathBuf> {
    let as_path = Path::new(id);
    if as_path.is_dir() {
        return Ok(as_path.to_path_buf());
    }
    check_repo_id(id)?;
    let mut searched = vec![as_path.to_path_buf()];
    for hub in hub_dirs {
        let repo = hub.join(repo_folder(id));
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
    HubSettings::from_env().hub_dirs
}

/// Whether a snapshot folder holds a usable model: `config.json`, the safetensors weights
/// (`model.safetensors`, or the shard index and every shard it names) and a tokenizer file.
/// oxformer downloads `config.json` last, so its own interrupted downloads never look complete;
/// the other checks catch folders that Python filled only in part (`AutoConfig` alone).
pub fn is_complete_snapshot(snapshot: &Path) -> bool {
    let has = |name: &str| snapshot.join(name).is_file();
    if !has("config.json") || !TOKENIZER_FILES.iter().any(|name| has(name)) {
        return false;
    }
    if has(WEIGHTS_FILE) {
        return true;
    }
    let Ok(index) = std::fs::read(snapshot.join(WEIGHTS_INDEX_FILE)) else {
        return false;
    };
    match shard_names(&index) {
        Some(shards) => shards.iter().all(|shard| has(shard)),
        None => false,
    }
}

/// Files of a tokenizer folder: the fast tokenizer's, the slow ones' vocabularies (WordPiece,
/// BPE, sentencepiece) and their settings.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "source.spm",
    "target.spm",
];

/// Settings files at the root of a model folder, beside the tokenizer's.
const ROOT_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    WEIGHTS_FILE,
    WEIGHTS_INDEX_FILE,
    // sentence-transformers
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
];

/// Whether `file` (a path in a model repository, `/`-separated) is one oxformer loads, apart from
/// the weight shards that the index names: config.json, generation_config.json, the safetensors
/// weights and their index, the tokenizer's files, and the JSON, text and safetensors files in
/// sentence-transformers module folders (`1_Pooling/config.json`, `2_Dense/model.safetensors`).
/// Never pickles (`*.bin`, `*.pt`, `*.pkl`), nor other frameworks' exports (`onnx/`, `*.h5`).
pub fn is_needed_file(file: &str) -> bool {
    match file.split_once('/') {
        None => ROOT_FILES.contains(&file) || TOKENIZER_FILES.contains(&file),
        Some((folder, rest)) => {
            // sentence-transformers names its module folders `<index>_<Module>`
            let is_module_folder = folder.split_once('_').is_some_and(|(index, name)| {
                !index.is_empty()
                    && index.bytes().all(|byte| byte.is_ascii_digit())
                    && !name.is_empty()
            });
            is_module_folder
                && !rest.contains('/')
                && [".json", ".txt", ".safetensors"]
                    .iter()
                    .any(|extension| rest.ends_with(extension))
        }
    }
}

/// The shard files a `model.safetensors.index.json` names (sorted, without repeats), if it is an
/// index whose names are plain file names.
pub fn shard_names(index: &[u8]) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let index: Index = serde_json::from_slice(index).ok()?;
    let mut shards: Vec<String> = index.weight_map.into_values().collect();
    shards.sort();
    shards.dedup();
    let plain = |name: &String| {
        !name.is_empty()
            && !name.contains(['/', '\\'])
            && name != "."
            && name != ".."
            && name.ends_with(".safetensors")
    };
    shards.iter().all(plain).then_some(shards)
}

fn repo_folder(id: &str) -> String {
    format!("models--{}", id.replace('/', "--"))
}

/// The snapshot of `revision` in a cached repository: the one `refs/<revision>` names, the
/// folder of that name when `revision` is a commit hash, and for `main` with no `refs/main`
/// the only snapshot if there is one.
fn cached_snapshot(repo: &Path, revision: &str) -> Option<PathBuf> {
    let snapshots = repo.join("snapshots");
    if let Ok(commit) = std::fs::read_to_string(repo.join("refs").join(revision)) {
        let commit = commit.trim();
        if is_commit_hash(commit) {
            let snapshot = snapshots.join(commit);
            return snapshot.is_dir().then_some(snapshot);
        }
        return None;
    }
    if is_commit_hash(revision) {
        let snapshot = snapshots.join(revision);
        return snapshot.is_dir().then_some(snapshot);
    }
    if revision == DEFAULT_REVISION {
        return snapshot_of("", repo).ok();
    }
    None
}

fn is_commit_hash(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// The snapshot `refs/main` points at; with no `refs/main`, the only snapshot if there is one.
fn snapshot_of(id: &str, repo: &Path) -> Result<PathBuf> {
    let invalid = |reason: String| Error::InvalidModelId {
        id: id.to_string(),
        reason,
    };
    let snapshots = repo.join("snapshots");
    let refs_main = repo.join("refs").join(DEFAULT_REVISION);
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

fn check_repo_id(id: &str) -> Result<()> {
    if is_repo_id(id) {
        return Ok(());
    }
    if looks_like_path(id) {
        return Err(Error::ModelNotFound {
            id: id.to_string(),
            searched: vec![PathBuf::from(id)],
        });
    }
    Err(Error::InvalidModelId {
        id: id.to_string(),
        reason: "not a folder, and not a model id of the form `name` or `org/name` \
                 (letters, digits, `-`, `_`, `.`)"
            .to_string(),
    })
}

/// A branch, tag or commit: no empty, `.` or `..` part, nothing a path or URL would misread.
fn check_revision(id: &str, revision: &str) -> Result<()> {
    let valid = !revision.is_empty()
        && revision.len() <= 256
        && revision
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidModelId {
            id: id.to_string(),
            reason: format!(
                "revision `{revision}` is not a branch, tag or commit hash (letters, digits, \
                 `-`, `_`, `.`, `/`)"
            ),
        })
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
