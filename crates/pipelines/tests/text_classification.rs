//! text-classification against transformers' pipeline outputs in
//! `fixtures/pipelines/text-classification/`.

mod common;

use common::{TOLERANCE, cases, compare, model_dir};
use oxformer_pipelines::text_classification::{
    ClassificationOutput, ClassificationTopK, TextClassificationOptions,
    TextClassificationPipeline, TextInput,
};
use oxformer_pipelines::{Error, Task, pipeline};
use serde_json::{Map, Value, json};

#[test]
fn every_fixture_case_matches_transformers() {
    common::check_task(Task::TextClassification, "text-classification");
}

#[test]
fn sentiment_analysis_is_an_alias() {
    let task: Task = "sentiment-analysis".parse().unwrap();
    assert_eq!(task, Task::TextClassification);
    assert!(matches!(
        "image-classification".parse::<Task>(),
        Err(Error::UnknownTask { .. })
    ));
}

fn batch_texts() -> Vec<TextInput> {
    let case = cases("text-classification")
        .into_iter()
        .find(|case| case.name == "bert-seqcls-single-batch")
        .expect("case");
    case.inputs
        .as_array()
        .unwrap()
        .iter()
        .map(|text| TextInput::from(text.as_str().unwrap()))
        .collect()
}

#[test]
fn batched_and_one_by_one_agree() {
    let pipeline = TextClassificationPipeline::new(&model_dir("bert-seqcls-single")).unwrap();
    let inputs = batch_texts();
    let options = TextClassificationOptions {
        top_k: ClassificationTopK::All,
        batch_size: 8,
        ..Default::default()
    };
    let batched = serde_json::to_value(pipeline.run(&inputs, &options).unwrap()).unwrap();
    let single_options = TextClassificationOptions {
        batch_size: 1,
        ..options
    };
    for (index, input) in inputs.iter().enumerate() {
        let alone = pipeline
            .run(std::slice::from_ref(input), &single_options)
            .unwrap();
        let alone = serde_json::to_value(&alone[0]).unwrap();
        compare(&alone, &batched[index], 1e-5).unwrap();
    }
}

#[test]
fn empty_text_and_unknown_options_are_errors() {
    let classifier = pipeline(Task::TextClassification, &model_dir("bert-seqcls-single")).unwrap();
    let error = classifier.call(&json!(""), &Map::new()).unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
    assert!(error.is_user_error());

    let mut options = Map::new();
    options.insert("top_kk".into(), json!(2));
    let error = classifier.call(&json!("Hello"), &options).unwrap_err();
    assert!(error.to_string().contains("top_kk"), "{error}");

    let mut options = Map::new();
    options.insert("function_to_apply".into(), json!("tanh"));
    let error = classifier.call(&json!("Hello"), &options).unwrap_err();
    assert!(matches!(error, Error::InvalidOption { .. }), "{error}");
}

#[test]
fn over_long_input_is_an_error_unless_truncated() {
    let pipeline = TextClassificationPipeline::new(&model_dir("bert-seqcls-single")).unwrap();
    let long = TextInput::from("I love this movie, it was wonderful! ".repeat(60));
    let error = pipeline
        .run(
            std::slice::from_ref(&long),
            &TextClassificationOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
    let options = TextClassificationOptions {
        truncation: true,
        ..Default::default()
    };
    let result = pipeline.run(&[long], &options).unwrap();
    assert!(matches!(result[0], ClassificationOutput::Best(_)));
}

#[test]
fn a_model_without_the_head_is_refused() {
    let error = pipeline(Task::TextClassification, &model_dir("bert-qa"))
        .err()
        .expect("bert-qa has no sequence classification head");
    assert!(matches!(error, Error::WrongHead { .. }), "{error}");
    let error = pipeline(Task::TextClassification, "/no/such/folder")
        .err()
        .expect("missing folder");
    assert!(error.is_user_error(), "{error}");
}

#[test]
fn single_text_output_has_transformers_shape() {
    // transformers wraps a single text's best label in a list; with top_k it does not.
    let case = cases("text-classification")
        .into_iter()
        .find(|case| case.name == "bert-seqcls-single-single")
        .unwrap();
    let classifier = pipeline(Task::TextClassification, &model_dir(&case.model)).unwrap();
    let output = classifier.call(&case.inputs, &case.options).unwrap();
    assert!(matches!(&output, Value::Array(items) if items.len() == 1 && items[0].is_object()));
    compare(&output, &case.output, TOLERANCE).unwrap();
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let inputs = batch_texts();
    let options = TextClassificationOptions {
        top_k: ClassificationTopK::All,
        ..Default::default()
    };
    let mut outputs = Vec::new();
    for threads in [1, 2] {
        let mut classifier =
            pipeline(Task::TextClassification, &model_dir("bert-seqcls-single")).unwrap();
        classifier.set_threads(threads).unwrap();
        let classifier = classifier.text_classification().unwrap();
        outputs.push(serde_json::to_value(classifier.run(&inputs, &options).unwrap()).unwrap());
    }
    compare(&outputs[0], &outputs[1], 1e-6).unwrap();
}
