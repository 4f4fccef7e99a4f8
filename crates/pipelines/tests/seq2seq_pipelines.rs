//! The summarization, translation and text2text-generation pipelines on the tiny T5, T5 v1.1, BART
//! and Marian checkpoints against transformers' (`fixtures/pipelines/seq2seq/<model>.json`, from
//! `xtask/python/fixtures_seq2seq_pipelines.py`): the JSON `Pipeline::call` returns equals
//! transformers' output exactly (our inputs run as one padded batch, transformers' one at a time);
//! each input's tokens equal those of transformers' `generate()` call, and beam scores agree
//! within 1e-4, with the settings the pipeline resolved.

mod common;

use std::collections::HashMap;

use common::fixtures;
use oxformer_pipelines::generation::{Generation, Prompts};
use oxformer_pipelines::text2text_generation::{Generated, Text2TextGenerationPipeline};
use oxformer_pipelines::{Pipeline, pipeline_named};
use serde_json::{Map, Value};

const TOLERANCE: f32 = 1e-4;
const MODELS: [&str; 4] = ["t5", "t5-v1_1", "bart", "marian"];

fn reference(model: &str) -> Value {
    let path = fixtures().join(format!("pipelines/seq2seq/{model}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap() as u32)
        .collect()
}

fn rows(value: &Value) -> Vec<Vec<u32>> {
    value.as_array().unwrap().iter().map(ids).collect()
}

fn text2text(pipeline: &Pipeline) -> &Text2TextGenerationPipeline {
    pipeline
        .text2text_generation()
        .expect("a text2text pipeline")
}

#[test]
fn every_pipeline_case_matches_transformers() {
    let mut checked = 0;
    for model in MODELS {
        let folder = fixtures().join("models").join(model);
        let record = reference(model);
        let mut pipelines: HashMap<String, Pipeline> = HashMap::new();
        for (case, spec) in record["cases"].as_object().unwrap() {
            let task = spec["task"].as_str().unwrap();
            let pipeline = pipelines.entry(task.to_string()).or_insert_with(|| {
                pipeline_named(task, folder.to_str().unwrap())
                    .unwrap_or_else(|error| panic!("{model} {task}: {error}"))
            });
            let typed = text2text(pipeline);
            assert_eq!(
                typed.prefix(),
                spec["prefix"].as_str(),
                "{model}/{case}: prefix"
            );
            let options: &Map<String, Value> = spec["options"].as_object().unwrap();

            // Each input alone through the engine, with the settings the pipeline resolved.
            let resolved = typed.options_from_json(options).unwrap().generation;
            for (index, call) in spec["generate_calls"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                let input_ids = rows(&call["input_ids"]);
                let mask = input_ids.iter().map(|row| vec![1; row.len()]).collect();
                let prompts = Prompts::from_padded(input_ids, mask).unwrap();
                let generated = Generation::new(typed.model(), &prompts, &resolved)
                    .unwrap()
                    .run()
                    .unwrap();
                let expected = rows(&call["sequences"]);
                assert_eq!(
                    generated.sequences, expected,
                    "{model}/{case}: input {index}: tokens"
                );
                if let Some(scores) = call.get("sequences_scores") {
                    let ours = generated.sequences_scores.expect("beam scores");
                    let expected: Vec<f32> = scores
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|score| score.as_f64().unwrap() as f32)
                        .collect();
                    assert_eq!(ours.len(), expected.len());
                    for (a, b) in ours.iter().zip(&expected) {
                        assert!(
                            (a - b).abs() <= TOLERANCE,
                            "{model}/{case}: input {index}: score {a} vs {b}"
                        );
                    }
                }
            }
            let output = pipeline
                .call(&spec["inputs"], options)
                .unwrap_or_else(|error| panic!("{model}/{case}: {error}"));
            assert_eq!(output, spec["output"], "{model}/{case}: pipeline output");
            println!("{model}/{case}: ok");
            checked += 1;
        }
    }
    assert!(checked >= 25, "every case is read ({checked})");
}

#[test]
fn batched_generation_equals_one_by_one() {
    let folder = fixtures().join("models/t5");
    let pipeline = Text2TextGenerationPipeline::from_folder(&folder, "summarization").unwrap();
    let texts = [
        "Hello world!",
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "A third, middling input.",
    ];
    for options in [
        r#"{"num_beams": 1, "max_new_tokens": 9, "min_length": 0, "return_tensors": true}"#,
        r#"{"num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 11, "return_tensors": true}"#,
        r#"{"max_new_tokens": 14, "early_stopping": "never", "length_penalty": 0.5}"#,
    ] {
        let options: Map<String, Value> = serde_json::from_str(options).unwrap();
        let typed = pipeline.options_from_json(&options).unwrap();
        let batched = pipeline.run(&texts, &typed).unwrap();
        let alone: Vec<Vec<Generated>> = texts
            .iter()
            .map(|text| pipeline.run(&[*text], &typed).unwrap().remove(0))
            .collect();
        assert_eq!(batched, alone, "{options:?}");
    }
}

#[test]
fn settings_resolve_in_transformers_order() {
    let t5 = fixtures().join("models/t5");
    // task params: max_length 200 does not drop the pipeline's max_new_tokens
    let summarization = Text2TextGenerationPipeline::from_folder(&t5, "summarization").unwrap();
    let config = summarization.generation_config();
    assert_eq!(config.max_new_tokens, Some(256));
    assert_eq!(config.max_length, Some(200));
    assert_eq!(config.min_length, 30);
    assert_eq!(summarization.prefix(), Some("summarize: "));
    // plain translation takes the first translation_* entry
    let translation = Text2TextGenerationPipeline::from_folder(&t5, "translation").unwrap();
    assert_eq!(translation.task_name(), "translation_en_to_de");
    assert_eq!(translation.prefix(), Some("translate English to German: "));
    // a model max_length other than 20 drops the pipeline's max_new_tokens
    let bart =
        Text2TextGenerationPipeline::from_folder(&fixtures().join("models/bart"), "summarization")
            .unwrap();
    assert_eq!(bart.generation_config().max_new_tokens, None);
    assert_eq!(bart.generation_config().max_length, Some(142));
    assert_eq!(bart.generation_config().forced_bos_token_id, Some(0));
}

#[test]
fn bad_inputs_are_errors() {
    let t5 = fixtures().join("models/t5");
    let gpt2 = fixtures().join("models/gpt2");
    let error = Text2TextGenerationPipeline::from_folder(&gpt2, "summarization")
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("gpt2"), "{error}");
    let error = Text2TextGenerationPipeline::from_folder(&t5, "fill-mask")
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("fill-mask"), "{error}");
    let dir = tempfile_dir();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "pegasus", "d_model": 16}"#,
    )
    .unwrap();
    let error = Text2TextGenerationPipeline::from_folder(&dir, "summarization")
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("pegasus"), "{error}");

    let pipeline = pipeline_named("summarization", t5.to_str().unwrap()).unwrap();
    let empty = Map::new();
    for (inputs, options) in [
        (Value::from(""), "{}"),
        (Value::from(3), "{}"),
        (Value::from("Hello"), r#"{"num_beams": "four"}"#),
        (Value::from("Hello"), r#"{"unknown_option": 1}"#),
        (
            Value::from("Hello"),
            r#"{"num_beams": 2, "num_return_sequences": 3}"#,
        ),
        (Value::from("Hello"), r#"{"max_new_tokens": 0}"#),
    ] {
        let options: Map<String, Value> = serde_json::from_str(options).unwrap_or(empty.clone());
        let error = pipeline.call(&inputs, &options).unwrap_err().to_string();
        assert!(error.starts_with("summarization"), "{error}");
    }
    // over-long input: an error naming the limit, or cut with truncation
    let bart = pipeline_named(
        "summarization",
        fixtures().join("models/bart").to_str().unwrap(),
    )
    .unwrap();
    let long = "word ".repeat(2000);
    let error = bart
        .call(&Value::from(long.as_str()), &empty)
        .unwrap_err()
        .to_string();
    assert!(error.contains("at most"), "{error}");
    let options: Map<String, Value> =
        serde_json::from_str(r#"{"truncation": true, "max_new_tokens": 3, "num_beams": 1}"#)
            .unwrap();
    assert!(bart.call(&Value::from(long.as_str()), &options).is_ok());
    // T5 has relative positions: past the tokenizer's model_max_length (512) it runs whole, as
    // in transformers (which only warns on stderr)
    let options: Map<String, Value> =
        serde_json::from_str(r#"{"max_new_tokens": 2, "num_beams": 1}"#).unwrap();
    let result = pipeline.call(&Value::from(long.as_str()), &options);
    assert!(result.is_ok(), "{result:?}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("oxformer-seq2seq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn greedy_streaming_gives_the_pipeline_text() {
    let folder = fixtures().join("models/marian");
    let pipeline = Text2TextGenerationPipeline::from_folder(&folder, "translation").unwrap();
    let options: Map<String, Value> =
        serde_json::from_str(r#"{"num_beams": 1, "max_new_tokens": 15}"#).unwrap();
    let typed = pipeline.options_from_json(&options).unwrap();
    let text = "The train to Paris leaves at nine in the morning.";
    let streamed: String = pipeline
        .stream(text, &typed)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let Generated::Text(expected) = pipeline.run(&[text], &typed).unwrap().remove(0).remove(0)
    else {
        panic!("text expected");
    };
    assert_eq!(streamed, expected);
    let beams: Map<String, Value> = serde_json::from_str(r#"{"num_beams": 2}"#).unwrap();
    let typed = pipeline.options_from_json(&beams).unwrap();
    assert!(pipeline.stream(text, &typed).is_err());
}
