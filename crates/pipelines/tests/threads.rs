//! Pipelines are shared between threads: every pipeline type is `Send + Sync`, and one pipeline
//! called from 8 threads at once answers exactly as the same calls made one after another
//! (an encoder task and greedy generation, on the fixture models).

use std::path::PathBuf;
use std::sync::Barrier;

use oxformer_pipelines::feature_extraction::FeatureExtractionPipeline;
use oxformer_pipelines::fill_mask::FillMaskPipeline;
use oxformer_pipelines::question_answering::QuestionAnsweringPipeline;
use oxformer_pipelines::text_classification::TextClassificationPipeline;
use oxformer_pipelines::text_generation::TextGenerationPipeline;
use oxformer_pipelines::token_classification::TokenClassificationPipeline;
use oxformer_pipelines::zero_shot_classification::ZeroShotClassificationPipeline;
use oxformer_pipelines::{Loaded, Pipeline, Task, pipeline};
use serde_json::{Map, Value, json};

/// Compiles only while every pipeline type can be shared and sent between threads.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Pipeline>();
    shared::<Loaded>();
    shared::<TextClassificationPipeline>();
    shared::<TokenClassificationPipeline>();
    shared::<QuestionAnsweringPipeline>();
    shared::<FillMaskPipeline>();
    shared::<FeatureExtractionPipeline>();
    shared::<ZeroShotClassificationPipeline>();
    shared::<TextGenerationPipeline>();
};

const THREADS: usize = 8;
const ROUNDS: usize = 3;

fn model(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
        .display()
        .to_string()
}

/// Each thread calls `call` on every input `ROUNDS` times, starting at its own offset so that
/// different inputs run at the same moment; every answer must equal the sequential one.
fn same_from_threads(inputs: &[Value], call: impl Fn(&Value) -> Value + Sync) {
    let sequential: Vec<Value> = inputs.iter().map(&call).collect();
    assert!(
        sequential.windows(2).any(|pair| pair[0] != pair[1]),
        "the inputs give different answers, so a mix-up would show"
    );
    let start = Barrier::new(THREADS);
    let answers: Vec<Vec<(usize, Value)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (call, start) = (&call, &start);
                scope.spawn(move || {
                    start.wait();
                    let mut answers = Vec::new();
                    for step in 0..ROUNDS * inputs.len() {
                        let index = (thread + step) % inputs.len();
                        answers.push((index, call(&inputs[index])));
                    }
                    answers
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    for (thread, answers) in answers.iter().enumerate() {
        assert_eq!(answers.len(), ROUNDS * inputs.len());
        for (index, answer) in answers {
            assert_eq!(
                answer, &sequential[*index],
                "thread {thread}, input {index}: {}",
                inputs[*index]
            );
        }
    }
}

#[test]
fn text_classification_from_8_threads_equals_sequential_calls() {
    let classifier = pipeline(Task::TextClassification, &model("bert-seqcls-single")).unwrap();
    let inputs: Vec<Value> = [
        "I love this movie",
        "This was a terrible waste of time.",
        "ok",
        "The plot, the actors and the music were all wonderful, but the ending dragged on.",
        "Paris is the capital of France",
        "no",
    ]
    .iter()
    .map(|text| json!(text))
    .collect();
    let options: Map<String, Value> = [("top_k".to_string(), Value::Null)].into_iter().collect();
    same_from_threads(&inputs, |input| classifier.call(input, &options).unwrap());
}

#[test]
fn greedy_generation_from_8_threads_equals_sequential_calls() {
    let generator = pipeline(Task::TextGeneration, &model("gpt2")).unwrap();
    let inputs: Vec<Value> = [
        "Hello",
        "The quick brown fox",
        "Once upon a time there",
        "1 2 3",
    ]
    .iter()
    .map(|text| json!(text))
    .collect();
    let options: Map<String, Value> = json!({ "max_new_tokens": 6, "do_sample": false })
        .as_object()
        .unwrap()
        .clone();
    same_from_threads(&inputs, |input| generator.call(input, &options).unwrap());
}
