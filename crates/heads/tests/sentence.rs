//! sentence-transformers folders (`fixtures/models/st-*`): token and sentence embeddings
//! against `SentenceTransformer.encode` (1e-4).

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
                reference.floats("sentence_embedding"),
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
fn plain_model_folders_are_not_sentence_transformers() {
    assert!(!SentenceTransformer::is_sentence_transformers(&model_dir(
        "bert"
    )));
}
