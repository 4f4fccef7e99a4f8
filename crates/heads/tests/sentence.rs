//! sentence-transformers folders (`fixtures/models/st-*`): token and sentence embeddings
//! against the modules of sentence-transformers run on the same tokens (1e-4).

mod common;

use common::{Inputs, Reference, assert_all_close, model_dir};
use oxformer_heads::{Pooling, SentenceTransformer};

fn check(name: &str, poolings: &[Pooling], normalize: bool) {
    let dir = model_dir(name);
    assert!(SentenceTransformer::is_sentence_transformers(&dir));
    let model = SentenceTransformer::from_folder(&dir).unwrap();
    assert_eq!(model.poolings(), poolings, "{name}");
    assert_eq!(model.normalizes(), normalize, "{name}");
    let reference = Reference::load(name);
    let inputs = Inputs::of(&reference);
    let output = model.forward(&inputs.view()).unwrap();
    // sentence-transformers' max pooling overwrites the padded positions of the token
    // embeddings it returns with -1e9 (in place); compare attended positions only.
    let mut tokens = output.token_embeddings;
    let mut expected_tokens = reference.floats("token_embeddings");
    for ((b, t), &attended) in inputs.attention_mask.indexed_iter() {
        if attended == 0 {
            tokens.slice_mut(ndarray::s![b, t, ..]).fill(0.0);
            expected_tokens.slice_mut(ndarray::s![b, t, ..]).fill(0.0);
        }
    }
    assert_all_close(
        vec![
            (
                format!("{name} token_embeddings"),
                tokens.into_dyn(),
                expected_tokens,
            ),
            (
                format!("{name} sentence_embedding"),
                output.sentence_embedding.into_dyn(),
                reference.floats("forward_embedding"),
            ),
        ],
        1e-4,
    );
}

#[test]
fn mean_pooling() {
    check("st-mean", &[Pooling::Mean], false);
}

#[test]
fn cls_pooling() {
    check("st-cls", &[Pooling::Cls], false);
}

#[test]
fn max_pooling_and_normalize_without_its_folder() {
    check("st-max-normalize", &[Pooling::Max], true);
}

#[test]
fn mean_sqrt_len_pooling() {
    check("st-mean-sqrt-len", &[Pooling::MeanSqrtLen], false);
}

#[test]
fn weighted_mean_pooling() {
    check("st-weightedmean", &[Pooling::WeightedMean], false);
}

#[test]
fn last_token_pooling() {
    check("st-lasttoken", &[Pooling::LastToken], false);
}

#[test]
fn every_pooling_at_once_side_by_side() {
    check(
        "st-all-poolings",
        &[
            Pooling::Cls,
            Pooling::Max,
            Pooling::Mean,
            Pooling::MeanSqrtLen,
            Pooling::WeightedMean,
            Pooling::LastToken,
        ],
        false,
    );
}

#[test]
fn dense_layers_then_normalize() {
    check("st-dense-prompts", &[Pooling::Mean], true);
    let model = SentenceTransformer::from_folder(&model_dir("st-dense-prompts")).unwrap();
    assert_eq!(model.dense_layers(), 2);
    assert_eq!(model.embedding_dimension(), 16);
    assert_eq!(model.max_seq_length(), Some(12));
    assert!(model.do_lower_case());
    assert!(!model.includes_prompt());
    assert_eq!(model.default_prompt_name(), Some("query"));
    assert_eq!(
        model.prompts().get("passage").map(String::as_str),
        Some("passage: ")
    );
}

#[test]
fn plain_model_folders_are_not_sentence_transformers() {
    assert!(!SentenceTransformer::is_sentence_transformers(&model_dir(
        "bert"
    )));
}
