//! Every architecture × head against transformers' logits (1e-4), the head chosen from the
//! config's `architectures`.

mod common;

use common::{Inputs, Reference, assert_all_close, model_dir};
use oxformer_heads::{EncoderModel, HeadKind, HeadOutput};

/// Loads `fixtures/models/<name>`, checks the head `architectures` chose, and compares every
/// output the reference holds: all positions when padding is computed, attended positions (and
/// zeros at padded ones) when it is skipped, the default.
fn check(name: &str, expected_head: HeadKind) {
    let mut model = EncoderModel::from_folder(&model_dir(name)).unwrap();
    assert_eq!(model.head(), expected_head, "{name}");
    assert!(model.skips_padding());
    let reference = Reference::load(name);
    let inputs = Inputs::of(&reference);
    assert!(inputs.attention_mask.iter().any(|&value| value == 0));
    let skipped = model.forward(&inputs.view()).unwrap();
    model.set_skip_padding(false);
    let computed = model.forward(&inputs.view()).unwrap();
    assert_all_close(outputs(name, computed, &reference, None), 1e-4);
    assert_all_close(
        outputs(name, skipped, &reference, Some(&inputs.attention_mask)),
        1e-4,
    );
}

/// (what, ours, reference) for every output; with `skipped_padding`, per-token outputs at padded
/// positions must be 0 and are compared as 0.
fn outputs(
    name: &str,
    output: HeadOutput,
    reference: &Reference,
    skipped_padding: Option<&ndarray::Array2<u32>>,
) -> Vec<(String, ndarray::ArrayD<f32>, ndarray::ArrayD<f32>)> {
    let pair = |what: &str, ours: ndarray::ArrayD<f32>| {
        let mut expected = reference.floats(what);
        let per_token = matches!(what, "last_hidden_state" | "start_logits" | "end_logits")
            || (what == "logits" && ours.ndim() == 3);
        if let (Some(mask), true) = (skipped_padding, per_token) {
            for ((b, t), &attended) in mask.indexed_iter() {
                if attended == 0 {
                    let padded = ours.index_axis(ndarray::Axis(0), b);
                    let padded = padded.index_axis(ndarray::Axis(0), t);
                    assert!(
                        padded.iter().all(|&v| v == 0.0),
                        "{name} {what}: ({b}, {t}) not 0"
                    );
                    let mut target = expected.index_axis_mut(ndarray::Axis(0), b);
                    target.index_axis_mut(ndarray::Axis(0), t).fill(0.0);
                }
            }
        }
        let label = if skipped_padding.is_some() {
            " (padding skipped)"
        } else {
            ""
        };
        (format!("{name} {what}{label}"), ours, expected)
    };
    match output {
        HeadOutput::Base {
            last_hidden_state,
            pooler_output,
        } => {
            let mut pairs = vec![pair("last_hidden_state", last_hidden_state.into_dyn())];
            assert_eq!(
                pooler_output.is_some(),
                reference.has("pooler_output"),
                "{name}"
            );
            if let Some(pooled) = pooler_output {
                pairs.push(pair("pooler_output", pooled.into_dyn()));
            }
            pairs
        }
        HeadOutput::SequenceClassification { logits } => vec![pair("logits", logits.into_dyn())],
        HeadOutput::TokenClassification { logits } | HeadOutput::MaskedLm { logits } => {
            vec![pair("logits", logits.into_dyn())]
        }
        HeadOutput::QuestionAnswering {
            start_logits,
            end_logits,
        } => vec![
            pair("start_logits", start_logits.into_dyn()),
            pair("end_logits", end_logits.into_dyn()),
        ],
    }
}

#[test]
fn base_models() {
    for name in ["bert", "roberta", "xlmr", "distilbert"] {
        check(name, HeadKind::Base);
    }
}

#[test]
fn sequence_classification_single_multi_label_and_regression() {
    for name in [
        "bert-seqcls-single",
        "bert-seqcls-multi",
        "bert-regression",
        "bert-nli",
        "roberta-seqcls-single",
        "roberta-seqcls-multi",
        "roberta-regression",
        "xlmr-seqcls-single",
        "xlmr-seqcls-multi",
        "xlmr-regression",
        "distilbert-seqcls",
    ] {
        check(name, HeadKind::SequenceClassification);
    }
}

#[test]
fn sequence_classification_f16_checkpoint() {
    check("bert-seqcls-single-f16", HeadKind::SequenceClassification);
}

#[test]
fn token_classification() {
    for name in [
        "bert-tokcls",
        "roberta-tokcls",
        "xlmr-tokcls",
        "distilbert-tokcls",
    ] {
        check(name, HeadKind::TokenClassification);
    }
}

#[test]
fn token_classification_bf16_checkpoint() {
    check("roberta-tokcls-bf16", HeadKind::TokenClassification);
}

#[test]
fn question_answering() {
    for name in ["bert-qa", "roberta-qa", "xlmr-qa", "distilbert-qa"] {
        check(name, HeadKind::QuestionAnswering);
    }
}

#[test]
fn question_answering_sharded_checkpoint() {
    check("xlmr-qa-sharded", HeadKind::QuestionAnswering);
}

#[test]
fn masked_lm_with_decoder_tied_to_the_word_embeddings() {
    for name in ["bert-mlm", "roberta-mlm", "xlmr-mlm", "distilbert-mlm"] {
        check(name, HeadKind::MaskedLm);
    }
}

#[test]
fn a_task_model_loaded_as_base_gives_the_body_outputs() {
    let name = "bert-seqcls-single";
    let mut model = EncoderModel::from_folder_as(&model_dir(name), HeadKind::Base).unwrap();
    model.set_skip_padding(false);
    assert_eq!(model.head(), HeadKind::Base);
    let reference = Reference::load(name);
    let inputs = Inputs::of(&reference);
    let HeadOutput::Base {
        last_hidden_state,
        pooler_output,
    } = model.forward(&inputs.view()).unwrap()
    else {
        panic!("expected the base output");
    };
    assert_all_close(
        vec![
            (
                "last_hidden_state".into(),
                last_hidden_state.into_dyn(),
                reference.floats("last_hidden_state"),
            ),
            (
                "pooler_output".into(),
                pooler_output.unwrap().into_dyn(),
                reference.floats("pooler_output"),
            ),
        ],
        1e-4,
    );
}

#[test]
fn labels_and_problem_type_stay_in_the_config() {
    let model = EncoderModel::from_folder(&model_dir("bert-seqcls-multi")).unwrap();
    let common = model.config().common();
    assert_eq!(
        common.problem_type,
        Some(oxformer_models::ProblemType::MultiLabelClassification)
    );
    assert_eq!(common.label(1), Some("insult"));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let name = "roberta-tokcls";
    let reference = Reference::load(name);
    let inputs = Inputs::of(&reference);
    let mut outputs = Vec::new();
    for threads in [1, 2, 3] {
        let mut model = EncoderModel::from_folder(&model_dir(name)).unwrap();
        model.set_num_threads(threads).unwrap();
        model.set_skip_padding(false);
        let HeadOutput::TokenClassification { logits } = model.forward(&inputs.view()).unwrap()
        else {
            panic!("expected token logits");
        };
        outputs.push(logits);
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
    assert_all_close(
        vec![(
            "logits".into(),
            outputs.remove(0).into_dyn(),
            reference.floats("logits"),
        )],
        1e-4,
    );
}
