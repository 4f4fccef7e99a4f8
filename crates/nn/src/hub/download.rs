//! Downloading a model snapshot with hf-hub's blocking (ureq, rustls) client, as huggingface_hub's
//! `snapshot_download` does: the revision is resolved to a commit by the listing
//! (`GET /api/models/{id}/revision/{revision}`), then every needed file is fetched at that commit
//! (`GET /{id}/resolve/{commit}/{file}`, whose `X-Linked-Etag`/`ETag` names the blob).
//!
//! hf-hub writes each blob to `<blob>.part` and renames it when the body ends; a file whose size
//! is not the one the hub announced is deleted here (hf-hub does not compare), so a cut download
//! never leaves a complete-looking file. `config.json` comes last: a snapshot that has it was
//! downloaded whole (see [`super::is_complete_snapshot`]).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use hf_hub::api::Progress;
use hf_hub::api::sync::{Api, ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use super::{HubSettings, is_commit_hash, is_needed_file, repo_folder, shard_names};
use crate::checkpoint::{WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
use crate::error::{Error, Result};

/// Downloads what the snapshot of `id` at `revision` lacks into the hub cache `hub`, and
/// returns the snapshot folder.
pub(super) fn snapshot(
    settings: &HubSettings,
    hub: &Path,
    id: &str,
    revision: &str,
) -> Result<PathBuf> {
    let fetcher = Fetcher::new(settings, hub, id, revision)?;
    let listing = "the repository listing";
    let info = fetcher
        .guarded(listing, || {
            fetcher
                .api
                .repo(Repo::with_revision(
                    id.to_string(),
                    RepoType::Model,
                    revision.to_string(),
                ))
                .info()
        })
        .map_err(|error| fetcher.error(listing, error))?;
    let commit = info.sha;
    if !is_commit_hash(&commit) {
        return Err(fetcher.failed(listing, format!("`{commit}` is not a commit hash")));
    }
    let remote: Vec<String> = info
        .siblings
        .into_iter()
        .map(|sibling| sibling.rfilename)
        .collect();
    let repo_dir = hub.join(repo_folder(id));
    let snapshot = repo_dir.join("snapshots").join(&commit);
    let repo = fetcher.api.repo(Repo::with_revision(
        id.to_string(),
        RepoType::Model,
        commit.clone(),
    ));

    let has = |name: &str| remote.iter().any(|file| file == name);
    if !has("config.json") {
        return Err(fetcher.failed(listing, "the repository has no config.json".to_string()));
    }
    let mut files: Vec<&str> = Vec::new();
    if has(WEIGHTS_INDEX_FILE) {
        let index = fetcher.fetch(&repo, &snapshot, WEIGHTS_INDEX_FILE)?;
        let bytes = std::fs::read(&index).map_err(|source| Error::Io {
            path: index.clone(),
            source,
        })?;
        let shards = shard_names(&bytes).ok_or_else(|| Error::InvalidShardIndex {
            path: index.clone(),
            reason: "not a shard index whose weight_map names .safetensors files".to_string(),
        })?;
        for shard in shards {
            let shard = remote.iter().find(|file| **file == shard).ok_or_else(|| {
                fetcher.failed(
                    WEIGHTS_INDEX_FILE,
                    format!("the index names {shard}, which the repository does not hold"),
                )
            })?;
            files.push(shard);
        }
    } else if !has(WEIGHTS_FILE) {
        let pickles: Vec<&String> = remote
            .iter()
            .filter(|file| file.ends_with(".bin") || file.ends_with(".pt"))
            .collect();
        let reason = if pickles.is_empty() {
            "the repository has no safetensors weights (model.safetensors or its index)".to_string()
        } else {
            format!(
                "the repository has only PyTorch pickle weights ({}), which oxformer never \
                 loads; use a revision with model.safetensors",
                pickles
                    .iter()
                    .map(|file| file.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(fetcher.failed(listing, reason));
    }
    files.extend(
        remote
            .iter()
            .map(String::as_str)
            .filter(|file| is_needed_file(file) && *file != "config.json"),
    );
    files.push("config.json");
    for file in files {
        fetcher.fetch(&repo, &snapshot, file)?;
    }

    // huggingface_hub's refs: `refs/<branch or tag>` holds the commit; a commit asked by its hash
    // has none (hf-hub wrote `refs/<commit>` for the downloads at the commit).
    let refs = repo_dir.join("refs");
    let _ = std::fs::remove_file(refs.join(&commit));
    if revision != commit {
        let reference = refs.join(revision);
        let written = reference
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&reference, &commit));
        written.map_err(|source| Error::Io {
            path: reference,
            source,
        })?;
    }
    Ok(snapshot)
}

/// One model's download: the client and what its errors name.
struct Fetcher<'a> {
    api: Api,
    settings: &'a HubSettings,
    id: &'a str,
    revision: &'a str,
}

impl<'a> Fetcher<'a> {
    fn new(settings: &'a HubSettings, hub: &Path, id: &'a str, revision: &'a str) -> Result<Self> {
        let api = ApiBuilder::from_cache(Cache::new(hub.to_path_buf()))
            .with_endpoint(settings.endpoint.clone())
            .with_token(settings.token.clone())
            .with_progress(false)
            .with_user_agent("oxformer", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|error| Error::Download {
                id: id.to_string(),
                file: "nothing yet".to_string(),
                endpoint: settings.endpoint.clone(),
                reason: format!("cannot start the HTTP client: {error}"),
            })?;
        Ok(Self {
            api,
            settings,
            id,
            revision,
        })
    }

    /// `snapshot/file`, downloaded unless it is there already (a snapshot's files are linked
    /// only once whole).
    fn fetch(&self, repo: &ApiRepo, snapshot: &Path, file: &str) -> Result<PathBuf> {
        let path = snapshot.join(file);
        if path.is_file() {
            return Ok(path);
        }
        let announced = Rc::new(Cell::new(None));
        let progress = Bar {
            bar: None,
            show: self.settings.progress,
            announced: Rc::clone(&announced),
        };
        let path = self
            .guarded(file, || repo.download_with_progress(file, progress))
            .map_err(|error| self.error(file, error))?;
        let found = std::fs::metadata(&path).map(|metadata| metadata.len()).ok();
        match (announced.get(), found) {
            (Some(size), Some(found)) if size as u64 == found => Ok(path),
            (announced, found) => {
                // Neither the link nor the blob may stay: a later run would take them as whole.
                if let Ok(blob) = std::fs::canonicalize(&path) {
                    let _ = std::fs::remove_file(blob);
                }
                let _ = std::fs::remove_file(&path);
                Err(self.failed(
                    file,
                    format!(
                        "received {} bytes where the hub announced {}; removed it, try again",
                        found.map_or("no".to_string(), |found| found.to_string()),
                        announced.map_or("a size".to_string(), |size| size.to_string())
                    ),
                ))
            }
        }
    }

    /// Runs a call of hf-hub, turning a panic in it (it asserts on some server answers) into an
    /// error: no panic crosses oxformer's API.
    fn guarded<T>(
        &self,
        file: &str,
        call: impl FnOnce() -> std::result::Result<T, ApiError>,
    ) -> std::result::Result<T, CallError> {
        match catch_unwind(AssertUnwindSafe(call)) {
            Ok(result) => result.map_err(CallError::Api),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unexpected answer".to_string());
                Err(CallError::Panic(format!("{file}: {message}")))
            }
        }
    }

    fn failed(&self, file: &str, reason: String) -> Error {
        Error::Download {
            id: self.id.to_string(),
            file: file.to_string(),
            endpoint: self.settings.endpoint.clone(),
            reason,
        }
    }

    fn error(&self, file: &str, error: impl Into<CallError>) -> Error {
        let error = error.into();
        if let CallError::Api(ApiError::RequestError(request)) = &error
            && let ureq::Error::StatusCode(status @ (401 | 403 | 404)) = **request
        {
            let what = if file == "the repository listing" {
                "no such model or revision".to_string()
            } else {
                format!("no file {file}")
            };
            return Error::RemoteNotFound {
                id: self.id.to_string(),
                revision: self.revision.to_string(),
                what,
                endpoint: self.settings.endpoint.clone(),
                status,
            };
        }
        let reason = match error {
            CallError::Api(ApiError::LockAcquisition(lock)) => format!(
                "another process is downloading it (lock {} held for 5 s)",
                lock.display()
            ),
            CallError::Api(error) => error.to_string(),
            CallError::Panic(message) => message,
        };
        self.failed(file, reason)
    }
}

enum CallError {
    Api(ApiError),
    Panic(String),
}

impl From<ApiError> for CallError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

/// hf-hub's progress callbacks: records the size the hub announced, and draws a bar on stderr
/// when asked (the caller asks only when stderr is a terminal).
struct Bar {
    bar: Option<indicatif::ProgressBar>,
    show: bool,
    announced: Rc<Cell<Option<usize>>>,
}

impl Progress for Bar {
    fn init(&mut self, size: usize, filename: &str) {
        self.announced.set(Some(size));
        if self.show && self.bar.is_none() {
            let bar = indicatif::ProgressBar::new(size as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg:30} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
            ) {
                bar.set_style(style);
            }
            bar.set_message(filename.to_string());
            self.bar = Some(bar);
        }
    }

    fn update(&mut self, size: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(size as u64);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
