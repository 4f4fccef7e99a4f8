//! fill-mask against transformers' pipeline outputs in `fixtures/pipelines/fill-mask/`.

mod common;

use common::{cases, compare, model_dir};
use oxformer_pipelines::fill_mask::{FillMaskOptions, FillMaskPipeline};
use oxformer_pipelines::{Error, Task};

#[test]
fn every_fixture_case_matches_transformers() {
    common::check_task(Task::FillMask, "fill-mask");
}

#[test]
fn batched_and_one_by_one_agree() {
    let case = cases("fill-mask")
        .into_iter()
        .find(|case| case.name == "bert-mlm-batch-size-2")
        .unwrap();
    let texts: Vec<&str> = case
        .inputs
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap())
        .collect();
    let pipeline = FillMaskPipeline::new(&model_dir(&case.model)).unwrap();
    let options = FillMaskOptions {
        batch_size: 8,
        ..Default::default()
    };
    let batched = serde_json::to_value(pipeline.run(&texts, &options).unwrap()).unwrap();
    let one = FillMaskOptions {
        batch_size: 1,
        ..options
    };
    for (index, text) in texts.iter().enumerate() {
        let alone = serde_json::to_value(&pipeline.run(&[text], &one).unwrap()[0]).unwrap();
        compare(&alone, &batched[index], 1e-5).unwrap();
    }
}

#[test]
fn text_without_mask_is_an_error() {
    let pipeline = FillMaskPipeline::new(&model_dir("roberta-mlm")).unwrap();
    assert_eq!(pipeline.mask_token(), Some("<mask>"));
    let error = pipeline
        .run(&["No mask here."], &FillMaskOptions::default())
        .unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
    assert!(error.to_string().contains("<mask>"), "{error}");
}

#[test]
fn over_long_text_is_an_error_not_a_panic() {
    let pipeline = FillMaskPipeline::new(&model_dir("bert-mlm")).unwrap();
    let long = format!(
        "{} The capital of France is [MASK].",
        "Hello world. ".repeat(80)
    );
    let error = pipeline
        .run(&[&long], &FillMaskOptions::default())
        .unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
}
