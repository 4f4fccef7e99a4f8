//! `--max-input-length N` below the model's own length: with truncation every route embeds or
//! classifies the input cut to N tokens by the tokenizer (what the pipelines give for the cut
//! token ids, or for the text they decode to), as TEI cuts at its limit; without truncation an
//! over-long input is a 422 validation error.

mod common;

use common::{Server, assert_close, assert_json_close, fixture, pipeline_embeddings, vectors};
use oxformer_pipelines::feature_extraction::FeatureExtractionOptions;
use oxformer_pipelines::sentence_embeddings::EmbeddingInput;
use oxformer_pipelines::text_classification::{
    ClassificationTopK, TextClassificationOptions, TextInput,
};
use oxformer_pipelines::{Task, pipeline};
use oxformer_server::ServerConfig;
use oxformer_tokenizer::{EncodeInput, EncodeOptions, Tokenizer, Truncation};
use serde_json::{Value, json};

const LIMIT: usize = 8;

/// A server for `model` that takes at most [`LIMIT`] tokens per input and truncates unless
/// asked not to.
fn server(model: &str) -> Server {
    let mut config = ServerConfig::new(model);
    config.threads = 1;
    config.max_input_length = Some(LIMIT);
    config.auto_truncate = true;
    Server::start(config)
}

/// Words that are one token each in the fixtures' small vocabulary, so that a cut falls
/// between words.
fn long_text(words: usize, first: &str, second: &str) -> String {
    (0..words)
        .map(|index| if index % 3 == 0 { first } else { second })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The ids the tokenizer makes for a text or a pair cut to [`LIMIT`] tokens (longest first,
/// special tokens kept), with their type ids.
fn cut(tokenizer: &Tokenizer, input: EncodeInput<'_>) -> (Vec<u32>, Vec<u32>) {
    let options = EncodeOptions {
        truncation: Truncation::LongestFirst,
        max_length: Some(LIMIT),
        ..EncodeOptions::default()
    };
    let encoding = tokenizer.encode(input, &options).unwrap();
    assert_eq!(encoding.len(), LIMIT);
    (encoding.ids().to_vec(), encoding.type_ids().to_vec())
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b))
}

fn expect_validation(answer: &common::Answer, what: &str) {
    assert_eq!(answer.status, 422, "{what}: {}", answer.body);
    assert_eq!(answer.json()["error_type"], "Validation", "{what}");
}

#[test]
fn embedding_routes_cut_at_max_input_length() {
    let model = fixture("st-mean");
    let server = server(&model);
    let tokenizer = Tokenizer::from_folder(&model).unwrap();
    let long = long_text(40, "good", "bad");
    let other = long_text(30, "bad", "good");
    let (long_ids, _) = cut(&tokenizer, EncodeInput::Single(&long));
    let (other_ids, _) = cut(&tokenizer, EncodeInput::Single(&other));
    let expected = pipeline_embeddings(
        &model,
        &[
            EmbeddingInput::TokenIds(&long_ids),
            EmbeddingInput::TokenIds(&other_ids),
        ],
        true,
    );
    let whole = pipeline_embeddings(&model, &[EmbeddingInput::Text(&long)], true);
    assert!(
        expected[0]
            .iter()
            .zip(&whole[0])
            .any(|(a, b)| (a - b).abs() > 1e-3),
        "the cut changes the embedding"
    );

    let answer = server.post_json(
        "/embed",
        &json!({"inputs": [long, other], "truncate": true}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_close(&vectors(&answer.json()), &expected, 1e-5);
    assert_eq!(answer.header("x-compute-tokens"), Some("16"));

    let answer = server.post_json("/v1/embeddings", &json!({"input": [long, other]}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    let floats: Vec<Vec<f32>> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| serde_json::from_value(item["embedding"].clone()).unwrap())
        .collect();
    assert_close(&floats, &expected, 1e-5);
    assert_eq!(body["usage"]["prompt_tokens"], 2 * LIMIT);

    // /embed_all: the feature-extraction pipeline's token states of the cut ids.
    let features = pipeline(Task::FeatureExtraction, &model).unwrap();
    let expected_tokens = &features
        .feature_extraction()
        .unwrap()
        .run_inputs(
            &[EmbeddingInput::TokenIds(&long_ids)],
            &FeatureExtractionOptions::default(),
            None,
        )
        .unwrap()[0]
        .0[0];
    let answer = server.post_json("/embed_all", &json!({"inputs": long, "truncate": true}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let tokens: Vec<Vec<Vec<f32>>> = serde_json::from_value(answer.json()).unwrap();
    assert_eq!(tokens[0].len(), LIMIT);
    assert_close(&tokens[0], expected_tokens, 1e-5);

    // /similarity: the cosine of the cut texts' embeddings.
    let answer = server.post_json(
        "/similarity",
        &json!({"inputs": {"source_sentence": long, "sentences": [other, "good bad"]},
                "parameters": {"truncate": true}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let scores: Vec<f32> = serde_json::from_value(answer.json()).unwrap();
    let short = pipeline_embeddings(&model, &[EmbeddingInput::Text("good bad")], true);
    let expected_scores = [
        cosine(&expected[0], &expected[1]),
        cosine(&expected[0], &short[0]),
    ];
    assert_close(&[scores], &[expected_scores.to_vec()], 1e-5);

    // Without truncation: refused, and the server keeps serving.
    for (path, body) in [
        ("/embed", json!({"inputs": long, "truncate": false})),
        ("/embed_all", json!({"inputs": long, "truncate": false})),
        (
            "/embed",
            json!({"inputs": [long_ids.repeat(2)], "truncate": false}),
        ),
        (
            "/similarity",
            json!({"inputs": {"source_sentence": "good", "sentences": [long]},
                   "parameters": {"truncate": false}}),
        ),
    ] {
        expect_validation(&server.post_json(path, &body), path);
    }
    let answer = server.post_json("/embed", &json!({"inputs": "good bad", "truncate": false}));
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// The ranked `{score, label}` lists of the text-classification pipeline, untruncated.
fn ranked(model: &str, inputs: &[TextInput], raw: bool) -> Value {
    let classifier = pipeline(Task::TextClassification, model).unwrap();
    let options = TextClassificationOptions {
        top_k: ClassificationTopK::All,
        function_to_apply: raw
            .then_some(oxformer_pipelines::text_classification::ClassificationFunction::None),
        ..TextClassificationOptions::default()
    };
    serde_json::to_value(
        classifier
            .text_classification()
            .unwrap()
            .run(inputs, &options)
            .unwrap(),
    )
    .unwrap()
}

/// The text or pair the cut ids decode to, checked to encode back to those ids.
fn cut_input(tokenizer: &Tokenizer, input: EncodeInput<'_>) -> TextInput {
    let (ids, type_ids) = cut(tokenizer, input);
    let segment = |kind: u32| -> Vec<u32> {
        ids.iter()
            .zip(&type_ids)
            .filter(|&(_, &type_id)| type_id == kind)
            .map(|(&id, _)| id)
            .collect()
    };
    let decode = |ids: &[u32]| tokenizer.decode(ids, true, None).unwrap();
    let text = decode(&segment(0));
    let text_pair = type_ids.contains(&1).then(|| decode(&segment(1)));
    let again = match &text_pair {
        Some(pair) => tokenizer.encode(EncodeInput::Pair(&text, pair), &EncodeOptions::default()),
        None => tokenizer.encode(EncodeInput::Single(&text), &EncodeOptions::default()),
    }
    .unwrap();
    assert_eq!(again.ids(), ids.as_slice(), "{text} / {text_pair:?}");
    TextInput { text, text_pair }
}

#[test]
fn predict_cuts_at_max_input_length() {
    let model = fixture("bert-seqcls-multi");
    let server = server(&model);
    let tokenizer = Tokenizer::from_folder(&model).unwrap();
    let long = long_text(40, "bad", "good");
    let expected = ranked(
        &model,
        &[cut_input(&tokenizer, EncodeInput::Single(&long))],
        false,
    );
    let whole = ranked(&model, &[TextInput::from(long.as_str())], false);
    assert_ne!(expected, whole, "the cut changes the scores");
    let answer = server.post_json("/predict", &json!({"inputs": long, "truncate": true}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_json_close(&answer.json(), &expected[0], 1e-6);
    expect_validation(
        &server.post_json("/predict", &json!({"inputs": long, "truncate": false})),
        "/predict",
    );
    let answer = server.post_json(
        "/predict",
        &json!({"inputs": "good bad", "truncate": false}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[test]
fn rerank_cuts_each_pair_at_max_input_length() {
    let model = fixture("bert-regression");
    let server = server(&model);
    let tokenizer = Tokenizer::from_folder(&model).unwrap();
    let query = "good bad good";
    let texts = [long_text(20, "good", "bad"), long_text(25, "bad", "good")];
    let pairs: Vec<TextInput> = texts
        .iter()
        .map(|text| cut_input(&tokenizer, EncodeInput::Pair(query, text)))
        .collect();
    let expected = ranked(&model, &pairs, true);
    let answer = server.post_json(
        "/rerank",
        &json!({"query": query, "texts": texts, "raw_scores": true, "truncate": true}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let ranks = answer.json();
    for rank in ranks.as_array().unwrap() {
        let index = rank["index"].as_u64().unwrap() as usize;
        let score = rank["score"].as_f64().unwrap();
        let want = expected[index][0]["score"].as_f64().unwrap();
        assert!(
            (score - want).abs() <= 1e-6,
            "text {index}: {score} vs {want}"
        );
    }
    expect_validation(
        &server.post_json(
            "/rerank",
            &json!({"query": query, "texts": texts, "truncate": false}),
        ),
        "/rerank",
    );

    // A pair is counted as the model sees it, with the pair template's special tokens: one
    // token over the limit is refused, and cut when truncating.
    // Words of one token each in this vocabulary.
    let (query, short) = ("the a is", "is the a");
    let plain = EncodeOptions::default();
    let pair_length = tokenizer
        .encode(EncodeInput::Pair(query, short), &plain)
        .unwrap()
        .len();
    assert_eq!(pair_length, LIMIT + 1);
    let over = json!({"query": query, "texts": [short], "truncate": false});
    expect_validation(&server.post_json("/rerank", &over), "/rerank one over");
    let over = json!({"inputs": [query, short], "truncate": false});
    expect_validation(&server.post_json("/predict", &over), "/predict one over");
    let answer = server.post_json(
        "/rerank",
        &json!({"query": query, "texts": [short], "raw_scores": true, "truncate": true}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let expected = ranked(
        &model,
        &[cut_input(&tokenizer, EncodeInput::Pair(query, short))],
        true,
    );
    assert_json_close(&answer.json()[0]["score"], &expected[0][0]["score"], 1e-6);
}

/// `--max-input-length` above the model's positions is the positions: truncation cuts there
/// (the pipeline's own cut), and without it an input past them is a 422.
#[test]
fn a_limit_past_the_positions_is_the_positions() {
    let model = fixture("st-mean");
    let mut config = ServerConfig::new(&model);
    config.threads = 1;
    config.max_input_length = Some(100_000);
    let server = Server::start(config);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{model}/config.json")).unwrap())
            .unwrap();
    let positions = config["max_position_embeddings"].as_u64().unwrap() as usize;
    assert_eq!(server.get("/info").json()["max_input_length"], positions);
    // Far more tokens than the positions.
    let long = long_text(400, "good", "bad");
    let answer = server.post_json("/embed", &json!({"inputs": long, "truncate": true}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let expected = pipeline_embeddings(&model, &[EmbeddingInput::Text(&long)], true);
    assert_close(&vectors(&answer.json()), &expected, 1e-5);
    let answer = server.post_json("/embed_all", &json!({"inputs": long, "truncate": true}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let tokens: Vec<Vec<Vec<f32>>> = serde_json::from_value(answer.json()).unwrap();
    assert_eq!(tokens[0].len(), positions);
    for path in ["/embed", "/embed_all"] {
        let answer = server.post_json(path, &json!({"inputs": long, "truncate": false}));
        expect_validation(&answer, path);
    }
}

/// A sentence-transformers model's prompt counts toward the limit, as the pipeline feeds it: an
/// input that fits alone but not after the folder's default prompt is refused without
/// truncation (it used to reach the pipeline, which cut it silently), and fits with the
/// folder's empty prompt.
#[test]
fn the_prompt_counts_toward_max_input_length() {
    let model = fixture("st-dense-prompts");
    let server = server(&model);
    let tokenizer = Tokenizer::from_folder(&model).unwrap();
    let count = |text: &str| {
        tokenizer
            .encode(EncodeInput::Single(text), &EncodeOptions::default())
            .unwrap()
            .len()
    };
    // the longest run of words that fits alone
    let text = (1..)
        .map(|words| long_text(words, "good", "bad"))
        .take_while(|text| count(text) <= LIMIT)
        .last()
        .expect("one word fits");
    let alone = count(&text);
    assert!(
        count(&format!("query: {text}")) > LIMIT,
        "the default prompt, \"query: \", makes it over-long"
    );

    let answer = server.post_json("/embed", &json!({"inputs": text, "truncate": false}));
    expect_validation(&answer, "/embed with the default prompt");
    let answer = server.post_json(
        "/similarity",
        &json!({
            "inputs": {"source_sentence": text, "sentences": ["good"]},
            "parameters": {"truncate": false}
        }),
    );
    expect_validation(&answer, "/similarity with the default prompt");

    let answer = server.post_json(
        "/embed",
        &json!({"inputs": text, "truncate": false, "prompt_name": "document"}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.header("x-compute-tokens"),
        Some(alone.to_string().as_str())
    );
    let answer = server.post_json(
        "/embed",
        &json!({"inputs": text, "truncate": false, "prompt_name": "unknown"}),
    );
    expect_validation(&answer, "/embed with an unknown prompt");
}
