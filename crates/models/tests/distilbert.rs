//! DistilBERT bodies against transformers' hidden states (every layer, 1e-4).

mod common;

use common::reference::{check_body, check_body_skipping_padding, model_dir};
use oxformer_models::distilbert::DistilBertModel;
use oxformer_models::{ForwardOptions, ModelConfig};
use oxformer_nn::Weights;

fn check(name: &str) {
    let dir = model_dir(name);
    let ModelConfig::DistilBert(config) = ModelConfig::from_folder(&dir).unwrap() else {
        panic!("{name} is not a DistilBERT config");
    };
    let weights = Weights::from_folder(&dir).unwrap();
    check_body(name, |input, with_pooler| {
        assert!(!with_pooler, "DistilBERT has no pooler");
        let model = DistilBertModel::load(&weights, &config).unwrap();
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
fn distilbert_base_model() {
    check("distilbert");
}

#[test]
fn distilbert_bodies_of_task_models() {
    for name in [
        "distilbert-seqcls",
        "distilbert-tokcls",
        "distilbert-qa",
        "distilbert-mlm",
    ] {
        check(name);
    }
}

/// Padding-free execution: token-wise work on the real tokens only.
#[test]
fn distilbert_skipping_padding_matches_at_attended_positions() {
    for name in ["distilbert", "distilbert-mlm"] {
        let dir = model_dir(name);
        let ModelConfig::DistilBert(config) = ModelConfig::from_folder(&dir).unwrap() else {
            unreachable!()
        };
        let weights = Weights::from_folder(&dir).unwrap();
        check_body_skipping_padding(name, |input, _with_pooler| {
            let model = DistilBertModel::load(&weights, &config).unwrap();
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
