//! The TEI embedding routes against the sentence-embeddings pipeline (what `oxformer
//! sentence-embeddings --json` prints) on the same inputs: /embed, /embed_all, /similarity,
//! /v1/embeddings (float and base64), /tokenize, /decode, /info; 64 concurrent clients.

mod common;

use base64::Engine;
use common::{Server, assert_close, fixture, minilm, vectors};
use oxformer_pipelines::feature_extraction::FeatureExtractionOptions;
use oxformer_pipelines::sentence_embeddings::SentenceEmbeddingsOptions;
use oxformer_pipelines::{Task, pipeline};
use oxformer_tokenizer::{EncodeOptions, Tokenizer};
use serde_json::{Value, json};

const TEXTS: [&str; 4] = [
    "The cat sits on the mat.",
    "A man is playing a guitar on the stage tonight.",
    "hello",
    "Rust servers answer quickly when the model runs on its own thread.",
];

fn pipeline_embeddings(model: &str, texts: &[&str], normalize: bool) -> Vec<Vec<f32>> {
    let pipeline = pipeline(Task::SentenceEmbeddings, model).unwrap();
    let options = SentenceEmbeddingsOptions {
        normalize_embeddings: normalize,
        ..SentenceEmbeddingsOptions::default()
    };
    pipeline
        .sentence_embeddings()
        .unwrap()
        .run(texts, &options)
        .unwrap()
}

fn check_embed_routes(model: &str) {
    let server = Server::with_model(model);

    // /embed: normalized by default, as TEI; a single string is a batch of one.
    let answer = server.post_json("/embed", &json!({"inputs": TEXTS}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_close(
        &vectors(&answer.json()),
        &pipeline_embeddings(model, &TEXTS, true),
        1e-5,
    );
    for header in ["x-compute-time", "x-queue-time", "x-inference-time"] {
        assert!(answer.header(header).is_some(), "no {header}");
    }
    let answer = server.post_json("/embed", &json!({"inputs": TEXTS[1], "normalize": false}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_close(
        &vectors(&answer.json()),
        &pipeline_embeddings(model, &TEXTS[1..2], false),
        1e-5,
    );

    // /v1/embeddings: floats, then base64 of the same little-endian floats.
    let answer = server.post_json("/v1/embeddings", &json!({"input": TEXTS, "model": "m"}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "m");
    let data = body["data"].as_array().unwrap();
    let floats: Vec<Vec<f32>> = data
        .iter()
        .enumerate()
        .map(|(index, item)| {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], index);
            serde_json::from_value(item["embedding"].clone()).unwrap()
        })
        .collect();
    assert_close(&floats, &pipeline_embeddings(model, &TEXTS, true), 1e-5);
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let answer = server.post_json(
        "/v1/embeddings",
        &json!({"input": TEXTS, "encoding_format": "base64"}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let decoded: Vec<Vec<f32>> = answer.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(item["embedding"].as_str().unwrap())
                .unwrap();
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect();
    assert_eq!(decoded, floats);

    // /similarity: the pipeline's cosine scores.
    let answer = server.post_json(
        "/similarity",
        &json!({"inputs": {"source_sentence": TEXTS[0], "sentences": &TEXTS[1..]}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let scores: Vec<f32> = serde_json::from_value(answer.json()).unwrap();
    let similarity = pipeline(Task::SentenceSimilarity, model).unwrap();
    let expected = similarity
        .sentence_embeddings()
        .unwrap()
        .similarity(TEXTS[0], &TEXTS[1..], &SentenceEmbeddingsOptions::default())
        .unwrap();
    assert_close(&[scores], &[expected.0], 1e-5);

    // /embed_all: the feature-extraction pipeline's token embeddings.
    let answer = server.post_json("/embed_all", &json!({"inputs": TEXTS}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let tokens: Vec<Vec<Vec<f32>>> = serde_json::from_value(answer.json()).unwrap();
    let features = pipeline(Task::FeatureExtraction, model).unwrap();
    let expected = features
        .feature_extraction()
        .unwrap()
        .run(&TEXTS, &FeatureExtractionOptions::default())
        .unwrap();
    assert_eq!(tokens.len(), expected.len());
    for (actual, expected) in tokens.iter().zip(&expected) {
        assert_close(actual, &expected.0[0], 1e-5);
    }

    // /tokenize and /decode: the tokenizer's ids, spans and text.
    let tokenizer = Tokenizer::from_folder(model).unwrap();
    let answer = server.post_json("/tokenize", &json!({"inputs": TEXTS[1]}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let tokens = answer.json();
    let encoding = tokenizer
        .encode(TEXTS[1], &EncodeOptions::default())
        .unwrap();
    let tokens = tokens[0].as_array().unwrap();
    let ids: Vec<u32> = tokens
        .iter()
        .map(|token| token["id"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, encoding.ids());
    for (index, token) in tokens.iter().enumerate() {
        let special = encoding.special_tokens_mask()[index] == 1;
        assert_eq!(token["special"], special);
        if !special {
            let (start, stop) = encoding.byte_offsets()[index];
            assert_eq!(token["start"], start);
            assert_eq!(token["stop"], stop);
            assert_eq!(token["text"], TEXTS[1][start..stop]);
        }
    }
    let answer = server.post_json(
        "/decode",
        &json!({"ids": [ids.clone(), ids[1..3].to_vec()]}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let expected = json!([
        tokenizer.decode(&ids, true, None).unwrap(),
        tokenizer.decode(&ids[1..3], true, None).unwrap()
    ]);
    assert_eq!(answer.json(), expected);

    // /info: TEI's keys.
    let info = server.get("/info").json();
    assert_eq!(info["model_id"], model);
    assert!(info["model_type"]["embedding"]["pooling"].is_string());
    assert_eq!(info["max_client_batch_size"], 32);
    assert_eq!(info["max_batch_tokens"], 16384);
}

#[test]
fn embed_routes_match_the_pipeline_on_the_fixture() {
    check_embed_routes(&fixture("st-mean"));
}

#[test]
fn embed_routes_match_the_pipeline_on_minilm() {
    if let Some(model) = minilm() {
        check_embed_routes(&model);
    }
}

#[test]
fn info_reports_the_pooling_of_each_fixture() {
    for (folder, pooling) in [("st-cls", "cls"), ("st-mean", "mean")] {
        let server = Server::with_model(&fixture(folder));
        assert_eq!(
            server.get("/info").json()["model_type"]["embedding"]["pooling"],
            pooling
        );
    }
}

#[test]
fn sixty_four_concurrent_clients_get_the_sequential_answers() {
    let model = fixture("st-mean");
    // A small token budget so that batches are cut, mixed across clients.
    let mut config = oxformer_server::ServerConfig::new(model.as_str());
    config.threads = 1;
    config.max_batch_tokens = 64;
    let server = Server::start(config);
    let requests: Vec<Value> = (0..64)
        .map(|client| {
            let texts: Vec<String> = (0..1 + client % 4)
                .map(|i| format!("{} client {client} input {i}", TEXTS[(client + i) % 4]))
                .collect();
            json!({"inputs": texts})
        })
        .collect();
    let sequential: Vec<Vec<Vec<f32>>> = requests
        .iter()
        .map(|request| {
            let answer = server.post_json("/embed", request);
            assert_eq!(answer.status, 200, "{}", answer.body);
            vectors(&answer.json())
        })
        .collect();
    let concurrent: Vec<Vec<Vec<f32>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|request| {
                let server = &server;
                scope.spawn(move || {
                    let answer = server.post_json("/embed", request);
                    assert_eq!(answer.status, 200, "{}", answer.body);
                    vectors(&answer.json())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (concurrent, sequential) in concurrent.iter().zip(&sequential) {
        assert_close(concurrent, sequential, 1e-5);
    }
    // They were batched together: fewer batches than requests.
    let metrics = server.get("/metrics").body;
    let batches: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("te_batch_next_size_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(batches < 128.0, "{batches} batches for 128 requests");
}
