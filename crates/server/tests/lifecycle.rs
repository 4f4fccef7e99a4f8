//! The server while its model loads (503 from /health and the inference routes, 200 after),
//! and a panic inside one request (a 500, counted, and the server serves on). Both through the
//! server's hidden test hooks (environment variables, see `test_hook` in src/lib.rs), which is
//! why this file holds a single test: the variables are set once, before any server starts.

mod common;

use common::{Server, assert_close, fixture, vectors};
use oxformer_pipelines::sentence_embeddings::SentenceEmbeddingsOptions;
use oxformer_pipelines::{Task, pipeline};
use oxformer_server::ServerConfig;
use serde_json::json;

const PANIC_INPUT: &str = "this input makes the model thread panic";

#[test]
fn loading_is_503_and_a_panic_is_a_counted_500() {
    // SAFETY: the only test of this binary sets the variables before it starts the server,
    // while no other thread of this process reads the environment.
    unsafe {
        std::env::set_var("OXFORMER_SERVE_TEST_LOAD_DELAY_MS", "1500");
        std::env::set_var("OXFORMER_SERVE_TEST_PANIC_INPUT", PANIC_INPUT);
    }
    let model = fixture("st-mean");
    let mut config = ServerConfig::new(model.as_str());
    config.threads = 1;
    let server = Server::spawn(config);

    // Loading: /health and the inference routes answer 503 Unhealthy; /metrics answers.
    let health = server.get("/health");
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(health.json()["error_type"], "Unhealthy");
    let answer = server.post_json("/embed", &json!({"inputs": "hello"}));
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.json()["error_type"], "Unhealthy");
    assert_eq!(server.get("/info").status, 503);
    assert_eq!(server.get("/metrics").status, 200);

    server.wait_ready();
    let answer = server.post_json("/embed", &json!({"inputs": "hello"}));
    assert_eq!(answer.status, 200, "{}", answer.body);

    // A panic inside one request, sent with others that may share its batch: that request
    // gets 500 Backend and is counted as one failure; the others, and later requests, are
    // answered. (A shared batch panics once, then each request runs alone: 1 or 2 panics.)
    let texts = ["after the panic", "the server still serves"];
    let expected = pipeline(Task::SentenceEmbeddings, &model)
        .unwrap()
        .sentence_embeddings()
        .unwrap()
        .run(
            &texts,
            &SentenceEmbeddingsOptions {
                normalize_embeddings: true,
                ..SentenceEmbeddingsOptions::default()
            },
        )
        .unwrap();
    std::thread::scope(|scope| {
        let good: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| server.post_json("/embed", &json!({"inputs": texts}))))
            .collect();
        let bad = server.post_json("/embed", &json!({"inputs": ["fine", PANIC_INPUT]}));
        assert_eq!(bad.status, 500, "{}", bad.body);
        assert_eq!(bad.json()["error_type"], "Backend");
        for answer in good {
            let answer = answer.join().unwrap();
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert_close(&vectors(&answer.json()), &expected, 1e-5);
        }
    });
    let answer = server.post_json("/embed", &json!({"inputs": texts}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_close(&vectors(&answer.json()), &expected, 1e-5);
    let metrics = server.get("/metrics").body;
    let panics = metrics
        .lines()
        .find_map(|line| line.strip_prefix("oxformer_request_panic "))
        .unwrap();
    assert!(panics == "1" || panics == "2", "{metrics}");
    assert!(
        metrics.contains("te_request_failure{err=\"backend\"} 1\n"),
        "{metrics}"
    );
    assert_eq!(server.get("/health").status, 200);
    server.stop().unwrap();
}
