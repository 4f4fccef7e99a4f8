//! BERT bodies against transformers' hidden states (every layer, 1e-4), on every BERT fixture:
//! the base model and the bodies inside each task model, including the f16 checkpoint.

mod common;

use common::reference::{check_body, check_body_skipping_padding, model_dir};
use oxformer_models::bert::BertModel;
use oxformer_models::{Error, ForwardOptions, ModelConfig};
use oxformer_nn::Weights;

fn check(name: &str) {
    let dir = model_dir(name);
    let ModelConfig::Bert(config) = ModelConfig::from_folder(&dir).unwrap() else {
        panic!("{name} is not a BERT config");
    };
    let weights = Weights::from_folder(&dir).unwrap();
    check_body(name, |input, with_pooler| {
        let model = BertModel::load(&weights, &config, with_pooler).unwrap();
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
fn bert_base_model() {
    check("bert");
}

#[test]
fn bert_bodies_of_task_models() {
    for name in [
        "bert-seqcls-single",
        "bert-seqcls-multi",
        "bert-regression",
        "bert-tokcls",
        "bert-qa",
        "bert-mlm",
        "bert-nli",
    ] {
        check(name);
    }
}

#[test]
fn bert_f16_checkpoint() {
    check("bert-seqcls-single-f16");
}

#[test]
fn sentence_transformers_bert_bodies() {
    for name in ["st-mean", "st-cls", "st-max-normalize"] {
        let dir = model_dir(name);
        let ModelConfig::Bert(config) = ModelConfig::from_folder(&dir).unwrap() else {
            panic!("{name} is not a BERT config");
        };
        let weights = Weights::from_folder(&dir).unwrap();
        let reference = common::reference::Reference::load(name);
        let ids = reference.ids("input_ids");
        let mask = reference.ids("attention_mask");
        let types = reference.ids("token_type_ids");
        let input = oxformer_models::EncoderInput::new(ids.view(), mask.view())
            .with_token_type_ids(types.view());
        let model = BertModel::load(&weights, &config, false).unwrap();
        let output = model.forward(&input, &ForwardOptions::default()).unwrap();
        assert!(output.hidden_states.is_empty());
        // sentence-transformers' max pooling overwrites padded positions of the token embeddings
        // it returns with -1e9 (in place), so only attended positions are compared.
        let mut ours = output.last_hidden_state;
        let mut expected = reference.floats("token_embeddings");
        for ((b, t), &attended) in mask.indexed_iter() {
            if attended == 0 {
                ours.slice_mut(ndarray::s![b, t, ..]).fill(0.0);
                expected.slice_mut(ndarray::s![b, t, ..]).fill(0.0);
            }
        }
        common::reference::assert_all_close(
            vec![(
                format!("{name} token_embeddings"),
                ours.into_dyn(),
                expected,
            )],
            1e-4,
        );
    }
}

fn bert() -> BertModel {
    let dir = model_dir("bert");
    let ModelConfig::Bert(config) = ModelConfig::from_folder(&dir).unwrap() else {
        unreachable!()
    };
    BertModel::load(&Weights::from_folder(&dir).unwrap(), &config, true).unwrap()
}

#[test]
fn bad_inputs_are_errors_naming_the_problem() {
    let model = bert();
    let ids = ndarray::Array2::<u32>::from_elem((2, 5), 7);
    let ones = ndarray::Array2::<u32>::ones((2, 5));
    let short = ndarray::Array2::<u32>::ones((2, 4));
    let message = |result: oxformer_models::Result<_>| match result {
        Err(error @ Error::Input { .. }) => error.to_string(),
        Err(other) => other.to_string(),
        Ok(_) => panic!("expected an error"),
    };
    let input = oxformer_models::EncoderInput::new(ids.view(), short.view());
    assert!(
        message(model.forward(&input, &ForwardOptions::default()))
            .contains("attention_mask has shape")
    );

    let mut zero_row = ones.clone();
    zero_row.row_mut(1).fill(0);
    let input = oxformer_models::EncoderInput::new(ids.view(), zero_row.view());
    assert!(message(model.forward(&input, &ForwardOptions::default())).contains("row 1 is all 0"));

    let too_long = ndarray::Array2::<u32>::from_elem((1, 129), 7);
    let too_long_mask = ndarray::Array2::<u32>::ones((1, 129));
    let input = oxformer_models::EncoderInput::new(too_long.view(), too_long_mask.view());
    let error = message(model.forward(&input, &ForwardOptions::default()));
    assert!(error.contains("129") && error.contains("128"), "{error}");

    let beyond_vocab = ndarray::Array2::<u32>::from_elem((2, 5), 1500);
    let input = oxformer_models::EncoderInput::new(beyond_vocab.view(), ones.view());
    let error = message(model.forward(&input, &ForwardOptions::default()));
    assert!(
        error.contains("word_embeddings") && error.contains("1500"),
        "{error}"
    );

    let bad_types = ndarray::Array2::<u32>::from_elem((2, 5), 2);
    let input = oxformer_models::EncoderInput::new(ids.view(), ones.view())
        .with_token_type_ids(bad_types.view());
    let error = message(model.forward(&input, &ForwardOptions::default()));
    assert!(error.contains("token_type_embeddings"), "{error}");
}

#[test]
fn a_missing_tensor_is_named_with_its_full_path() {
    let dir = model_dir("bert-tokcls");
    let ModelConfig::Bert(config) = ModelConfig::from_folder(&dir).unwrap() else {
        unreachable!()
    };
    // Token classification checkpoints carry no pooler.
    let error = BertModel::load(&Weights::from_folder(&dir).unwrap(), &config, true).unwrap_err();
    assert!(
        error.to_string().contains("bert.pooler.dense.weight"),
        "{error}"
    );
}

/// Padding-free execution: token-wise work on the real tokens only.
#[test]
fn bert_skipping_padding_matches_at_attended_positions() {
    for name in ["bert", "bert-seqcls-single-f16", "bert-tokcls"] {
        let dir = model_dir(name);
        let ModelConfig::Bert(config) = ModelConfig::from_folder(&dir).unwrap() else {
            unreachable!()
        };
        let weights = Weights::from_folder(&dir).unwrap();
        check_body_skipping_padding(name, |input, with_pooler| {
            let model = BertModel::load(&weights, &config, with_pooler).unwrap();
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

/// Left padding (position 0 masked in a row) is run padded, so position 0 keeps transformers'
/// value even when padding is to be skipped: the pooler reads it.
#[test]
fn left_padded_batches_are_run_padded() {
    let model = bert();
    let reference = common::reference::Reference::load("bert");
    let ids = reference.ids("input_ids");
    let types = reference.ids("token_type_ids");
    let mut mask = reference.ids("attention_mask");
    mask[[3, 0]] = 0;
    let input = oxformer_models::EncoderInput::new(ids.view(), mask.view())
        .with_token_type_ids(types.view());
    let padded = model.forward(&input, &ForwardOptions::default()).unwrap();
    let skipped = model
        .forward(
            &input,
            &ForwardOptions {
                output_hidden_states: false,
                skip_padding: true,
            },
        )
        .unwrap();
    assert_eq!(padded.last_hidden_state, skipped.last_hidden_state);
    assert_eq!(padded.pooler_output, skipped.pooler_output);
}

#[test]
fn relative_position_embeddings_are_refused_not_miscomputed() {
    let dir = model_dir("bert");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    json["position_embedding_type"] = serde_json::json!("relative_key");
    let ModelConfig::Bert(config) = ModelConfig::from_json_str(&json.to_string(), "test").unwrap()
    else {
        unreachable!()
    };
    let error = BertModel::load(&Weights::from_folder(&dir).unwrap(), &config, true).unwrap_err();
    assert!(matches!(error, Error::Unsupported { .. }), "{error:?}");
    assert!(error.to_string().contains("relative_key"), "{error}");
}

/// What a model keeps between calls (its workspace: grown by a whole padded batch, then reused by
/// one sequence with padding skipped) changes no result of the calls after.
#[test]
fn a_model_reused_across_batch_shapes_matches_transformers() {
    let dir = model_dir("bert");
    let ModelConfig::Bert(config) = ModelConfig::from_folder(&dir).unwrap() else {
        unreachable!()
    };
    let reference = common::reference::Reference::load("bert");
    let weights = Weights::from_folder(&dir).unwrap();
    let model = BertModel::load(&weights, &config, reference.has("pooler_output")).unwrap();
    let ids = reference.ids("input_ids");
    let mask = reference.ids("attention_mask");
    let batch = oxformer_models::EncoderInput::new(ids.view(), mask.view());
    model.forward(&batch, &ForwardOptions::default()).unwrap();
    let first = ndarray::s![..1, ..];
    let one = oxformer_models::EncoderInput::new(ids.slice(first), mask.slice(first));
    model
        .forward(
            &one,
            &ForwardOptions {
                output_hidden_states: false,
                skip_padding: true,
            },
        )
        .unwrap();
    check_body("bert", |input, _| {
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
    check_body_skipping_padding("bert", |input, _| {
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
