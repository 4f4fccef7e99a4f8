//! The TEI embedding routes against the sentence-embeddings pipeline (what `oxformer
//! sentence-embeddings --json` prints) on the same inputs: /embed, /embed_all, /similarity,
//! /v1/embeddings (float and base64), /tokenize, /decode, /info; 64 concurrent clients.

mod common;

use base64::Engine;
use common::{Server, assert_close, fixture, minilm, text_embeddings, vectors};
use oxformer_pipelines::feature_extraction::FeatureExtractionOptions;
use oxformer_pipelines::sentence_embeddings::SentenceEmbeddingsOptions;
use oxformer_pipelines::{Task, pipeline};
use oxformer_tokenizer::{EncodeOptions, Side, Tokenizer};
use serde_json::{Value, json};

const TEXTS: [&str; 4] = [
    "The cat sits on the mat.",
    "A man is playing a guitar on the stage tonight.",
    "hello",
    "Rust servers answer quickly when the model runs on its own thread.",
];

fn check_embed_routes(model: &str) {
    let server = Server::with_model(model);

    // /embed: normalized by default, as TEI; a single string is a batch of one.
    let answer = server.post_json("/embed", &json!({"inputs": TEXTS}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_close(
        &vectors(&answer.json()),
        &text_embeddings(model, &TEXTS, true),
        1e-5,
    );
    for header in ["x-compute-time", "x-queue-time", "x-inference-time"] {
        assert!(answer.header(header).is_some(), "no {header}");
    }
    let answer = server.post_json("/embed", &json!({"inputs": TEXTS[1], "normalize": false}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_close(
        &vectors(&answer.json()),
        &text_embeddings(model, &TEXTS[1..2], false),
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
    assert_close(&floats, &text_embeddings(model, &TEXTS, true), 1e-5);
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

    // /info: TEI v1.9's keys (router/src/lib.rs `Info`), no others; the maximum input length
    // is the folder's `max_seq_length`, as TEI takes it.
    let info = server.get("/info").json();
    assert_eq!(info["model_id"], model);
    assert!(info["model_type"]["embedding"]["pooling"].is_string());
    assert_eq!(info["max_client_batch_size"], 32);
    assert_eq!(info["max_batch_tokens"], 16384);
    let mut keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut tei_keys = vec![
        "model_id",
        "model_sha",
        "model_dtype",
        "served_model_name",
        "model_type",
        "max_concurrent_requests",
        "max_input_length",
        "max_batch_tokens",
        "max_batch_requests",
        "max_client_batch_size",
        "auto_truncate",
        "tokenization_workers",
        "version",
        "sha",
        "docker_label",
    ];
    tei_keys.sort_unstable();
    assert_eq!(keys, tei_keys);
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{model}/sentence_bert_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info["max_input_length"], config["max_seq_length"]);
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
    // The model's 128 tokens exceed the budget: as TEI, the server then needs truncation.
    config.auto_truncate = true;
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

/// TEI's token-id inputs (a list of ids, or a batch of lists, mixed with texts): the model's
/// input as given, so the ids the tokenizer makes for a text embed as that text does.
#[test]
fn token_ids_embed_as_the_text_they_encode() {
    let model = fixture("st-mean");
    let server = Server::with_model(&model);
    let tokenizer = Tokenizer::from_folder(&model).unwrap();
    let ids: Vec<Vec<u32>> = TEXTS
        .iter()
        .map(|text| {
            tokenizer
                .encode(*text, &EncodeOptions::default())
                .unwrap()
                .ids()
                .to_vec()
        })
        .collect();
    let expected = text_embeddings(&model, &TEXTS, true);

    let answer = server.post_json("/embed", &json!({"inputs": ids[1]}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_close(&vectors(&answer.json()), &expected[1..2], 1e-5);
    let answer = server.post_json("/embed", &json!({"inputs": ids}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_close(&vectors(&answer.json()), &expected, 1e-5);
    let mixed = json!([TEXTS[0], ids[1], TEXTS[2], ids[3]]);
    let answer = server.post_json("/embed", &json!({"inputs": mixed}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_close(&vectors(&answer.json()), &expected, 1e-5);
    let answer = server.post_json("/v1/embeddings", &json!({"input": ids}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let data: Vec<Vec<f32>> = answer.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| serde_json::from_value(item["embedding"].clone()).unwrap())
        .collect();
    assert_close(&data, &expected, 1e-5);

    // /embed_all: the token states of the ids are those of the text.
    let by_text = server.post_json("/embed_all", &json!({"inputs": TEXTS}));
    let by_ids = server.post_json("/embed_all", &json!({"inputs": ids}));
    assert_eq!(by_ids.status, 200, "{}", by_ids.body);
    let flat = |answer: &common::Answer| -> Vec<Vec<f32>> {
        serde_json::from_value::<Vec<Vec<Vec<f32>>>>(answer.json())
            .unwrap()
            .concat()
    };
    assert_close(&flat(&by_ids), &flat(&by_text), 1e-5);
}

/// `truncation_direction: "Left"` keeps the end of an over-long text: the embedding of the
/// ids the tokenizer makes when it truncates on the left (special tokens kept), and not the
/// right-truncated one.
#[test]
fn left_truncation_keeps_the_end_of_the_text() {
    let model = fixture("st-mean");
    let server = Server::with_model(&model);
    let info = server.get("/info").json();
    let max_length = info["max_input_length"].as_u64().unwrap() as usize;
    let long: String = (0..max_length)
        .map(|index| format!("word{index} "))
        .collect();
    let tokenizer = Tokenizer::from_folder(&model).unwrap();
    let cut = |side| {
        tokenizer
            .encode(
                long.trim(),
                &EncodeOptions {
                    truncation: oxformer_tokenizer::Truncation::LongestFirst,
                    max_length: Some(max_length),
                    truncation_side: Some(side),
                    ..EncodeOptions::default()
                },
            )
            .unwrap()
            .ids()
            .to_vec()
    };
    let (left_ids, right_ids) = (cut(Side::Left), cut(Side::Right));
    assert_eq!(left_ids.len(), max_length);
    assert_ne!(left_ids, right_ids);
    let by_ids = server.post_json("/embed", &json!({"inputs": [left_ids, right_ids]}));
    assert_eq!(by_ids.status, 200, "{}", by_ids.body);
    let by_ids = vectors(&by_ids.json());

    let left = server.post_json(
        "/embed",
        &json!({"inputs": long, "truncate": true, "truncation_direction": "Left"}),
    );
    assert_eq!(left.status, 200, "{}", left.body);
    assert_close(&vectors(&left.json()), &by_ids[..1], 1e-5);
    let right = server.post_json(
        "/embed",
        &json!({"inputs": long, "truncate": true, "truncation_direction": "Right"}),
    );
    assert_close(&vectors(&right.json()), &by_ids[1..], 1e-5);
    // The default is the tokenizer's side (right) and equals the pipeline's own truncation.
    let default = server.post_json("/embed", &json!({"inputs": long, "truncate": true}));
    assert_close(&vectors(&default.json()), &by_ids[1..], 1e-5);
    assert_close(
        &by_ids[1..],
        &text_embeddings(&model, &[long.as_str()], true),
        1e-5,
    );

    // /embed_all cuts the same way.
    let flat = |answer: common::Answer| -> Vec<Vec<f32>> {
        assert_eq!(answer.status, 200, "{}", answer.body);
        serde_json::from_value::<Vec<Vec<Vec<f32>>>>(answer.json())
            .unwrap()
            .concat()
    };
    let left = server.post_json(
        "/embed_all",
        &json!({"inputs": long, "truncate": true, "truncation_direction": "Left"}),
    );
    let left_by_ids = server.post_json("/embed_all", &json!({"inputs": [left_ids]}));
    assert_close(&flat(left), &flat(left_by_ids), 1e-5);

    // /similarity too (TEI v1.9 takes `truncation_direction` there): the cosine of the
    // left-cut text's embedding with the other sentence's.
    let similarity = |direction: &str| -> Vec<f32> {
        let answer = server.post_json(
            "/similarity",
            &json!({"inputs": {"source_sentence": long, "sentences": [TEXTS[0]]},
                    "parameters": {"truncate": true, "truncation_direction": direction}}),
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        serde_json::from_value(answer.json()).unwrap()
    };
    let other = text_embeddings(&model, &TEXTS[..1], true);
    let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let (left, right) = (similarity("Left"), similarity("Right"));
    assert_close(
        std::slice::from_ref(&left),
        &[vec![cosine(&by_ids[0], &other[0])]],
        1e-5,
    );
    assert_close(
        std::slice::from_ref(&right),
        &[vec![cosine(&by_ids[1], &other[0])]],
        1e-5,
    );
    assert_ne!(left, right);
}

/// The token states of the feature-extraction pipeline (fixture-checked against
/// transformers), pooled as TEI's `--pooling` names say, then normalized.
fn pooled(model: &str, texts: &[&str], pooling: &str) -> Vec<Vec<f32>> {
    let pipeline = pipeline(Task::FeatureExtraction, model).unwrap();
    let features = pipeline
        .feature_extraction()
        .unwrap()
        .run(
            texts,
            &FeatureExtractionOptions {
                truncation: false,
                ..FeatureExtractionOptions::default()
            },
        )
        .unwrap();
    features
        .iter()
        .map(|features| {
            let tokens = &features.0[0];
            let mut vector = match pooling {
                "cls" => tokens[0].clone(),
                "last-token" => tokens[tokens.len() - 1].clone(),
                "mean" => (0..tokens[0].len())
                    .map(|i| tokens.iter().map(|t| t[i]).sum::<f32>() / tokens.len() as f32)
                    .collect(),
                other => panic!("{other}"),
            };
            let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
            vector.iter_mut().for_each(|v| *v /= norm);
            vector
        })
        .collect()
}

/// TEI's `--pooling` for a plain model folder (BertModel, no sentence-transformers files):
/// /embed pools its last hidden state; without it, /embed says what to do; it is refused for
/// a sentence-transformers folder and for `splade`.
#[test]
fn pooling_serves_embed_for_a_plain_model_folder() {
    let model = fixture("bert");
    for pooling in ["cls", "mean", "last-token"] {
        let mut config = oxformer_server::ServerConfig::new(model.as_str());
        config.threads = 1;
        config.pooling = Some(pooling.to_string());
        let server = Server::start(config);
        let info = server.get("/info").json();
        assert_eq!(
            info["model_type"]["embedding"]["pooling"],
            pooling.replace('-', "_"),
            "{info}"
        );
        let answer = server.post_json("/embed", &json!({"inputs": TEXTS}));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let expected = pooled(&model, &TEXTS, pooling);
        assert_close(&vectors(&answer.json()), &expected, 1e-5);
        // Token ids too.
        let ids = Tokenizer::from_folder(&model)
            .unwrap()
            .encode(TEXTS[0], &EncodeOptions::default())
            .unwrap()
            .ids()
            .to_vec();
        let answer = server.post_json("/embed", &json!({"inputs": ids}));
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_close(&vectors(&answer.json()), &expected[..1], 1e-5);
    }

    let server = Server::with_model(&model);
    let answer = server.post_json("/embed", &json!({"inputs": "a"}));
    assert_eq!(answer.status, 424, "{}", answer.body);
    assert!(answer.body.contains("--pooling"), "{}", answer.body);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for (folder, pooling, expected) in [
        (fixture("st-mean"), "cls", "modules.json"),
        (model.clone(), "splade", "splade"),
        (model.clone(), "max", "expected cls, mean or last-token"),
    ] {
        let mut config = oxformer_server::ServerConfig::new(folder.as_str());
        config.pooling = Some(pooling.to_string());
        let error = runtime
            .block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                oxformer_server::serve(config, listener, std::future::pending()).await
            })
            .unwrap_err();
        assert!(error.contains(expected), "{error}");
    }
}
