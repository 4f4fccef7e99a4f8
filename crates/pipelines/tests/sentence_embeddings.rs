//! sentence-embeddings and sentence-similarity on the sentence-transformers fixture folders
//! (`fixtures/models/st-*`) against sentence-transformers 5.1.2: `encode()` under each option
//! (`reference.json` "encode") and `util.cos_sim` ("similarity"), through the typed pipeline
//! and through `Pipeline::call`.

mod common;

use common::{TOLERANCE, compare, fixtures, model_dir};
use oxformer_pipelines::sentence_embeddings::{
    SentenceEmbeddingsOptions, SentenceEmbeddingsPipeline,
};
use oxformer_pipelines::{Error, Task, pipeline};
use serde_json::{Map, Value, json};

const FOLDERS: [&str; 8] = [
    "st-mean",
    "st-cls",
    "st-max-normalize",
    "st-mean-sqrt-len",
    "st-weightedmean",
    "st-lasttoken",
    "st-all-poolings",
    "st-dense-prompts",
];

fn reference(name: &str) -> Value {
    let path = fixtures().join("models").join(name).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap().to_string())
        .collect()
}

/// `encode()`'s keyword arguments as the typed options.
fn typed_options(options: &Map<String, Value>) -> SentenceEmbeddingsOptions {
    for key in options.keys() {
        assert!(
            matches!(
                key.as_str(),
                "prompt_name" | "prompt" | "normalize_embeddings" | "batch_size"
            ),
            "a reference option the test does not map: {key}"
        );
    }
    SentenceEmbeddingsOptions {
        prompt_name: options
            .get("prompt_name")
            .and_then(Value::as_str)
            .map(str::to_string),
        prompt: options
            .get("prompt")
            .and_then(Value::as_str)
            .map(str::to_string),
        normalize_embeddings: options
            .get("normalize_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        truncate_dim: None,
        batch_size: options
            .get("batch_size")
            .and_then(Value::as_u64)
            .map_or(0, |size| size as usize),
    }
}

#[test]
fn every_encode_case_matches_sentence_transformers() {
    for name in FOLDERS {
        let reference = reference(name);
        let pipeline = SentenceEmbeddingsPipeline::new(&model_dir(name)).unwrap();
        let cases = reference["encode"].as_array().unwrap();
        assert!(cases.len() >= 4, "{name}: encode cases");
        for case in cases {
            let label = format!("{name} {}", case["case"]);
            let texts = strings(&case["texts"]);
            let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
            let options = case["options"].as_object().unwrap();
            let ours = pipeline.run(&borrowed, &typed_options(options)).unwrap();
            compare(&json!(ours), &case["output"], TOLERANCE)
                .unwrap_or_else(|error| panic!("{label}: {error}"));

            // The same through Pipeline::call, with transformers-style JSON options.
            let called = pipeline_for(name, Task::SentenceEmbeddings)
                .call(&json!(borrowed), options)
                .unwrap();
            compare(&called, &case["output"], TOLERANCE)
                .unwrap_or_else(|error| panic!("{label} (call): {error}"));
        }
    }
}

fn pipeline_for(name: &str, task: Task) -> oxformer_pipelines::Pipeline {
    pipeline(task, &model_dir(name)).unwrap()
}

#[test]
fn sentence_similarity_is_the_cosine_of_the_embeddings() {
    for name in FOLDERS {
        let reference = reference(name);
        let case = &reference["similarity"][0];
        let inputs = json!({
            "source_sentence": case["source_sentence"],
            "sentences": case["sentences"],
        });
        let scores = pipeline_for(name, Task::SentenceSimilarity)
            .call(&inputs, &Map::new())
            .unwrap();
        compare(&scores, &case["output"], TOLERANCE)
            .unwrap_or_else(|error| panic!("{name} similarity: {error}"));
    }
}

#[test]
fn truncate_dim_keeps_the_first_values() {
    let pipeline = SentenceEmbeddingsPipeline::new(&model_dir("st-all-poolings")).unwrap();
    let texts = ["That is a happy person", "Today is a sunny day"];
    let full = pipeline
        .run(&texts, &SentenceEmbeddingsOptions::default())
        .unwrap();
    assert_eq!(full[0].len(), pipeline.embedding_dimension());
    let options = SentenceEmbeddingsOptions {
        truncate_dim: Some(10),
        ..Default::default()
    };
    let cut = pipeline.run(&texts, &options).unwrap();
    for (cut, full) in cut.iter().zip(&full) {
        assert_eq!(cut.as_slice(), &full[..10]);
    }
}

#[test]
fn bad_inputs_and_options_are_errors() {
    let pipeline = SentenceEmbeddingsPipeline::new(&model_dir("st-dense-prompts")).unwrap();
    let unknown = SentenceEmbeddingsOptions {
        prompt_name: Some("summary".to_string()),
        ..Default::default()
    };
    let error = pipeline.run(&["Hello"], &unknown).unwrap_err();
    assert!(error.is_user_error(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("summary") && message.contains("passage"),
        "{message}"
    );

    let error = pipeline
        .run(&[""], &SentenceEmbeddingsOptions::default())
        .unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error}");

    let zero = SentenceEmbeddingsOptions {
        truncate_dim: Some(0),
        ..Default::default()
    };
    assert!(pipeline.run(&["Hello"], &zero).unwrap_err().is_user_error());

    let similarity = pipeline_for("st-mean", Task::SentenceSimilarity);
    for inputs in [
        json!("just a text"),
        json!({"source_sentence": "a"}),
        json!({"source_sentence": "a", "sentences": []}),
        json!({"source_sentence": "a", "sentences": [1]}),
        json!({"source_sentence": "a", "sentences": ["b"], "extra": 1}),
    ] {
        let error = similarity.call(&inputs, &Map::new()).unwrap_err();
        assert!(error.is_user_error(), "{inputs}: {error}");
    }
}

#[test]
fn a_folder_without_modules_json_is_not_a_sentence_transformer() {
    let error = match SentenceEmbeddingsPipeline::new(&model_dir("bert")) {
        Ok(_) => panic!("bert has no modules.json"),
        Err(error) => error,
    };
    let message = error.to_string();
    assert!(message.contains("modules.json"), "{message}");
}
