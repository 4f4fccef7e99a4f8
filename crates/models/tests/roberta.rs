//! RoBERTa bodies against transformers' hidden states (every layer, 1e-4), including the bf16
//! checkpoint; position ids as transformers' `create_position_ids_from_input_ids`.

mod common;

use common::reference::{check_body, check_body_skipping_padding, model_dir};
use oxformer_models::roberta::RobertaModel;
use oxformer_models::{ForwardOptions, ModelConfig};
use oxformer_nn::Weights;

pub fn check(name: &str) {
    let dir = model_dir(name);
    let config = match ModelConfig::from_folder(&dir).unwrap() {
        ModelConfig::Roberta(config) | ModelConfig::XlmRoberta(config) => config,
        _ => panic!("{name} is not a RoBERTa config"),
    };
    let weights = Weights::from_folder(&dir).unwrap();
    check_body(name, |input, with_pooler| {
        let model = RobertaModel::load(&weights, &config, with_pooler).unwrap();
        model
            .forward(
                input,
                &ForwardOptions {
                    output_hidden_states: true,
                    skip_padding: false,
                },
            )
            .unwrap()
    });
}

#[test]
fn roberta_base_model() {
    check("roberta");
}

#[test]
fn roberta_bodies_of_task_models() {
    for name in [
        "roberta-seqcls-single",
        "roberta-seqcls-multi",
        "roberta-regression",
        "roberta-tokcls",
        "roberta-qa",
        "roberta-mlm",
    ] {
        check(name);
    }
}

#[test]
fn roberta_bf16_checkpoint() {
    check("roberta-tokcls-bf16");
}

#[test]
fn roberta_max_length_leaves_room_for_the_padding_offset() {
    let dir = model_dir("roberta");
    let ModelConfig::Roberta(config) = ModelConfig::from_folder(&dir).unwrap() else {
        unreachable!()
    };
    let model = RobertaModel::load(&Weights::from_folder(&dir).unwrap(), &config, true).unwrap();
    // 130 positions, padding_idx 1: positions 2..=129 hold 128 tokens.
    assert_eq!(
        model.max_sequence_length(),
        config.max_position_embeddings - 2
    );
    let ids = ndarray::Array2::<u32>::from_elem((1, 129), 5);
    let mask = ndarray::Array2::<u32>::ones((1, 129));
    let input = oxformer_models::EncoderInput::new(ids.view(), mask.view());
    let error = model
        .forward(&input, &ForwardOptions::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("129") && error.contains("128"), "{error}");
    let ids = ndarray::Array2::<u32>::from_elem((1, 128), 5);
    let mask = ndarray::Array2::<u32>::ones((1, 128));
    let input = oxformer_models::EncoderInput::new(ids.view(), mask.view());
    assert!(model.forward(&input, &ForwardOptions::default()).is_ok());
}

/// Padding-free execution: token-wise work on the real tokens only.
#[test]
fn roberta_skipping_padding_matches_at_attended_positions() {
    for name in ["roberta", "roberta-tokcls-bf16"] {
        let dir = model_dir(name);
        let config = match ModelConfig::from_folder(&dir).unwrap() {
            ModelConfig::Roberta(config) | ModelConfig::XlmRoberta(config) => config,
            _ => unreachable!(),
        };
        let weights = Weights::from_folder(&dir).unwrap();
        check_body_skipping_padding(name, |input, with_pooler| {
            let model = RobertaModel::load(&weights, &config, with_pooler).unwrap();
            model
                .forward(
                    input,
                    &ForwardOptions {
                        output_hidden_states: true,
                        skip_padding: true,
                    },
                )
                .unwrap()
        });
    }
}
