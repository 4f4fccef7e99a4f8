//! /predict and /rerank against the text-classification pipeline, and `POST /` against
//! `Pipeline::call` for the other tasks, on the fixture folders.

mod common;

use common::{Server, assert_json_close, fixture};
use oxformer_pipelines::text_classification::{
    ClassificationFunction, ClassificationOutput, ClassificationTopK, TextClassificationOptions,
    TextInput,
};
use oxformer_pipelines::{Task, pipeline, pipeline_named};
use serde_json::{Map, Value, json};

/// The pipeline's ranked `{score, label}` lists, as /predict answers them.
fn ranked(model: &str, inputs: &[TextInput], raw: bool) -> Value {
    let classifier = pipeline(Task::TextClassification, model).unwrap();
    let options = TextClassificationOptions {
        top_k: ClassificationTopK::All,
        function_to_apply: raw.then_some(ClassificationFunction::None),
        ..TextClassificationOptions::default()
    };
    let outputs = classifier
        .text_classification()
        .unwrap()
        .run(inputs, &options)
        .unwrap();
    Value::Array(
        outputs
            .into_iter()
            .map(|output| match output {
                ClassificationOutput::Ranked(scores) => Value::Array(
                    scores
                        .into_iter()
                        .map(|s| json!({"score": s.score, "label": s.label}))
                        .collect(),
                ),
                ClassificationOutput::Best(_) => unreachable!("top_k all"),
            })
            .collect(),
    )
}

fn pair(text: &str, second: &str) -> TextInput {
    TextInput {
        text: text.into(),
        text_pair: Some(second.into()),
    }
}

#[test]
fn predict_matches_the_pipeline() {
    let model = fixture("bert-seqcls-multi");
    let server = Server::with_model(&model);
    let info = server.get("/info").json();
    assert!(
        info["model_type"]["classifier"]["id2label"].is_object(),
        "{info}"
    );

    let answer = server.post_json("/predict", &json!({"inputs": "I love this movie!"}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_json_close(
        &answer.json(),
        &ranked(&model, &["I love this movie!".into()], false)[0],
        1e-12,
    );

    let batch = ["good", "bad", "a long sentence about nothing"];
    // A batch is a list of lists, one text or a pair each, as in TEI.
    let lists: Vec<Vec<&str>> = batch.iter().map(|&text| vec![text]).collect();
    let answer = server.post_json("/predict", &json!({"inputs": lists, "raw_scores": true}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let inputs: Vec<TextInput> = batch.iter().map(|&t| t.into()).collect();
    assert_json_close(&answer.json(), &ranked(&model, &inputs, true), 1e-12);

    // A two-element list is a pair, as in TEI.
    let answer = server.post_json("/predict", &json!({"inputs": ["first", "second"]}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_json_close(
        &answer.json(),
        &ranked(&model, &[pair("first", "second")], false)[0],
        1e-12,
    );
    let answer = server.post_json(
        "/predict",
        &json!({"inputs": [["a", "b"], ["c"]], "raw_scores": true}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_json_close(
        &answer.json(),
        &ranked(&model, &[pair("a", "b"), "c".into()], true),
        1e-12,
    );
    // Three strings are neither a text nor a pair.
    let answer = server.post_json("/predict", &json!({"inputs": ["a", "b", "c"]}));
    assert_eq!(answer.status, 422, "{}", answer.body);
}

#[test]
fn rerank_matches_the_pipeline_sorted() {
    let model = fixture("bert-regression");
    let server = Server::with_model(&model);
    let texts = [
        "Paris is in France",
        "bananas",
        "the capital of France is Paris",
    ];
    let answer = server.post_json(
        "/rerank",
        &json!({"query": "where is Paris?", "texts": texts, "return_text": true, "raw_scores": true}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let inputs: Vec<TextInput> = texts.iter().map(|t| pair("where is Paris?", t)).collect();
    let expected = ranked(&model, &inputs, true);
    let mut ranks: Vec<(usize, f64)> = (0..texts.len())
        .map(|i| (i, expected[i][0]["score"].as_f64().unwrap()))
        .collect();
    ranks.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    let expected: Vec<Value> = ranks
        .iter()
        .map(|&(index, score)| json!({"index": index, "text": texts[index], "score": score}))
        .collect();
    assert_json_close(&answer.json(), &Value::Array(expected), 1e-12);
    // A classifier with several labels is not a reranker.
    let server = Server::with_model(&fixture("bert-seqcls-multi"));
    let answer = server.post_json("/rerank", &json!({"query": "q", "texts": ["a"]}));
    assert_eq!(answer.status, 424, "{}", answer.body);
}

/// `POST /` answers exactly what `Pipeline::call` returns.
#[test]
fn inference_route_returns_pipeline_call() {
    let cases: [(&str, &str, Value, Value); 5] = [
        (
            "token-classification",
            "bert-tokcls",
            json!("Hugging Face is in New York"),
            json!({}),
        ),
        (
            "question-answering",
            "bert-qa",
            json!({"question": "Where?", "context": "It is in Paris, the capital."}),
            json!({"top_k": 2}),
        ),
        (
            "fill-mask",
            "bert-mlm",
            json!("Paris is the [MASK] of France."),
            json!({"top_k": 3}),
        ),
        (
            "text-classification",
            "bert-seqcls-single",
            json!(["good", "bad"]),
            json!({"top_k": null}),
        ),
        (
            "text-generation",
            "gpt2",
            json!("Hello"),
            json!({"max_new_tokens": 5, "do_sample": false}),
        ),
    ];
    for (task, folder, inputs, parameters) in cases {
        let model = fixture(folder);
        let mut config = oxformer_server::ServerConfig::new(model.as_str());
        config.task = task.to_string();
        config.threads = 1;
        let server = Server::start(config);
        let answer = server.post_json("/", &json!({"inputs": inputs, "parameters": parameters}));
        assert_eq!(answer.status, 200, "{task}: {}", answer.body);
        let options: Map<String, Value> = serde_json::from_value(parameters).unwrap();
        let expected = pipeline_named(task, &model)
            .unwrap()
            .call(&inputs, &options)
            .unwrap();
        eprintln!("{task}");
        assert_json_close(&answer.json(), &expected, 1e-12);
    }
}

#[test]
fn auto_task_follows_the_folder() {
    for (folder, task) in [
        ("st-mean", "sentence-embeddings"),
        ("bert-seqcls-multi", "text-classification"),
        ("gpt2", "text-generation"),
        ("bert-tokcls", "token-classification"),
        ("bert", "feature-extraction"),
    ] {
        let dir = std::path::PathBuf::from(fixture(folder));
        assert_eq!(oxformer_server::auto_task(&dir), task, "{folder}");
    }
}

#[test]
fn concurrent_predict_clients_are_batched_and_get_the_sequential_answers() {
    let server = Server::with_model(&fixture("bert-seqcls-multi"));
    let requests: Vec<Value> = (0..32)
        .map(|client| {
            let lists: Vec<Vec<String>> = (0..1 + client % 3)
                .map(|i| vec![format!("client {client} says thing number {i}")])
                .collect();
            json!({"inputs": lists})
        })
        .collect();
    let sequential: Vec<Value> = requests
        .iter()
        .map(|request| server.post_json("/predict", request).json())
        .collect();
    let concurrent: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|request| {
                let server = &server;
                scope.spawn(move || {
                    let answer = server.post_json("/predict", request);
                    assert_eq!(answer.status, 200, "{}", answer.body);
                    answer.json()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (concurrent, sequential) in concurrent.iter().zip(&sequential) {
        assert_json_close(concurrent, sequential, 1e-6);
    }
    let metrics = server.get("/metrics").body;
    let batches: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("te_batch_next_size_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(batches < 64.0, "{batches} batches for 64 requests");
}

/// `truncation_direction: "Left"` on /predict classifies the end of an over-long text: what
/// the pipeline gives for the text the tokenizer's left-cut ids decode to (checked to encode
/// back to those ids), which differs from the right-cut answer.
#[test]
fn predict_truncates_on_the_left_when_asked() {
    use oxformer_tokenizer::{EncodeOptions, Side, Tokenizer, Truncation};

    let model = fixture("bert-seqcls-multi");
    let server = Server::with_model(&model);
    let max_length = server.get("/info").json()["max_input_length"]
        .as_u64()
        .unwrap() as usize;
    // Over-long, with different ends (words that are one token each in the fixture's small
    // vocabulary, so that a cut falls between words).
    let long = format!(
        "{}{}",
        "good ".repeat(max_length),
        "bad ".repeat(max_length)
    );
    let long = long.trim().to_string();
    let tokenizer = Tokenizer::from_folder(&model).unwrap();
    let cut = |side| {
        let options = EncodeOptions {
            truncation: Truncation::LongestFirst,
            max_length: Some(max_length),
            truncation_side: Some(side),
            ..EncodeOptions::default()
        };
        let ids = tokenizer
            .encode(long.as_str(), &options)
            .unwrap()
            .ids()
            .to_vec();
        let text = tokenizer.decode(&ids, true, None).unwrap();
        let again = tokenizer
            .encode(text.as_str(), &EncodeOptions::default())
            .unwrap();
        assert_eq!(again.ids(), ids.as_slice(), "{text}");
        text
    };
    let (left_text, right_text) = (cut(Side::Left), cut(Side::Right));
    let expected = ranked(&model, &[left_text.as_str().into()], false);
    let answer = server.post_json(
        "/predict",
        &json!({"inputs": long, "truncate": true, "truncation_direction": "Left"}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_json_close(&answer.json(), &expected[0], 1e-6);
    let right = server.post_json("/predict", &json!({"inputs": long, "truncate": true}));
    assert_json_close(
        &right.json(),
        &ranked(&model, &[right_text.as_str().into()], false)[0],
        1e-6,
    );
    assert_ne!(answer.json(), right.json());
}
