//! Downloading a model snapshot as huggingface_hub's `snapshot_download` does: the revision is
//! resolved to a commit by the listing (`GET /api/models/{id}/revision/{revision}`, through
//! hf-hub's request), then every needed file is fetched at that commit
//! (`GET /{id}/resolve/{commit}/{file}`, whose `X-Linked-Etag`/`ETag` names the blob).
//!
//! The files are fetched here on a ureq agent of our own rather than by hf-hub's
//! `download_with_progress`, which cannot be given timeouts, leaves `<blob>.lock` files beside the
//! blobs, and fails for good on a partial file larger than the remote one. As huggingface_hub's
//! `file_download.py`:
//! - each blob is written to `blobs/<etag>.incomplete`, resumed with a `Range` request, checked
//!   against the size the hub announced, then renamed; a partial file larger than the remote one
//!   (the file changed, or another writer) is started again;
//! - one download per blob at a time, under `.locks/<repo folder>/<etag>.lock` (the lock files
//!   Python uses, so both exclude each other; they stay, as Python's do);
//! - connections and reads time out after `HF_HUB_DOWNLOAD_TIMEOUT` seconds (default 10), the
//!   metadata request after `HF_HUB_ETAG_TIMEOUT` (default 10).
//!
//! `config.json` comes last: a snapshot that has it was downloaded whole (see
//! [`super::is_complete_snapshot`]).

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::api::sync::{Api, ApiBuilder};
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
    let info = fetcher.listing()?;
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
    let repo = Target {
        commit: &commit,
        repo_dir: &repo_dir,
        locks: &hub.join(".locks").join(repo_folder(id)),
        snapshot: &snapshot,
    };

    let has = |name: &str| remote.iter().any(|file| file == name);
    if !has("config.json") {
        return Err(fetcher.failed(listing, "the repository has no config.json".to_string()));
    }
    let mut files: Vec<&str> = Vec::new();
    if has(WEIGHTS_INDEX_FILE) {
        let index = fetcher.fetch(&repo, WEIGHTS_INDEX_FILE)?;
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
        fetcher.fetch(&repo, file)?;
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

/// Where a snapshot's files go.
struct Target<'a> {
    commit: &'a str,
    /// `models--org--name`
    repo_dir: &'a Path,
    /// `.locks/models--org--name`
    locks: &'a Path,
    /// `snapshots/<commit>`
    snapshot: &'a Path,
}

/// What the metadata request of a file tells.
struct Remote {
    /// The blob's name: `X-Linked-Etag` (LFS files) or `ETag`, unquoted.
    etag: String,
    size: u64,
    /// Where the body is: the CDN's address for LFS files, the resolve URL otherwise.
    location: String,
}

/// One model's download: the client and what its errors name.
struct Fetcher<'a> {
    /// hf-hub's client, for the listing.
    api: Api,
    /// Ours, for the files: no automatic redirects (the metadata request must see the first
    /// answer's headers), connect and per-read timeouts.
    agent: ureq::Agent,
    settings: &'a HubSettings,
    id: &'a str,
    revision: &'a str,
}

/// Redirects followed by hand before giving up.
const MAX_REDIRECTS: usize = 5;

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
        let timeout = Some(settings.download_timeout);
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(timeout)
            .timeout_per_read(timeout)
            .timeout_recv_response(timeout)
            .build()
            .into();
        Ok(Self {
            api,
            agent,
            settings,
            id,
            revision,
        })
    }

    /// The repository listing at the revision (its commit and files).
    fn listing(&self) -> Result<hf_hub::api::RepoInfo> {
        let listing = "the repository listing";
        let timeout = Some(self.settings.download_timeout);
        let request = self
            .api
            .repo(Repo::with_revision(
                self.id.to_string(),
                RepoType::Model,
                self.revision.to_string(),
            ))
            .info_request()
            .config()
            .timeout_connect(timeout)
            .timeout_per_read(timeout)
            .timeout_recv_response(timeout)
            .build();
        let mut response = request
            .call()
            .map_err(|error| self.http_error(listing, error))?;
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|error| self.http_error(listing, error))?;
        serde_json::from_str(&body)
            .map_err(|error| self.failed(listing, format!("not a repository listing: {error}")))
    }

    /// `snapshot/file`, downloaded unless it is there already (a snapshot's files are linked
    /// only once whole).
    fn fetch(&self, target: &Target<'_>, file: &str) -> Result<PathBuf> {
        let path = target.snapshot.join(file);
        if path.is_file() {
            return Ok(path);
        }
        let remote = self.metadata(target, file)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let blobs = target.repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
        std::fs::create_dir_all(target.locks).map_err(io(target.locks))?;
        let lock_path = target.locks.join(format!("{}.lock", remote.etag));
        let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
        // Another process (oxformer or Python) downloading the same blob: wait for it.
        lock.lock().map_err(io(&lock_path))?;
        let blob = blobs.join(&remote.etag);
        let whole = std::fs::metadata(&blob).is_ok_and(|found| found.len() == remote.size);
        if !whole {
            // What hf-hub (oxformer before) left for this blob: its lock and partial file.
            for leftover in ["lock", "part"] {
                let _ = std::fs::remove_file(blobs.join(format!("{}.{leftover}", remote.etag)));
            }
            let partial = blobs.join(format!("{}.incomplete", remote.etag));
            self.download(file, &remote, &partial)?;
            std::fs::rename(&partial, &blob).map_err(io(&blob))?;
        }
        drop(lock);
        link(&blob, &path, file, &remote.etag).map_err(io(&path))?;
        Ok(path)
    }

    /// `GET resolve/{commit}/{file}` with `Range: bytes=0-0` (huggingface_hub's
    /// `get_hf_file_metadata`): the blob's etag, its size, and where its body is.
    fn metadata(&self, target: &Target<'_>, file: &str) -> Result<Remote> {
        let mut url = format!(
            "{}/{}/resolve/{}/{file}",
            self.settings.endpoint, self.id, target.commit
        );
        let mut etag = None;
        let mut size = None;
        for _ in 0..=MAX_REDIRECTS {
            let response = self
                .get(&url, "bytes=0-0", Some(self.settings.etag_timeout))
                .map_err(|error| self.http_error(file, error))?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_string)
            };
            let status = response.status().as_u16();
            if status >= 400 {
                return Err(self.status_error(file, status));
            }
            etag = etag.or_else(|| header("x-linked-etag").or_else(|| header("etag")));
            size = size.or_else(|| header("x-linked-size").and_then(|size| size.parse().ok()));
            if (300..400).contains(&status) {
                let location = header("location")
                    .ok_or_else(|| self.failed(file, format!("a {status} without Location")))?;
                url = self.absolute(&url, &location);
                if size.is_some() && etag.is_some() {
                    break;
                }
                continue;
            }
            size = size.or_else(|| {
                header("content-range")?
                    .rsplit('/')
                    .next()?
                    .trim()
                    .parse()
                    .ok()
            });
            break;
        }
        let etag = etag
            .map(|etag| etag.trim_start_matches("W/").replace('"', ""))
            .filter(|etag| {
                !etag.is_empty() && etag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            .ok_or_else(|| self.failed(file, "the hub sent no usable ETag".to_string()))?;
        let size =
            size.ok_or_else(|| self.failed(file, "the hub did not say its size".to_string()))?;
        Ok(Remote {
            etag,
            size,
            location: url,
        })
    }

    /// The body of `remote` into `partial`, resumed from what it holds; its size checked.
    fn download(&self, file: &str, remote: &Remote, partial: &Path) -> Result<()> {
        let io = |source| Error::Io {
            path: partial.to_path_buf(),
            source,
        };
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(partial)
            .map_err(io)?;
        let mut start = out.metadata().map_err(io)?.len();
        if start > remote.size {
            // Larger than the remote file: not a prefix of it. Start again.
            out.set_len(0).map_err(io)?;
            start = 0;
        }
        if start < remote.size {
            let mut url = remote.location.clone();
            let mut response = None;
            for _ in 0..=MAX_REDIRECTS {
                let answer = self
                    .get(&url, &format!("bytes={start}-"), None)
                    .map_err(|error| self.http_error(file, error))?;
                let status = answer.status().as_u16();
                match status {
                    300..=399 => {
                        let location = answer
                            .headers()
                            .get("location")
                            .and_then(|value| value.to_str().ok())
                            .ok_or_else(|| {
                                self.failed(file, format!("a {status} without Location"))
                            })?;
                        url = self.absolute(&url, location);
                    }
                    400.. => return Err(self.status_error(file, status)),
                    _ => {
                        response = Some(answer);
                        break;
                    }
                }
            }
            let response =
                response.ok_or_else(|| self.failed(file, "too many redirects".to_string()))?;
            let ranged = response.status().as_u16() == 206
                && response
                    .headers()
                    .get("content-range")
                    .and_then(|value| value.to_str().ok())
                    .is_some_and(|range| range.starts_with(&format!("bytes {start}-")));
            if !ranged && start > 0 {
                // The whole file came back: write it from the start.
                out.set_len(0).map_err(io)?;
                out.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
                start = 0;
            }
            let mut bar = self.bar(file, remote.size, start);
            let mut reader = response.into_body().into_reader();
            let mut buffer = vec![0u8; 1 << 16];
            loop {
                let read = match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        return Err(self.failed(file, self.describe_read_error(&error)));
                    }
                };
                out.write_all(&buffer[..read]).map_err(io)?;
                if let Some(bar) = &mut bar {
                    bar.inc(read as u64);
                }
            }
            out.flush().map_err(io)?;
            if let Some(bar) = bar {
                bar.finish();
            }
        }
        let found = out.metadata().map_err(io)?.len();
        if found != remote.size {
            if found > remote.size {
                let _ = std::fs::remove_file(partial);
            }
            return Err(self.failed(
                file,
                format!(
                    "received {found} bytes where the hub announced {}; run again to resume",
                    remote.size
                ),
            ));
        }
        Ok(())
    }

    /// A GET of `url` with our headers (the token only to the hub's own host, as
    /// huggingface_hub drops it on redirects elsewhere); `timeout` bounds the whole call.
    fn get(
        &self,
        url: &str,
        range: &str,
        timeout: Option<Duration>,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut request = self.agent.get(url).header("Range", range).header(
            "User-Agent",
            format!("oxformer/{}", env!("CARGO_PKG_VERSION")),
        );
        if let Some(token) = &self.settings.token
            && same_origin(url, &self.settings.endpoint)
        {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(timeout) = timeout {
            request = request.config().timeout_per_call(Some(timeout)).build();
        }
        request.call()
    }

    /// `location` (absolute, or a path on the host of `base`) as an absolute URL.
    fn absolute(&self, base: &str, location: &str) -> String {
        if location.contains("://") {
            return location.to_string();
        }
        let origin_end = base
            .find("://")
            .and_then(|scheme| base[scheme + 3..].find('/').map(|path| scheme + 3 + path))
            .unwrap_or(base.len());
        format!("{}{location}", &base[..origin_end])
    }

    fn bar(&self, file: &str, size: u64, start: u64) -> Option<indicatif::ProgressBar> {
        if !self.settings.progress {
            return None;
        }
        let bar = indicatif::ProgressBar::new(size);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:30} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
        ) {
            bar.set_style(style);
        }
        bar.set_message(file.to_string());
        bar.set_position(start);
        Some(bar)
    }

    fn describe_read_error(&self, error: &std::io::Error) -> String {
        if error.kind() == std::io::ErrorKind::TimedOut || error.to_string().contains("timeout") {
            format!(
                "no data for {} s (HF_HUB_DOWNLOAD_TIMEOUT); run again to resume",
                self.settings.download_timeout.as_secs_f64()
            )
        } else {
            format!("the connection broke: {error}; run again to resume")
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

    fn status_error(&self, file: &str, status: u16) -> Error {
        if matches!(status, 401 | 403 | 404) {
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
        self.failed(file, format!("the hub answered HTTP {status}"))
    }

    fn http_error(&self, file: &str, error: ureq::Error) -> Error {
        match error {
            ureq::Error::StatusCode(status) => self.status_error(file, status),
            ureq::Error::Timeout(what) => self.failed(
                file,
                format!(
                    "timed out ({what:?}) after {} s (HF_HUB_DOWNLOAD_TIMEOUT, HF_HUB_ETAG_TIMEOUT)",
                    self.settings.download_timeout.as_secs_f64()
                ),
            ),
            other => self.failed(file, other.to_string()),
        }
    }
}

/// Whether `url` is on the scheme, host and port of `endpoint`.
fn same_origin(url: &str, endpoint: &str) -> bool {
    let origin = |address: &str| {
        let rest = address.find("://").map_or(0, |scheme| scheme + 3);
        let end = address[rest..]
            .find('/')
            .map_or(address.len(), |path| rest + path);
        address[..end].to_ascii_lowercase()
    };
    origin(url) == origin(endpoint)
}

/// `snapshots/<commit>/<file>` → `../../blobs/<etag>` (relative, as huggingface_hub links); a
/// copy where links cannot be made.
fn link(blob: &Path, path: &Path, file: &str, etag: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if path.symlink_metadata().is_ok() {
        std::fs::remove_file(path)?;
    }
    #[cfg(unix)]
    {
        let _ = blob;
        let depth = file.split('/').count();
        let relative = format!("{}../../blobs/{etag}", "../".repeat(depth - 1));
        std::os::unix::fs::symlink(relative, path)
    }
    #[cfg(not(unix))]
    {
        let _ = (file, etag);
        std::fs::copy(blob, path).map(|_| ())
    }
}
