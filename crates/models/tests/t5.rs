//! T5 against transformers on the tiny random checkpoints `fixtures/models/t5` (v1.0: ReLU, tied
//! head with the d_model^-0.5 rescale), `fixtures/models/t5-v1_1` (gated-gelu, untied head) and
//! `fixtures/models/mt5` (the same saved as `model_type` mt5):
//! every encoder and decoder hidden state and the logits, with and without the cache, a padded
//! batch against its inputs one by one, beam rows, and load errors that name the tensor or field.

mod common;

use common::reference::model_dir;
use common::seq2seq::{
    check_against_reference, check_cache_and_batch, check_greedy_screen, check_rows_per_input,
};
use oxformer_models::t5::T5ForConditionalGeneration;
use oxformer_models::{Error, ModelConfig};

impl_seq2seq!(T5ForConditionalGeneration);

const MODELS: [&str; 3] = ["t5", "t5-v1_1", "mt5"];

fn load(name: &str) -> T5ForConditionalGeneration {
    T5ForConditionalGeneration::from_folder(&model_dir(name))
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

#[test]
fn every_hidden_state_and_logits_match_transformers() {
    for name in MODELS {
        check_against_reference(name, &load(name));
    }
}

#[test]
fn cached_decoder_equals_uncached_and_batch_equals_one_by_one() {
    for name in MODELS {
        check_cache_and_batch(name, &load(name));
    }
}

#[test]
fn beam_rows_share_the_encoder_and_reorder_within_an_input() {
    for name in MODELS {
        check_rows_per_input(name, &load(name));
    }
}

#[test]
fn configs_are_read_as_transformers_reads_them() {
    let ModelConfig::T5(v1) = ModelConfig::from_folder(&model_dir("t5")).unwrap() else {
        panic!("t5 is a T5 config");
    };
    assert!(!v1.is_gated_act);
    assert!(v1.common.tie_word_embeddings);
    assert_eq!(
        v1.common.task_specific_params["translation_en_to_de"]["prefix"],
        "translate English to German: "
    );
    let ModelConfig::T5(v1_1) = ModelConfig::from_folder(&model_dir("t5-v1_1")).unwrap() else {
        panic!("t5-v1_1 is a T5 config");
    };
    assert!(v1_1.is_gated_act);
    assert!(!v1_1.common.tie_word_embeddings);
    assert!(v1_1.common.is_encoder_decoder);
    let mt5 = ModelConfig::from_folder(&model_dir("mt5")).unwrap();
    assert_eq!(mt5.model_type(), "mt5");
}

#[test]
fn a_missing_tensor_is_named() {
    let missing = "decoder.block.1.layer.1.EncDecAttention.k.weight";
    let dir = common::seq2seq::broken_copy("t5", |_| {}, missing);
    let error = T5ForConditionalGeneration::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(error.contains(missing), "{error}");
    let missing = "lm_head.weight";
    let dir = common::seq2seq::broken_copy("t5-v1_1", |_| {}, missing);
    let error = T5ForConditionalGeneration::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(error.contains(missing), "{error}");
}

#[test]
fn a_malformed_config_names_the_field() {
    for (field, value) in [
        ("feed_forward_proj", serde_json::json!("gated-gelu-fast")),
        ("feed_forward_proj", serde_json::json!("swiglu_x")),
        ("d_model", serde_json::json!("wide")),
        ("relative_attention_num_buckets", serde_json::json!(2)),
        ("num_heads", serde_json::json!(0)),
    ] {
        let dir = common::seq2seq::broken_copy("t5", |config| config[field] = value.clone(), "");
        let error = T5ForConditionalGeneration::from_folder(dir.path()).unwrap_err();
        assert!(
            matches!(&error, Error::ConfigField { field: named, .. } if named == field),
            "{field}: {error}"
        );
    }
    let dir = common::seq2seq::broken_copy("t5", |config| config["model_type"] = "t6".into(), "");
    let error = T5ForConditionalGeneration::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(error.contains("t6"), "{error}");
}

#[test]
fn greedy_screen_picks_the_largest_logit() {
    for name in MODELS {
        check_greedy_screen(name, &load(name), true);
    }
}
