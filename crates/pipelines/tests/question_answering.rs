//! question-answering against transformers' pipeline outputs in
//! `fixtures/pipelines/question-answering/` (long contexts in windows, every option, every
//! architecture, the sharded checkpoint).

mod common;

use common::{cases, compare, model_dir};
use oxformer_pipelines::question_answering::{
    QaInput, QuestionAnsweringOptions, QuestionAnsweringPipeline,
};
use oxformer_pipelines::{Error, Task};

#[test]
fn every_fixture_case_matches_transformers() {
    common::check_task(Task::QuestionAnswering, "question-answering");
}

#[test]
fn batched_and_one_by_one_agree() {
    let case = cases("question-answering")
        .into_iter()
        .find(|case| case.name == "bert-qa-batch")
        .unwrap();
    let inputs: Vec<QaInput> = serde_json::from_value(case.inputs.clone()).unwrap();
    let pipeline = QuestionAnsweringPipeline::new(&model_dir(&case.model)).unwrap();
    let options = QuestionAnsweringOptions {
        top_k: 3,
        batch_size: 8,
        ..Default::default()
    };
    let batched = serde_json::to_value(pipeline.run(&inputs, &options).unwrap()).unwrap();
    let one = QuestionAnsweringOptions {
        batch_size: 1,
        ..options
    };
    for (index, input) in inputs.iter().enumerate() {
        let alone = pipeline.run(std::slice::from_ref(input), &one).unwrap();
        compare(
            &serde_json::to_value(&alone[0]).unwrap(),
            &batched[index],
            1e-5,
        )
        .unwrap();
    }
}

#[test]
fn bad_inputs_and_options_are_errors() {
    let pipeline = QuestionAnsweringPipeline::new(&model_dir("bert-qa")).unwrap();
    let input = QaInput {
        question: "Where?".into(),
        context: "In London.".into(),
    };
    let empty = QaInput {
        question: String::new(),
        context: "In London.".into(),
    };
    let error = pipeline
        .run(&[empty], &QuestionAnsweringOptions::default())
        .unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
    let stride = QuestionAnsweringOptions {
        doc_stride: Some(100),
        max_seq_len: Some(64),
        ..Default::default()
    };
    let error = pipeline
        .run(std::slice::from_ref(&input), &stride)
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidOption {
                option: "doc_stride",
                ..
            }
        ),
        "{error}"
    );
    let top_k = QuestionAnsweringOptions {
        top_k: 0,
        ..Default::default()
    };
    assert!(pipeline.run(std::slice::from_ref(&input), &top_k).is_err());
    // A question that leaves no room for the context is an error, not a panic.
    let long_question = QaInput {
        question: "Where does Sarah live with her cats? ".repeat(20),
        context: "Sarah lives in London.".into(),
    };
    let short = QuestionAnsweringOptions {
        max_seq_len: Some(32),
        doc_stride: Some(8),
        ..Default::default()
    };
    let error = pipeline.run(&[long_question], &short).unwrap_err();
    assert!(error.is_user_error(), "{error}");
}
