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
        max_length: None,
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

/// `run_inputs` with token ids: the ids the folder's tokenizer makes for a text embed as that
/// text does (whose embedding matches sentence-transformers above); empty ids, ids the
/// tokenizer does not know, and ids under a prompt are errors; a side cuts ids at that end.
#[test]
fn token_ids_embed_as_the_text_they_encode() {
    use oxformer_pipelines::sentence_embeddings::EmbeddingInput;
    use oxformer_tokenizer::{EncodeOptions, Side, Tokenizer};

    let pipeline = pipeline_for("st-mean", Task::SentenceEmbeddings);
    let pipeline = pipeline.sentence_embeddings().unwrap();
    let tokenizer = Tokenizer::from_folder(model_dir("st-mean")).unwrap();
    let texts = ["A man is eating food.", "hello"];
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|text| {
            let encoding = tokenizer.encode(*text, &EncodeOptions::default()).unwrap();
            encoding.ids().to_vec()
        })
        .collect();
    let options = SentenceEmbeddingsOptions::default();
    let by_text = pipeline.run(&texts, &options).unwrap();
    let inputs = [
        EmbeddingInput::TokenIds(&ids[0]),
        EmbeddingInput::Text(texts[1]),
    ];
    let mixed = pipeline.run_inputs(&inputs, &options, None).unwrap();
    for (a, b) in mixed.iter().zip(&by_text) {
        close("token ids", a, b);
    }

    let error = |inputs: &[EmbeddingInput<'_>], pipeline: &SentenceEmbeddingsPipeline| {
        pipeline.run_inputs(inputs, &options, None).unwrap_err()
    };
    assert!(matches!(
        error(&[EmbeddingInput::TokenIds(&[])], pipeline),
        Error::InvalidInput { .. }
    ));
    let unknown = error(&[EmbeddingInput::TokenIds(&[u32::MAX])], pipeline);
    assert!(unknown.to_string().contains("token id"), "{unknown}");
    let prompted = pipeline_for("st-dense-prompts", Task::SentenceEmbeddings);
    let prompted = prompted.sentence_embeddings().unwrap();
    let with_prompt = error(&[EmbeddingInput::TokenIds(&ids[0])], prompted);
    assert!(with_prompt.to_string().contains("prompt"), "{with_prompt}");

    // Past the model's length, Left keeps the last ids and Right the first.
    // 150 ids of the first text, then 150 of the second: the two ends differ.
    let long: Vec<u32> = (ids[0].iter().copied().cycle().take(150))
        .chain(ids[1].iter().copied().cycle().take(150))
        .collect();
    let max_length = 128; // st-mean's max_seq_length
    let cut = |side| {
        pipeline
            .run_inputs(&[EmbeddingInput::TokenIds(&long)], &options, Some(side))
            .unwrap()
    };
    let kept = |ids: &[u32]| {
        pipeline
            .run_inputs(&[EmbeddingInput::TokenIds(ids)], &options, None)
            .unwrap()
    };
    close(
        "left",
        &cut(Side::Left)[0],
        &kept(&long[300 - max_length..])[0],
    );
    close("right", &cut(Side::Right)[0], &kept(&long[..max_length])[0]);
    let (left, right) = (cut(Side::Left), cut(Side::Right));
    assert!(
        left[0]
            .iter()
            .zip(&right[0])
            .any(|(a, b)| (a - b).abs() > 1e-3)
    );
}

/// Every value within [`TOLERANCE`], the first difference named.
fn close(what: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (index, (a, b)) in actual.iter().zip(expected).enumerate() {
        assert!(
            f64::from((a - b).abs()) <= TOLERANCE,
            "{what}: [{index}] {a} vs {b}"
        );
    }
}
