//! feature-extraction against transformers' pipeline outputs in
//! `fixtures/pipelines/feature-extraction/`, sentence-transformers folders included.

mod common;

use common::{compare, model_dir};
use oxformer_pipelines::Task;
use oxformer_pipelines::feature_extraction::{
    FeatureExtractionOptions, FeatureExtractionPipeline, Features,
};

#[test]
fn every_fixture_case_matches_transformers() {
    common::check_task(Task::FeatureExtraction, "feature-extraction");
}

#[test]
fn sentence_transformers_folders_give_token_embeddings_as_transformers() {
    // The fixture cases on st-* folders are transformers' own pipeline outputs (checked by
    // `every_fixture_case_matches_transformers`); here, their shape is (1, tokens, hidden).
    let pipeline = FeatureExtractionPipeline::new(&model_dir("st-dense-prompts")).unwrap();
    let results = pipeline
        .run(&["Hello world!"], &FeatureExtractionOptions::default())
        .unwrap();
    let Features(batch) = &results[0];
    assert_eq!(batch.len(), 1);
    assert!(batch[0].len() > 2, "one vector per token");
    assert_eq!(
        batch[0][0].len(),
        32,
        "the transformer's hidden size, not the Dense width"
    );
}

#[test]
fn batched_and_one_by_one_agree() {
    let pipeline = FeatureExtractionPipeline::new(&model_dir("roberta")).unwrap();
    let texts = [
        "Hello world!",
        "A longer sentence for the batch, with more tokens.",
        "Hi.",
    ];
    let options = FeatureExtractionOptions {
        batch_size: 0,
        ..Default::default()
    };
    let batched = serde_json::to_value(pipeline.run(&texts, &options).unwrap()).unwrap();
    let one = FeatureExtractionOptions {
        batch_size: 1,
        ..options
    };
    for (index, text) in texts.iter().enumerate() {
        let alone = serde_json::to_value(&pipeline.run(&[text], &one).unwrap()[0]).unwrap();
        compare(&alone, &batched[index], 1e-5).unwrap();
    }
}
