//! token-classification against transformers' pipeline outputs in
//! `fixtures/pipelines/token-classification/` (every aggregation strategy and architecture,
//! long texts in windows, the bf16 checkpoint).

mod common;

use common::{cases, compare, model_dir};
use oxformer_pipelines::token_classification::{
    AggregationStrategy, TokenClassificationOptions, TokenClassificationPipeline,
};
use oxformer_pipelines::{Error, Task};

#[test]
fn every_fixture_case_matches_transformers() {
    common::check_task(Task::TokenClassification, "token-classification");
}

#[test]
fn batched_and_one_by_one_agree() {
    let case = cases("token-classification")
        .into_iter()
        .find(|case| case.name == "bert-tokcls-batch-simple")
        .unwrap();
    let texts: Vec<&str> = case
        .inputs
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap())
        .collect();
    let pipeline = TokenClassificationPipeline::new(&model_dir(&case.model)).unwrap();
    let options = TokenClassificationOptions {
        aggregation_strategy: Some(AggregationStrategy::Average),
        batch_size: 8,
        ..Default::default()
    };
    let batched = serde_json::to_value(pipeline.run(&texts, &options).unwrap()).unwrap();
    let one = TokenClassificationOptions {
        batch_size: 1,
        ..options
    };
    for (index, text) in texts.iter().enumerate() {
        let alone = serde_json::to_value(&pipeline.run(&[text], &one).unwrap()[0]).unwrap();
        compare(&alone, &batched[index], 1e-5).unwrap();
    }
}

#[test]
fn bad_options_are_errors() {
    let pipeline = TokenClassificationPipeline::new(&model_dir("bert-tokcls")).unwrap();
    let text = ["My name is Wolfgang."];
    let too_long = TokenClassificationOptions {
        aggregation_strategy: Some(AggregationStrategy::Simple),
        stride: Some(128),
        ..Default::default()
    };
    let error = pipeline.run(&text, &too_long).unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidOption {
                option: "stride",
                ..
            }
        ),
        "{error}"
    );
    let with_none = TokenClassificationOptions {
        aggregation_strategy: Some(AggregationStrategy::None),
        stride: Some(8),
        ..Default::default()
    };
    assert!(pipeline.run(&text, &with_none).is_err());
    assert!("maximum".parse::<AggregationStrategy>().is_err());
    let error = pipeline
        .run(&[""], &TokenClassificationOptions::default())
        .unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
}

#[test]
fn a_stride_leaving_no_room_is_a_user_error() {
    // 127 of 128 positions leave no room once [CLS] and [SEP] are added.
    let pipeline = TokenClassificationPipeline::new(&model_dir("bert-tokcls")).unwrap();
    let options = TokenClassificationOptions {
        aggregation_strategy: Some(AggregationStrategy::First),
        stride: Some(127),
        ..Default::default()
    };
    let long = "My name is Wolfgang and I live in Berlin. ".repeat(30);
    let error = pipeline.run(&[&long], &options).unwrap_err();
    assert!(error.is_user_error(), "{error}");
}
