//! `pipeline(task, model)` and `Pipeline::call` as the one entry point for every task,
//! text-generation included (its fixture cases through `call`).

mod common;

use oxformer_pipelines::{Task, pipeline, pipeline_named};

#[test]
fn every_task_name_builds_its_pipeline() {
    let folders = [
        ("text-classification", "bert-seqcls-single"),
        ("sentiment-analysis", "bert-seqcls-single"),
        ("token-classification", "bert-tokcls"),
        ("ner", "bert-tokcls"),
        ("question-answering", "bert-qa"),
        ("fill-mask", "bert-mlm"),
        ("feature-extraction", "bert"),
        ("zero-shot-classification", "bert-nli"),
        ("text-generation", "gpt2"),
        ("text2text-generation", "t5"),
        ("summarization", "bart"),
        ("translation", "marian"),
        ("translation_XX_to_YY", "t5"),
    ];
    assert_eq!(folders.len(), Task::NAMES.len());
    for (name, folder) in folders {
        let task: Task = name.parse().unwrap();
        let mut built = pipeline_named(name, &common::model_dir(folder))
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(built.task(), task);
        built.set_threads(1).unwrap();
    }
}

#[test]
fn text_generation_cases_match_transformers_through_call() {
    common::check_task(Task::TextGeneration, "text-generation");
}

#[test]
fn feature_extraction_loads_the_base_model_of_a_head_checkpoint() {
    // transformers' feature-extraction uses AutoModel: the body of any checkpoint.
    let extractor = pipeline(Task::FeatureExtraction, &common::model_dir("bert-qa")).unwrap();
    let output = extractor
        .call(&serde_json::json!("Hello world!"), &serde_json::Map::new())
        .unwrap();
    let hidden = output[0][0].as_array().unwrap();
    assert_eq!(hidden.len(), 32, "hidden size of the fixture models");
}
