//! feature-extraction against transformers' pipeline outputs in
//! `fixtures/pipelines/feature-extraction/`, and sentence embeddings of the
//! sentence-transformers fixture folders against `SentenceTransformer.encode`.

mod common;

use common::{compare, fixtures, model_dir};
use oxformer_pipelines::Task;
use oxformer_pipelines::feature_extraction::{
    FeatureExtractionOptions, FeatureExtractionPipeline, Features,
};

#[test]
fn every_fixture_case_matches_transformers() {
    common::check_task(Task::FeatureExtraction, "feature-extraction");
}

/// The reference sentence embeddings of a sentence-transformers fixture folder.
fn reference_embeddings(name: &str) -> (Vec<String>, Vec<Vec<f32>>) {
    let dir = fixtures().join("models").join(name);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let texts: Vec<String> = json["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap().to_string())
        .collect();
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = tensors.tensor("sentence_embedding").unwrap();
    let shape = view.shape().to_vec();
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|bytes| f32::from_le_bytes(bytes.try_into().unwrap()))
        .collect();
    let rows = values.chunks(shape[1]).map(<[f32]>::to_vec).collect();
    (texts, rows)
}

#[test]
fn sentence_transformers_folders_give_sentence_embeddings() {
    for name in ["st-mean", "st-cls", "st-max-normalize"] {
        let (texts, expected) = reference_embeddings(name);
        let pipeline = FeatureExtractionPipeline::new(&model_dir(name)).unwrap();
        assert!(pipeline.gives_sentence_embeddings());
        let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
        let results = pipeline
            .run(&borrowed, &FeatureExtractionOptions::default())
            .unwrap();
        for (index, (result, expected)) in results.iter().zip(&expected).enumerate() {
            let Features::Sentence(embedding) = result else {
                panic!("{name}: token features for a sentence-transformers folder");
            };
            compare(
                &serde_json::to_value(embedding).unwrap(),
                &serde_json::to_value(expected).unwrap(),
                common::TOLERANCE,
            )
            .unwrap_or_else(|error| panic!("{name} sentence {index}: {error}"));
        }
    }
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
