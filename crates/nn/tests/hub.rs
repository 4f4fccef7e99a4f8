//! Model ids resolved offline: local folders and the Hugging Face cache layout.

use std::fs;
use std::path::Path;

use oxformer_nn::Error;
use oxformer_nn::hub::resolve_model_in;

/// `<hub>/models--org--name/snapshots/<rev>/config.json`, with `refs/main` = `main_ref`.
fn cached_repo(hub: &Path, id: &str, revisions: &[&str], main_ref: Option<&str>) {
    let repo = hub.join(format!("models--{}", id.replace('/', "--")));
    for revision in revisions {
        let snapshot = repo.join("snapshots").join(revision);
        fs::create_dir_all(&snapshot).unwrap();
        fs::write(snapshot.join("config.json"), "{}").unwrap();
    }
    if let Some(main_ref) = main_ref {
        fs::create_dir_all(repo.join("refs")).unwrap();
        fs::write(repo.join("refs").join("main"), format!("{main_ref}\n")).unwrap();
    }
}

#[test]
fn a_local_folder_is_used_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().to_str().unwrap();
    assert_eq!(resolve_model_in(id, &[], None).unwrap(), dir.path());
}

#[test]
fn org_and_name_follow_refs_main_into_the_snapshot() {
    let hub = tempfile::tempdir().unwrap();
    cached_repo(
        hub.path(),
        "sentence-transformers/all-MiniLM-L6-v2",
        &["aaaa", "bbbb"],
        Some("bbbb"),
    );
    cached_repo(hub.path(), "gpt2", &["cccc"], Some("cccc"));
    let found = resolve_model_in(
        "sentence-transformers/all-MiniLM-L6-v2",
        &[hub.path().to_path_buf()],
        None,
    )
    .unwrap();
    assert_eq!(
        found,
        hub.path()
            .join("models--sentence-transformers--all-MiniLM-L6-v2/snapshots/bbbb")
    );
    let found = resolve_model_in("gpt2", &[hub.path().to_path_buf()], None).unwrap();
    assert_eq!(found, hub.path().join("models--gpt2/snapshots/cccc"));
}

#[test]
fn later_caches_are_searched_when_earlier_ones_lack_the_model() {
    let (empty, hub) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    cached_repo(hub.path(), "org/name", &["rev1"], None);
    let found = resolve_model_in(
        "org/name",
        &[empty.path().to_path_buf(), hub.path().to_path_buf()],
        None,
    )
    .unwrap();
    // Without refs/main the only snapshot is taken.
    assert_eq!(found, hub.path().join("models--org--name/snapshots/rev1"));
}

#[test]
fn oxformer_cache_models_folder_is_the_last_resort() {
    let cache = tempfile::tempdir().unwrap();
    let folder = cache.path().join("models/org/name");
    fs::create_dir_all(&folder).unwrap();
    assert_eq!(
        resolve_model_in("org/name", &[], Some(cache.path())).unwrap(),
        folder
    );
}

#[test]
fn a_missing_model_lists_every_place_searched() {
    let hub = tempfile::tempdir().unwrap();
    let error = resolve_model_in("org/absent", &[hub.path().to_path_buf()], None).unwrap_err();
    assert!(matches!(error, Error::ModelNotFound { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("org/absent"), "{message}");
    assert!(message.contains("models--org--absent"), "{message}");
    let error = resolve_model_in("/no/such/folder", &[], None).unwrap_err();
    assert!(matches!(error, Error::ModelNotFound { .. }), "{error:?}");
}

#[test]
fn refs_main_naming_a_missing_snapshot_is_an_error() {
    let hub = tempfile::tempdir().unwrap();
    cached_repo(hub.path(), "org/name", &["old"], Some("new"));
    let error = resolve_model_in("org/name", &[hub.path().to_path_buf()], None).unwrap_err();
    assert!(matches!(error, Error::InvalidModelId { .. }), "{error:?}");
    assert!(error.to_string().contains("new"), "{error}");
    // Several snapshots and no refs/main: ambiguous.
    let hub = tempfile::tempdir().unwrap();
    cached_repo(hub.path(), "org/name", &["a", "b"], None);
    let error = resolve_model_in("org/name", &[hub.path().to_path_buf()], None).unwrap_err();
    assert!(matches!(error, Error::InvalidModelId { .. }), "{error:?}");
}

#[test]
fn malformed_ids_are_refused() {
    for id in ["org/na me", "org/", "a/b c", "what?"] {
        let error = resolve_model_in(id, &[], None).unwrap_err();
        assert!(
            matches!(error, Error::InvalidModelId { .. }),
            "{id}: {error:?}"
        );
    }
}
