//! The encoders' blocks used one by one through their public `forward`: each BERT layer and
//! DistilBERT block turns transformers' hidden state before it into the one after it (1e-4),
//! the BERT encoder turns the embeddings into the last hidden state, and bad masks are errors.

mod common;

use common::reference::{Reference, assert_all_close, model_dir};
use ndarray::{Array2, Array3, Ix3};
use oxformer_models::bert::{BertAttention, BertEncoder, BertLayer, BertSelfAttention};
use oxformer_models::distilbert::{Ffn, MultiHeadSelfAttention, TransformerBlock};
use oxformer_models::{Error, ModelConfig};
use oxformer_nn::Weights;

fn hidden_state(reference: &Reference, index: usize) -> Array3<f32> {
    reference
        .floats(&format!("hidden_states.{index}"))
        .into_dimensionality::<Ix3>()
        .unwrap()
}

fn padding(reference: &Reference) -> Array2<f32> {
    reference.ids("attention_mask").mapv(|value| value as f32)
}

#[test]
fn bert_layers_and_encoder_one_by_one() {
    let dir = model_dir("bert");
    let ModelConfig::Bert(config) = ModelConfig::from_folder(&dir).unwrap() else {
        panic!("bert is a BERT config");
    };
    let weights = Weights::from_folder(&dir).unwrap();
    let reference = Reference::load("bert");
    let padding = padding(&reference);
    let layers = reference.num_hidden_states() - 1;
    let mut pairs = Vec::new();
    for index in 0..layers {
        let layer = BertLayer::load(&weights.sub("encoder.layer").sub(index), &config).unwrap();
        let output = layer
            .forward(hidden_state(&reference, index).view(), Some(padding.view()))
            .unwrap();
        pairs.push((
            format!("layer {index}"),
            output.into_dyn(),
            hidden_state(&reference, index + 1).into_dyn(),
        ));
    }
    let encoder = BertEncoder::load(&weights.sub("encoder"), &config).unwrap();
    let last = encoder
        .forward(hidden_state(&reference, 0).view(), Some(padding.view()))
        .unwrap();
    pairs.push((
        "encoder".to_string(),
        last.into_dyn(),
        reference.floats("last_hidden_state"),
    ));
    assert_all_close(pairs, 1e-4);

    // The attention block and its self-attention keep the shape; a mask of another shape is
    // the caller's error, naming the block.
    let attention =
        BertAttention::load(&weights.sub("encoder.layer.0.attention"), &config).unwrap();
    let input = hidden_state(&reference, 0);
    assert_eq!(
        attention.forward(input.view(), None).unwrap().dim(),
        input.dim()
    );
    let self_attention =
        BertSelfAttention::load(&weights.sub("encoder.layer.0.attention.self"), &config).unwrap();
    let wrong = Array2::<f32>::ones((1, 3));
    let error = self_attention
        .forward(input.view(), Some(wrong.view()))
        .unwrap_err();
    assert!(
        matches!(&error, Error::Input { model, .. } if model == "BertSelfAttention"),
        "{error}"
    );
}

#[test]
fn distilbert_blocks_one_by_one() {
    let dir = model_dir("distilbert");
    let ModelConfig::DistilBert(config) = ModelConfig::from_folder(&dir).unwrap() else {
        panic!("distilbert is a DistilBERT config");
    };
    let weights = Weights::from_folder(&dir).unwrap();
    let reference = Reference::load("distilbert");
    let padding = padding(&reference);
    let layers = reference.num_hidden_states() - 1;
    let mut pairs = Vec::new();
    for index in 0..layers {
        let prefix = weights.sub("transformer.layer").sub(index);
        let block = TransformerBlock::load(&prefix, &config).unwrap();
        let input = hidden_state(&reference, index);
        let output = block.forward(input.view(), Some(padding.view())).unwrap();
        pairs.push((
            format!("block {index}"),
            output.into_dyn(),
            hidden_state(&reference, index + 1).into_dyn(),
        ));
        // Its parts run alone too.
        let attention = MultiHeadSelfAttention::load(&prefix.sub("attention"), &config).unwrap();
        assert_eq!(
            attention
                .forward(input.view(), Some(padding.view()))
                .unwrap()
                .dim(),
            input.dim()
        );
        let ffn = Ffn::load(&prefix.sub("ffn"), &config).unwrap();
        let (batch, seq, dim) = input.dim();
        let rows = input.into_shape_with_order((batch * seq, dim)).unwrap();
        assert_eq!(ffn.forward(rows.view()).unwrap().dim(), (batch * seq, dim));
    }
    assert_all_close(pairs, 1e-4);
}
