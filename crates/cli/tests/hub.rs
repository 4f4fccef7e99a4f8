//! `oxformer <task> --model org/name` downloads the model from the hub `HF_ENDPOINT` names into
//! `HF_HOME`'s cache (here a stand-in hub on 127.0.0.1 serving the fixture bert-seqcls-single).

#[path = "../../nn/tests/common/hub_stand_in.rs"]
mod stand_in;

use std::path::Path;
use std::process::{Command, Output};

use stand_in::{COMMIT, ID, StandIn};

/// `oxformer args...` with the hub variables of `endpoint` and `home` only.
fn oxformer(args: &[&str], endpoint: &str, home: &Path, offline: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_oxformer"));
    for variable in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "OXFORMER_CACHE",
    ] {
        command.env_remove(variable);
    }
    command
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", home);
    if offline {
        command.env("HF_HUB_OFFLINE", "1");
    }
    command.output().expect("the oxformer binary runs")
}

fn classify(model: &str, extra: &[&str], endpoint: &str, home: &Path, offline: bool) -> Output {
    let mut args = vec!["text-classification", "--json", "--model", model];
    args.extend_from_slice(extra);
    args.push("a small test");
    oxformer(&args, endpoint, home, offline)
}

#[test]
fn a_hub_id_is_downloaded_then_served_from_the_cache_and_offline() {
    let server = StandIn::start();
    let home = tempfile::tempdir().unwrap();
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models/bert-seqcls-single")
        .display()
        .to_string();
    let expected = classify(&folder, &[], &server.endpoint, home.path(), false);
    assert!(expected.status.success());
    assert_eq!(
        server.requests(),
        Vec::<String>::new(),
        "a folder needs no hub"
    );

    let downloaded = classify(ID, &[], &server.endpoint, home.path(), false);
    let stderr = String::from_utf8_lossy(&downloaded.stderr);
    assert!(downloaded.status.success(), "{stderr}");
    assert_eq!(downloaded.stdout, expected.stdout);
    assert!(!server.requests().is_empty());
    let snapshot = home
        .path()
        .join("hub/models--org--tiny-bert/snapshots")
        .join(COMMIT);
    assert!(snapshot.join("model.safetensors").is_file());

    let cached = classify(ID, &[], &server.endpoint, home.path(), false);
    assert_eq!(cached.stdout, expected.stdout);
    assert_eq!(
        server.requests(),
        Vec::<String>::new(),
        "the second run is cached"
    );

    let offline = classify(ID, &[], "http://127.0.0.1:9", home.path(), true);
    assert_eq!(offline.stdout, expected.stdout);
}

#[test]
fn revisions_offline_misses_and_unknown_ids_are_usage_errors() {
    let server = StandIn::start();
    let home = tempfile::tempdir().unwrap();
    let by_tag = classify(
        ID,
        &["--revision", "v1"],
        &server.endpoint,
        home.path(),
        false,
    );
    assert!(
        by_tag.status.success(),
        "{}",
        String::from_utf8_lossy(&by_tag.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(home.path().join("hub/models--org--tiny-bert/refs/v1")).unwrap(),
        COMMIT
    );

    let empty = tempfile::tempdir().unwrap();
    for (model, offline, needle) in [(ID, true, "HF_HUB_OFFLINE"), ("org/absent", false, "404")] {
        let output = classify(model, &[], &server.endpoint, empty.path(), offline);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(model) && stderr.contains(needle),
            "{stderr}"
        );
    }
}
