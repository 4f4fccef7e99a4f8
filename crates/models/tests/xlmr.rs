//! XLM-RoBERTa bodies (RoBERTa's code with XLM-R's config) against transformers' hidden states,
//! including the sharded checkpoint.

mod common;

use common::reference::{check_body, check_body_skipping_padding, model_dir};
use oxformer_models::roberta::XlmRobertaModel;
use oxformer_models::{ForwardOptions, ModelConfig};
use oxformer_nn::Weights;

fn check(name: &str) {
    let dir = model_dir(name);
    let ModelConfig::XlmRoberta(config) = ModelConfig::from_folder(&dir).unwrap() else {
        panic!("{name} is not an XLM-R config");
    };
    let weights = Weights::from_folder(&dir).unwrap();
    check_body(name, |input, with_pooler| {
        let model = XlmRobertaModel::load(&weights, &config, with_pooler).unwrap();
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
fn xlmr_base_model() {
    check("xlmr");
}

#[test]
fn xlmr_bodies_of_task_models() {
    for name in [
        "xlmr-seqcls-single",
        "xlmr-seqcls-multi",
        "xlmr-regression",
        "xlmr-tokcls",
        "xlmr-qa",
        "xlmr-mlm",
    ] {
        check(name);
    }
}

#[test]
fn xlmr_sharded_checkpoint() {
    check("xlmr-qa-sharded");
}

/// Padding-free execution: token-wise work on the real tokens only.
#[test]
fn xlmr_skipping_padding_matches_at_attended_positions() {
    for name in ["xlmr", "xlmr-qa-sharded"] {
        let dir = model_dir(name);
        let ModelConfig::XlmRoberta(config) = ModelConfig::from_folder(&dir).unwrap() else {
            unreachable!()
        };
        let weights = Weights::from_folder(&dir).unwrap();
        check_body_skipping_padding(name, |input, with_pooler| {
            let model = XlmRobertaModel::load(&weights, &config, with_pooler).unwrap();
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
