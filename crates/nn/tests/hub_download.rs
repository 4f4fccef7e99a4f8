//! Downloading model ids (the `hub` feature) from a stand-in of the Hugging Face hub's HTTP API
//! that each test serves on 127.0.0.1, with a fixture folder as the repository.
#![cfg(feature = "hub")]

#[path = "common/hub_stand_in.rs"]
mod stand_in;

use std::path::{Path, PathBuf};
use std::time::Duration;

use oxformer_nn::Error;
use oxformer_nn::hub::{HubSettings, is_complete_snapshot};
use stand_in::{COMMIT, ID, StandIn, sha256_hex};

fn settings(server: &StandIn, hub: &Path) -> HubSettings {
    HubSettings {
        hub_dirs: vec![hub.to_path_buf()],
        oxformer_cache: None,
        endpoint: server.endpoint.clone(),
        token: None,
        offline: false,
        progress: false,
        download_timeout: Duration::from_secs(10),
        etag_timeout: Duration::from_secs(10),
    }
}

fn fixture(file: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/models/bert-seqcls-single")
            .join(file),
    )
    .unwrap()
}

/// Every file under `dir` (links followed), relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

fn repo_dir(hub: &Path) -> PathBuf {
    hub.join("models--org--tiny-bert")
}

#[test]
fn a_first_run_downloads_only_the_needed_files_in_huggingface_hubs_layout() {
    let server = StandIn::start();
    let hub = tempfile::tempdir().unwrap();
    let folder = settings(&server, hub.path()).resolve(ID, None).unwrap();

    assert_eq!(folder, repo_dir(hub.path()).join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(repo_dir(hub.path()).join("refs/main")).unwrap(),
        COMMIT
    );
    assert_eq!(
        files_under(&folder),
        [
            "1_Pooling/config.json",
            "config.json",
            "model.safetensors",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.txt"
        ]
    );
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
    ] {
        let path = folder.join(file);
        assert!(path.is_symlink(), "{file} is a link into blobs/");
        assert_eq!(std::fs::read(&path).unwrap(), fixture(file), "{file}");
        let blob = std::fs::canonicalize(&path).unwrap();
        assert_eq!(
            blob.parent().unwrap(),
            std::fs::canonicalize(repo_dir(hub.path()).join("blobs")).unwrap()
        );
        assert_eq!(
            blob.file_name().unwrap().to_str().unwrap(),
            sha256_hex(&fixture(file))
        );
    }
    let requests = server.requests();
    assert_eq!(requests[0], format!("GET /api/models/{ID}/revision/main"));
    for never in ["pytorch_model.bin", "onnx", "reference"] {
        assert!(
            requests.iter().all(|request| !request.contains(never)),
            "fetched {never}: {requests:?}"
        );
    }
    assert!(requests.contains(&format!("GET /{ID}/resolve/{COMMIT}/model.safetensors")));
    assert!(is_complete_snapshot(&folder));
}

#[test]
fn a_cached_second_run_makes_no_request() {
    let server = StandIn::start();
    let hub = tempfile::tempdir().unwrap();
    let first = settings(&server, hub.path()).resolve(ID, None).unwrap();
    assert!(!server.requests().is_empty());
    let second = settings(&server, hub.path()).resolve(ID, None).unwrap();
    assert_eq!(first, second);
    assert_eq!(server.requests(), Vec::<String>::new());
}

#[test]
fn offline_mode_uses_the_cache_and_makes_no_request() {
    let server = StandIn::start();
    let hub = tempfile::tempdir().unwrap();
    let mut offline = settings(&server, hub.path());
    offline.offline = true;
    let error = offline.resolve(ID, None).unwrap_err();
    assert!(matches!(error, Error::OfflineNotCached { .. }), "{error}");
    assert!(error.to_string().contains("HF_HUB_OFFLINE"), "{error}");
    assert_eq!(server.requests(), Vec::<String>::new());

    let online = settings(&server, hub.path()).resolve(ID, None).unwrap();
    server.requests();
    assert_eq!(offline.resolve(ID, None).unwrap(), online);
    assert_eq!(server.requests(), Vec::<String>::new());
}

#[test]
fn an_unknown_id_or_revision_is_a_clear_error() {
    let server = StandIn::start();
    let hub = tempfile::tempdir().unwrap();
    let error = settings(&server, hub.path())
        .resolve("org/absent", None)
        .unwrap_err();
    assert!(
        matches!(error, Error::RemoteNotFound { status: 404, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("org/absent") && message.contains("404"),
        "{message}"
    );
    assert!(!hub.path().join("models--org--absent/snapshots").exists());

    let error = settings(&server, hub.path())
        .resolve(ID, Some("no-such-branch"))
        .unwrap_err();
    assert!(error.to_string().contains("no-such-branch"), "{error}");
}

#[test]
fn a_revision_is_resolved_to_its_commit_and_recorded_as_python_does() {
    let server = StandIn::start();
    let hub = tempfile::tempdir().unwrap();
    let by_tag = settings(&server, hub.path())
        .resolve(ID, Some("v1"))
        .unwrap();
    assert_eq!(by_tag, repo_dir(hub.path()).join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(repo_dir(hub.path()).join("refs/v1")).unwrap(),
        COMMIT
    );
    // a commit asked by its hash has no ref; it is found offline by its snapshot
    let mut offline = settings(&server, hub.path());
    offline.offline = true;
    assert_eq!(offline.resolve(ID, Some(COMMIT)).unwrap(), by_tag);
    assert!(!repo_dir(hub.path()).join("refs").join(COMMIT).exists());
}

#[test]
fn a_download_cut_in_the_middle_leaves_nothing_complete_looking_and_the_next_run_recovers() {
    let server = StandIn::start();
    let hub = tempfile::tempdir().unwrap();
    server.cut("model.safetensors");
    let error = settings(&server, hub.path()).resolve(ID, None).unwrap_err();
    assert!(matches!(error, Error::Download { .. }), "{error:?}");
    assert!(error.to_string().contains("model.safetensors"), "{error}");

    let snapshot = repo_dir(hub.path()).join("snapshots").join(COMMIT);
    assert!(!snapshot.join("model.safetensors").exists());
    assert!(!snapshot.join("config.json").exists());
    assert!(!is_complete_snapshot(&snapshot));
    let whole = sha256_hex(&fixture("model.safetensors"));
    assert!(
        !repo_dir(hub.path()).join("blobs").join(&whole).exists(),
        "the cut blob is not under its final name"
    );
    let mut offline = settings(&server, hub.path());
    offline.offline = true;
    assert!(
        !offline
            .resolve(ID, None)
            .is_ok_and(|folder| is_complete_snapshot(&folder))
    );

    server.requests();
    let folder = settings(&server, hub.path()).resolve(ID, None).unwrap();
    let resumed = format!("GET /cdn/{whole}");
    assert!(
        server.requests().contains(&resumed),
        "the second run fetched the weights"
    );
    assert_eq!(folder, snapshot);
    assert_eq!(
        std::fs::read(folder.join("model.safetensors")).unwrap(),
        fixture("model.safetensors")
    );
    assert!(is_complete_snapshot(&folder));
}

#[test]
fn settings_follow_huggingface_hubs_variables() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    };
    let settings = HubSettings::from_vars(vars(&[
        ("HF_HOME", "/h"),
        ("HF_HUB_CACHE", "/c"),
        ("HF_ENDPOINT", "http://127.0.0.1:9/"),
        ("HF_TOKEN", "hf_abc"),
        ("HF_HUB_OFFLINE", "1"),
    ]));
    assert_eq!(
        settings.hub_dirs,
        [PathBuf::from("/c"), PathBuf::from("/h/hub")]
    );
    assert_eq!(settings.endpoint, "http://127.0.0.1:9");
    assert_eq!(settings.token.as_deref(), Some("hf_abc"));
    assert!(settings.offline);

    let settings = HubSettings::from_vars(vars(&[("HOME", "/home/u"), ("HF_HUB_OFFLINE", "0")]));
    assert_eq!(
        settings.hub_dirs,
        [PathBuf::from("/home/u/.cache/huggingface/hub")]
    );
    assert_eq!(settings.endpoint, "https://huggingface.co");
    assert!(!settings.offline);
}

#[test]
fn only_needed_files_are_chosen() {
    use oxformer_nn::hub::is_needed_file;
    for needed in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "spiece.model",
        "sentencepiece.bpe.model",
        "modules.json",
        "1_Pooling/config.json",
        "2_Dense/model.safetensors",
    ] {
        assert!(is_needed_file(needed), "{needed}");
    }
    for not_needed in [
        "pytorch_model.bin",
        "2_Dense/pytorch_model.bin",
        "tf_model.h5",
        "onnx/model.onnx",
        "openvino/openvino_model.xml",
        "README.md",
        "1_Pooling/sub/config.json",
        "_x/config.json",
    ] {
        assert!(!is_needed_file(not_needed), "{not_needed}");
    }
}

#[test]
fn the_token_goes_with_every_request() {
    let server = StandIn::start();
    let hub = tempfile::tempdir().unwrap();
    let mut with_token = settings(&server, hub.path());
    with_token.token = Some("hf_test".to_string());
    with_token.resolve(ID, None).unwrap();
    let sent = server.authorizations();
    assert!(sent.len() > 3, "{sent:?}");
    assert!(
        sent.iter().all(|header| header == "Bearer hf_test"),
        "{sent:?}"
    );
}

/// Every file under `dir`, links not followed, relative, sorted (the cache's own entries).
fn entries_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.symlink_metadata().unwrap().is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn no_lock_or_partial_file_is_left_beside_the_blobs() {
    let server = StandIn::start();
    let hub = tempfile::tempdir().unwrap();
    settings(&server, hub.path()).resolve(ID, None).unwrap();
    let blobs = entries_under(&repo_dir(hub.path()).join("blobs"));
    assert!(!blobs.is_empty());
    for blob in &blobs {
        assert!(
            blob.len() == 64 || blob.len() == 40,
            "blobs/ holds {blob}, not a blob named by its etag: {blobs:?}"
        );
    }
    // The locks are where huggingface_hub keeps its own (so the two exclude each other).
    let locks = entries_under(&hub.path().join(".locks").join("models--org--tiny-bert"));
    assert!(
        locks.iter().all(|lock| lock.ends_with(".lock")) && !locks.is_empty(),
        "{locks:?}"
    );
}

#[test]
fn a_partial_file_larger_than_the_remote_one_is_started_again() {
    let server = StandIn::start();
    let hub = tempfile::tempdir().unwrap();
    let weights = fixture("model.safetensors");
    let etag = sha256_hex(&weights);
    let blobs = repo_dir(hub.path()).join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let too_long = vec![7u8; weights.len() + 100];
    std::fs::write(blobs.join(format!("{etag}.incomplete")), &too_long).unwrap();
    // hf-hub's name for it, left by an older oxformer, too
    std::fs::write(blobs.join(format!("{etag}.part")), &too_long).unwrap();
    let folder = settings(&server, hub.path()).resolve(ID, None).unwrap();
    assert_eq!(
        std::fs::read(folder.join("model.safetensors")).unwrap(),
        weights
    );
    assert!(!blobs.join(format!("{etag}.incomplete")).exists());
    assert!(!blobs.join(format!("{etag}.part")).exists());
}

#[test]
fn a_stalled_download_times_out_as_hf_hub_download_timeout_says_and_resumes() {
    let server = StandIn::start();
    let hub = tempfile::tempdir().unwrap();
    server.stall("model.safetensors");
    let mut quick = settings(&server, hub.path());
    quick.download_timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let error = quick.resolve(ID, None).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the stall of 60 s was not cut short"
    );
    assert!(matches!(error, Error::Download { .. }), "{error:?}");
    assert!(
        error.to_string().contains("HF_HUB_DOWNLOAD_TIMEOUT"),
        "{error}"
    );
    let folder = settings(&server, hub.path()).resolve(ID, None).unwrap();
    assert!(is_complete_snapshot(&folder));
    assert_eq!(
        std::fs::read(folder.join("model.safetensors")).unwrap(),
        fixture("model.safetensors")
    );
}

#[test]
fn timeouts_follow_huggingface_hubs_variables() {
    let settings = HubSettings::from_vars(|name| match name {
        "HF_HUB_DOWNLOAD_TIMEOUT" => Some("2.5".to_string()),
        "HF_HUB_ETAG_TIMEOUT" => Some("7".to_string()),
        _ => None,
    });
    assert_eq!(settings.download_timeout, Duration::from_millis(2500));
    assert_eq!(settings.etag_timeout, Duration::from_secs(7));
    let defaults = HubSettings::from_vars(|_| None);
    assert_eq!(defaults.download_timeout, Duration::from_secs(10));
    assert_eq!(defaults.etag_timeout, Duration::from_secs(10));
}
