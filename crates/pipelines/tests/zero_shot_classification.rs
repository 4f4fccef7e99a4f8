//! zero-shot-classification against transformers' pipeline outputs in
//! `fixtures/pipelines/zero-shot-classification/`.

mod common;

use common::{compare, model_dir};
use oxformer_pipelines::zero_shot_classification::{
    ZeroShotClassificationPipeline, ZeroShotOptions, parse_labels,
};
use oxformer_pipelines::{Error, Task};

#[test]
fn every_fixture_case_matches_transformers() {
    common::check_task(Task::ZeroShotClassification, "zero-shot-classification");
}

#[test]
fn batched_and_one_by_one_agree() {
    let pipeline = ZeroShotClassificationPipeline::new(&model_dir("bert-nli")).unwrap();
    let texts = [
        "The team scored twice in the final minutes to win the championship.",
        "Parliament passed the new budget.",
    ];
    let mut options = ZeroShotOptions::new(parse_labels("politics, sports, technology"));
    options.batch_size = 8;
    let batched = serde_json::to_value(pipeline.run(&texts, &options).unwrap()).unwrap();
    options.batch_size = 1;
    for (index, text) in texts.iter().enumerate() {
        let alone = serde_json::to_value(&pipeline.run(&[text], &options).unwrap()[0]).unwrap();
        compare(&alone, &batched[index], 1e-5).unwrap();
    }
}

#[test]
fn labels_and_template_are_checked() {
    let pipeline = ZeroShotClassificationPipeline::new(&model_dir("bert-nli")).unwrap();
    let error = pipeline
        .run(&["Some text."], &ZeroShotOptions::new(Vec::new()))
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidOption {
                option: "candidate_labels",
                ..
            }
        ),
        "{error}"
    );
    let mut options = ZeroShotOptions::new(vec!["politics".into()]);
    options.hypothesis_template = "No placeholder.".into();
    let error = pipeline.run(&["Some text."], &options).unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidOption {
                option: "hypothesis_template",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn long_texts_are_truncated_not_refused() {
    // The premise is cut (`only_first`) so that the hypothesis still fits, as in transformers.
    let pipeline = ZeroShotClassificationPipeline::new(&model_dir("bert-nli")).unwrap();
    let long = "Parliament passed the new budget after a long debate. ".repeat(40);
    let options = ZeroShotOptions::new(parse_labels("politics, sports"));
    let result = pipeline.run(&[&long], &options).unwrap();
    assert_eq!(result[0].labels.len(), 2);
    let total: f64 = result[0].scores.iter().sum();
    assert!((total - 1.0).abs() < 1e-5, "scores sum to {total}");
}
