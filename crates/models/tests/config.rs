//! config.json parsing: every config transformers wrote for the fixtures, the real MiniLM, and
//! malformed or inconsistent configs, which must fail naming the file and the field.

mod common;

use std::path::{Path, PathBuf};

use common::{common_fields, fixtures, model_fields, reference_value, same};
use oxformer_models::{Error, HiddenAct, ModelConfig, ProblemType};
use serde_json::Value;

/// Parses `config.json` in `dir` and compares every field it holds with our value.
/// Returns the config and how many fields were compared.
fn check_against_json(dir: &Path) -> (ModelConfig, usize) {
    let path = dir.join("config.json");
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let config = ModelConfig::from_file(&path).unwrap_or_else(|error| panic!("{error}"));
    let (fields, activations) = model_fields(&config);
    let mut compared = 0;
    for (key, ours) in fields.iter().chain(&common_fields(config.common())) {
        let field = key.strip_suffix(" is null").unwrap_or(key);
        if raw.get(field).is_none() {
            continue; // absent: the default, checked by config_defaults.rs
        }
        let expected = reference_value(&raw, key);
        assert!(
            same(ours, &expected),
            "{}: {key}: ours {ours}, file {expected}",
            path.display()
        );
        compared += 1;
    }
    for (key, ours) in activations {
        if let Some(name) = raw.get(key).and_then(Value::as_str) {
            assert_eq!(
                HiddenAct::from_name(name),
                Some(ours),
                "{}: {key}",
                path.display()
            );
            compared += 1;
        }
    }
    (config, compared)
}

#[test]
fn every_fixture_config_reads_as_written() {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(fixtures().join("models"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("config.json").is_file())
        .collect();
    folders.sort();
    assert!(folders.len() >= 30, "{} fixture folders", folders.len());
    let mut model_types = std::collections::BTreeSet::new();
    for folder in &folders {
        let (config, compared) = check_against_json(folder);
        assert!(
            compared >= 15,
            "{}: only {compared} fields compared",
            folder.display()
        );
        model_types.insert(config.model_type());
        // The labels transformers saved must be what a head reports.
        let common = config.common();
        for (id, label) in &common.id2label {
            assert_eq!(common.label2id.get(label), Some(id), "{}", folder.display());
        }
    }
    assert_eq!(
        model_types.len(),
        ModelConfig::SUPPORTED_MODEL_TYPES.len(),
        "{model_types:?}"
    );
}

#[test]
fn fixture_labels_and_problem_type() {
    let dir = fixtures().join("models/bert-seqcls-multi");
    let config = ModelConfig::from_folder(&dir).unwrap();
    let raw: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let common = config.common();
    assert_eq!(
        common.problem_type,
        Some(ProblemType::MultiLabelClassification)
    );
    assert_eq!(
        common.num_labels(),
        raw["id2label"].as_object().unwrap().len()
    );
    assert_eq!(common.label(0), raw["id2label"]["0"].as_str());
    assert_eq!(
        common.architectures,
        [raw["architectures"][0].as_str().unwrap()]
    );
}

fn cache_dir() -> PathBuf {
    std::env::var_os("OXFORMER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"))
}

#[test]
#[ignore = "needs `cargo xtask fetch`"]
fn real_minilm_config() {
    let dir = cache_dir().join("models/sentence-transformers/all-MiniLM-L6-v2");
    let (config, compared) = check_against_json(&dir);
    assert!(compared >= 15);
    let ModelConfig::Bert(bert) = config else {
        panic!("MiniLM is a BERT model")
    };
    assert_eq!(bert.head_dim() * bert.num_attention_heads, bert.hidden_size);
}

/// The message of the error `json` produces.
fn error_of(json: &str) -> String {
    match ModelConfig::from_json_str(json, "test/config.json") {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(error) => {
            let text = error.to_string();
            assert!(text.starts_with("test/config.json"), "no source in: {text}");
            text
        }
    }
}

#[test]
fn malformed_json_gives_line_and_column() {
    let text = error_of("{\n  \"model_type\": \"bert\",\n  \"hidden_size\": 12,,\n}");
    assert!(
        text.contains("not valid JSON") && text.contains("line 3 column"),
        "{text}"
    );
    assert!(error_of("[1]").contains("not an object"));
}

#[test]
fn missing_or_unknown_model_type_lists_the_supported_ones() {
    let text = error_of(r#"{"hidden_size": 12}"#);
    assert!(
        text.contains("no `model_type`") && text.contains("xlm-roberta"),
        "{text}"
    );
    let error = ModelConfig::from_json_str(r#"{"model_type": "llama"}"#, "x").unwrap_err();
    assert!(
        matches!(error, Error::UnsupportedModelType { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("`llama`") && text.contains("bert, roberta, xlm-roberta"),
        "{text}"
    );
    assert!(error_of(r#"{"model_type": 3}"#).contains("field `model_type`"));
}

#[test]
fn inconsistent_sizes() {
    let text = error_of(r#"{"model_type": "bert", "hidden_size": 100, "num_attention_heads": 12}"#);
    assert!(text.contains("field `hidden_size`"), "{text}");
    assert!(
        text.contains("100 is not a multiple of num_attention_heads 12"),
        "{text}"
    );
    let text = error_of(r#"{"model_type": "distilbert", "dim": 30, "n_heads": 4}"#);
    assert!(text.contains("field `dim`"), "{text}");
    let text = error_of(r#"{"model_type": "gpt2", "n_embd": 30, "n_head": 4}"#);
    assert!(text.contains("field `n_embd`"), "{text}");
    let text = error_of(r#"{"model_type": "roberta", "num_attention_heads": 0}"#);
    assert!(
        text.contains("field `num_attention_heads`: must be positive"),
        "{text}"
    );
    let text = error_of(r#"{"model_type": "gpt2", "n_inner": 0}"#);
    assert!(text.contains("field `n_inner`"), "{text}");
    let text = error_of(r#"{"model_type": "bert", "layer_norm_eps": -1e-5}"#);
    assert!(text.contains("field `layer_norm_eps`"), "{text}");
}

#[test]
fn wrong_types_name_field_and_value() {
    let text = error_of(r#"{"model_type": "bert", "hidden_size": "768"}"#);
    assert!(
        text.contains("field `hidden_size`: expected a positive integer, found \"768\""),
        "{text}"
    );
    let text = error_of(r#"{"model_type": "bert", "vocab_size": 3.5}"#);
    assert!(text.contains("field `vocab_size`"), "{text}");
    let text = error_of(r#"{"model_type": "bert", "use_cache": "yes"}"#);
    assert!(
        text.contains("field `use_cache`: expected true or false"),
        "{text}"
    );
    let text = error_of(r#"{"model_type": "bert", "hidden_size": null}"#);
    assert!(
        text.contains("field `hidden_size`") && text.contains("null"),
        "{text}"
    );
}

#[test]
fn activations() {
    let text = error_of(r#"{"model_type": "bert", "hidden_act": "gelu_accurate"}"#);
    assert!(text.contains("field `hidden_act`"), "{text}");
    assert!(
        text.contains(
            "`gelu_accurate` is a transformers activation that oxformer does not implement"
        ),
        "{text}"
    );
    let text = error_of(r#"{"model_type": "distilbert", "activation": "gelu2"}"#);
    assert!(
        text.contains("field `activation`: `gelu2` is not a known activation"),
        "{text}"
    );
    assert!(text.contains("gelu_new"), "{text}");
    let text = error_of(r#"{"model_type": "gpt2", "activation_function": 1}"#);
    assert!(text.contains("field `activation_function`"), "{text}");
}

#[test]
fn labels_and_token_ids() {
    let text = error_of(r#"{"model_type": "bert", "id2label": {"zero": "a"}}"#);
    assert!(
        text.contains("field `id2label`: key `zero` is not a label id"),
        "{text}"
    );
    let text = error_of(r#"{"model_type": "bert", "id2label": {"0": "a", "2": "c"}}"#);
    assert!(
        text.contains("field `id2label`") && text.contains("id 1 is missing"),
        "{text}"
    );
    let text = error_of(r#"{"model_type": "bert", "id2label": {"0": 5}}"#);
    assert!(text.contains("field `id2label`: label of id 0"), "{text}");
    let text = error_of(r#"{"model_type": "bert", "label2id": {"a": "zero"}}"#);
    assert!(text.contains("field `label2id`"), "{text}");
    let text = error_of(r#"{"model_type": "bert", "pad_token_id": -1}"#);
    assert!(
        text.contains("field `pad_token_id`") && text.contains("-1"),
        "{text}"
    );
    let text = error_of(r#"{"model_type": "gpt2", "eos_token_id": [1, "two"]}"#);
    assert!(text.contains("field `eos_token_id`"), "{text}");
    let text = error_of(r#"{"model_type": "bert", "problem_type": "ranking"}"#);
    assert!(text.contains("field `problem_type`: `ranking`"), "{text}");
    let text = error_of(r#"{"model_type": "bert", "position_embedding_type": "rotary"}"#);
    assert!(text.contains("field `position_embedding_type`"), "{text}");
    let text = error_of(r#"{"model_type": "gpt2", "summary_type": "max"}"#);
    assert!(text.contains("field `summary_type`"), "{text}");
    let text = error_of(r#"{"model_type": "bert", "pruned_heads": {"x": [1]}}"#);
    assert!(text.contains("field `pruned_heads`"), "{text}");
}

#[test]
fn unknown_keys_are_ignored() {
    let config = ModelConfig::from_json_str(
        r#"{"model_type": "bert", "gradient_checkpointing": false, "_name_or_path": "x", "some_future_key": [1, {"a": null}]}"#,
        "x",
    )
    .unwrap();
    assert_eq!(config.model_type(), "bert");
}

#[test]
fn missing_file_names_the_path() {
    let error = ModelConfig::from_folder(Path::new("/nonexistent/model")).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(
        error.to_string().contains("/nonexistent/model/config.json"),
        "{error}"
    );
}

#[test]
fn tie_weights_follows_the_config() {
    // GPT-2's LM head is tied to `transformer.wte.weight` unless the config says otherwise.
    let dir = fixtures().join("models/gpt2");
    let config = ModelConfig::from_folder(&dir).unwrap();
    let mut weights = oxformer_nn::Weights::from_folder(&dir).unwrap();
    assert!(!weights.contains("lm_head.weight"));
    assert!(config.tie_weights(&mut weights, "lm_head.weight", "transformer.wte.weight"));
    let head = weights.get_unchecked_shape("lm_head.weight").unwrap();
    let wte = weights
        .get_unchecked_shape("transformer.wte.weight")
        .unwrap();
    assert_eq!(head.as_slice(), wte.as_slice());

    let untied = ModelConfig::from_json_str(
        r#"{"model_type": "gpt2", "tie_word_embeddings": false}"#,
        "x",
    )
    .unwrap();
    let mut weights = oxformer_nn::Weights::from_folder(&dir).unwrap();
    assert!(!untied.tie_weights(&mut weights, "lm_head.weight", "transformer.wte.weight"));
    assert!(!weights.contains("lm_head.weight"));
}

#[test]
fn num_labels_beyond_the_bound_is_an_error_not_an_allocation() {
    // found by the fuzzer: num_labels 2^40 named 2^40 labels
    let text = error_of(r#"{"model_type": "bert", "num_labels": 1099511627776}"#);
    assert!(
        text.contains("num_labels") && text.contains("1099511627776"),
        "{text}"
    );
    let json = format!(
        r#"{{"model_type": "bert", "num_labels": {}}}"#,
        oxformer_models::config::MAX_DEFAULT_LABELS
    );
    let config = ModelConfig::from_json_str(&json, "test/config.json").unwrap();
    assert_eq!(
        config.common().num_labels(),
        oxformer_models::config::MAX_DEFAULT_LABELS
    );
}
