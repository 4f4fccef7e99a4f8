//! Every error case answers TEI's `{"error", "error_type"}` with its status, and the server
//! keeps serving after each.

mod common;

use common::{Server, fixture};
use oxformer_server::ServerConfig;
use serde_json::json;

/// A good /embed after each error: the server still serves.
fn still_serves(server: &Server) {
    let answer = server.post_json("/embed", &json!({"inputs": "still here"}));
    assert_eq!(answer.status, 200, "{}", answer.body);
}

fn expect(server: &Server, path: &str, body: &str, status: u16, error_type: &str) {
    let answer = server.post(path, body);
    assert_eq!(answer.status, status, "{path} {body}: {}", answer.body);
    let json = answer.json();
    if path.starts_with("/v1/") {
        // OpenAI's shape, as TEI answers on its OpenAI routes.
        assert_eq!(json["type"], error_type, "{path} {body}: {json}");
        assert_eq!(json["code"], status, "{json}");
        assert!(
            json["message"].as_str().is_some_and(|e| !e.is_empty()),
            "{json}"
        );
    } else {
        assert_eq!(json["error_type"], error_type, "{path} {body}: {json}");
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{json}"
        );
    }
    still_serves(server);
}

#[test]
fn bad_requests_get_tei_errors_and_the_server_keeps_serving() {
    let mut config = ServerConfig::new(fixture("st-mean"));
    config.threads = 1;
    config.max_client_batch_size = 4;
    config.max_input_length = Some(16);
    config.payload_limit = 1000;
    let server = Server::start(config);

    // invalid JSON, wrong types
    expect(&server, "/embed", "{\"inputs\": ", 400, "Validation");
    expect(&server, "/embed", "{\"inputs\": 3}", 422, "Validation");
    expect(&server, "/embed", "{\"text\": \"a\"}", 422, "Validation");
    expect(
        &server,
        "/embed",
        "{\"inputs\": [1, 2.5]}",
        422,
        "Validation",
    );
    // token ids: one the tokenizer does not know; more than --max-input-length without
    // truncation
    expect(
        &server,
        "/embed",
        "{\"inputs\": [99999999]}",
        422,
        "Validation",
    );
    let many_ids = json!({"inputs": [vec![1; 20]]}).to_string();
    expect(&server, "/embed", &many_ids, 422, "Validation");
    expect(
        &server,
        "/embed_all",
        "{\"inputs\": [[99999999]]}",
        422,
        "Validation",
    );
    // empty inputs
    expect(&server, "/embed", "{\"inputs\": \"\"}", 400, "Empty");
    expect(&server, "/embed", "{\"inputs\": []}", 400, "Empty");
    expect(&server, "/", "{\"inputs\": \"\"}", 400, "Empty");
    // too many inputs
    let five = json!({"inputs": ["a", "b", "c", "d", "e"]}).to_string();
    expect(&server, "/embed", &five, 422, "Validation");
    // over-long without truncation; with it, fine
    let long = "word ".repeat(40);
    expect(
        &server,
        "/embed",
        &json!({"inputs": long}).to_string(),
        422,
        "Validation",
    );
    let answer = server.post_json("/embed", &json!({"inputs": long, "truncate": true}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    // an option the folder does not have
    let bad_prompt = json!({"inputs": "a", "prompt_name": "nope"}).to_string();
    expect(&server, "/embed", &bad_prompt, 422, "Validation");
    let middle = json!({"inputs": "a", "truncation_direction": "Middle"}).to_string();
    expect(&server, "/embed", &middle, 422, "Validation");
    let similarity_middle = json!({"inputs": {"source_sentence": "a", "sentences": ["b"]},
        "parameters": {"truncation_direction": "Middle"}})
    .to_string();
    expect(
        &server,
        "/similarity",
        &similarity_middle,
        422,
        "Validation",
    );
    // a body over --payload-limit
    let big = json!({"inputs": "x".repeat(2000)}).to_string();
    expect(&server, "/embed", &big, 413, "Validation");
    expect(&server, "/v1/embeddings", "{\"input\": \"\"}", 400, "Empty");
    expect(&server, "/v1/embeddings", "{\"input\": [[]]}", 400, "Empty");
    // routes this model cannot serve
    expect(&server, "/predict", "{\"inputs\": \"a\"}", 424, "Backend");
    expect(
        &server,
        "/rerank",
        "{\"query\": \"a\", \"texts\": [\"b\"]}",
        424,
        "Backend",
    );
    expect(&server, "/generate", "{\"inputs\": \"a\"}", 424, "Backend");
    expect(
        &server,
        "/generate_stream",
        "{\"inputs\": \"a\"}",
        424,
        "Backend",
    );
    expect(
        &server,
        "/v1/completions",
        "{\"prompt\": \"a\"}",
        424,
        "Backend",
    );

    // Each failure was counted by type.
    let metrics = server.get("/metrics").body;
    for line in [
        "te_request_failure{err=\"validation\"}",
        "te_request_failure{err=\"empty\"}",
        "te_request_failure{err=\"model_type\"}",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
}

#[test]
fn past_max_concurrent_requests_is_429_overloaded() {
    let mut config = ServerConfig::new(fixture("st-mean"));
    config.threads = 1;
    config.max_concurrent_requests = 2;
    let server = Server::start(config);
    // Admission counts inputs: three inputs never fit in two.
    let answer = server.post_json("/embed", &json!({"inputs": ["a", "b", "c"]}));
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.json()["error_type"], "Overloaded");
    still_serves(&server);
    let answer = server.post_json("/embed", &json!({"inputs": ["a", "b"]}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Under load: 32 clients of two inputs each against a limit of two; every answer is a
    // 200 or an immediate 429, and after the burst the server serves again.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..32)
            .map(|_| {
                let server = &server;
                scope.spawn(move || {
                    server
                        .post_json("/embed", &json!({"inputs": ["one input", "and another"]}))
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    still_serves(&server);
}

#[test]
fn api_key_guards_all_but_health_and_metrics() {
    let mut config = ServerConfig::new(fixture("st-mean"));
    config.threads = 1;
    config.api_key = Some("secret".to_string());
    let server = Server::start(config);
    let body = json!({"inputs": "a"}).to_string();
    assert_eq!(server.post("/embed", &body).status, 401);
    let wrong = server.post_with("/embed", &body, &[("authorization", "Bearer nope")]);
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error_type"], "Validation");
    assert_eq!(server.get("/info").status, 401);
    let right = server.post_with("/embed", &body, &[("authorization", "Bearer secret")]);
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(server.get("/health").status, 200);
    assert_eq!(server.get("/metrics").status, 200);
}

#[test]
fn a_model_that_cannot_load_stops_the_server_with_its_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        oxformer_server::serve(
            ServerConfig::new(fixture("no-such-model")),
            listener,
            std::future::pending(),
        )
        .await
    });
    let error = result.unwrap_err();
    assert!(error.contains("no-such-model"), "{error}");
}

#[test]
fn metrics_use_tei_names() {
    let server = Server::with_model(&fixture("st-mean"));
    still_serves(&server);
    let metrics = server.get("/metrics").body;
    for name in [
        "te_request_count",
        "te_request_success",
        "te_request_duration_bucket",
        "te_request_tokenization_duration_bucket",
        "te_request_queue_duration_bucket",
        "te_request_inference_duration_bucket",
        "te_queue_size",
        "te_batch_next_size_bucket",
        "te_batch_next_tokens_bucket",
    ] {
        assert!(metrics.contains(name), "no {name} in\n{metrics}");
    }
    // still_serves sent one input as a string: TEI's `single`.
    assert!(
        metrics.contains("te_request_count{method=\"single\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("te_request_success{method=\"single\"} 1\n"),
        "{metrics}"
    );
    let answer = server.post_json("/embed", &json!({"inputs": ["a", "b"]}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("te_request_count{method=\"batch\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("te_request_success{method=\"batch\"} 1\n"),
        "{metrics}"
    );
}

/// As TEI: a model whose maximum input length exceeds --max-batch-tokens does not start
/// without truncation; with --auto-truncate its inputs are cut to one batch.
#[test]
fn a_model_longer_than_a_batch_needs_auto_truncate() {
    let mut config = ServerConfig::new(fixture("st-mean"));
    config.threads = 1;
    config.max_batch_tokens = 64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let refused = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        oxformer_server::serve(config.clone(), listener, std::future::pending()).await
    });
    let error = refused.unwrap_err();
    assert!(
        error.contains("128") && error.contains("--max-batch-tokens"),
        "{error}"
    );
    config.auto_truncate = true;
    let server = Server::start(config);
    assert_eq!(server.get("/info").json()["max_input_length"], 64);
    still_serves(&server);
}
