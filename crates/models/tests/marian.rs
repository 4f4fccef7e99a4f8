//! Marian against transformers on the tiny random checkpoint `fixtures/models/marian` (opus-mt's layout: sinusoidal positions, scale_embedding, swish, shared embeddings, final_logits_bias):
//! every encoder and decoder hidden state and the logits, with and without the cache, a padded
//! batch against its inputs one by one, beam rows, and load errors that name the tensor or field.

mod common;

use common::reference::model_dir;
use common::seq2seq::{
    check_against_reference, check_cache_and_batch, check_greedy_screen, check_rows_per_input,
};
use oxformer_models::Error;
use oxformer_models::marian::MarianMTModel;

impl_seq2seq!(MarianMTModel);

const NAME: &str = "marian";

fn load() -> MarianMTModel {
    MarianMTModel::from_folder(&model_dir(NAME)).unwrap_or_else(|error| panic!("{NAME}: {error}"))
}

#[test]
fn every_hidden_state_and_logits_match_transformers() {
    check_against_reference(NAME, &load());
}

/// `fixtures/models/marian-unshared`: `share_encoder_decoder_embeddings: false`, the decoder's own
/// `model.decoder.embed_tokens` (the LM head tied to it), drawn apart from the encoder's.
#[test]
fn unshared_decoder_embeddings_match_transformers() {
    let name = "marian-unshared";
    let model = MarianMTModel::from_folder(&model_dir(name))
        .unwrap_or_else(|error| panic!("{name}: {error}"));
    check_against_reference(name, &model);
    check_cache_and_batch(name, &model);
}

#[test]
fn cached_decoder_equals_uncached_and_batch_equals_one_by_one() {
    check_cache_and_batch(NAME, &load());
}

#[test]
fn beam_rows_share_the_encoder_and_reorder_within_an_input() {
    check_rows_per_input(NAME, &load());
}

#[test]
fn a_missing_tensor_is_named() {
    let missing = "model.encoder.layers.0.fc2.weight";
    let dir = common::seq2seq::broken_copy(NAME, |_| {}, missing);
    let error = MarianMTModel::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(error.contains(missing), "{error}");
}

#[test]
fn a_malformed_config_names_the_field() {
    for (field, value) in [
        ("decoder_attention_heads", serde_json::json!(5)),
        ("d_model", serde_json::json!(-1)),
        ("activation_function", serde_json::json!("gelu_ultra")),
    ] {
        let dir = common::seq2seq::broken_copy(NAME, |config| config[field] = value.clone(), "");
        let error = MarianMTModel::from_folder(dir.path()).unwrap_err();
        assert!(
            matches!(&error, Error::ConfigField { field: named, .. } if named == field || named == "d_model"),
            "{field}: {error}"
        );
    }
}

#[test]
fn greedy_screen_declines_a_head_with_a_bias() {
    // the fixture's final_logits_bias is random, not zero
    check_greedy_screen(NAME, &load(), false);
}
