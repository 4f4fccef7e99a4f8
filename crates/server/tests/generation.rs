//! TGI's /generate and /generate_stream and OpenAI's /v1/completions against the
//! text-generation pipeline on the GPT-2 fixture, with the server-sent events parsed.

mod common;

use common::{Server, fixture, sse_data};
use oxformer_pipelines::pipeline_named;
use serde_json::{Map, Value, json};

const NEW_TOKENS: usize = 12;

/// What `Pipeline::call` continues "Hello world" with, greedily, without the prompt.
fn expected_text(model: &str) -> String {
    let options: Map<String, Value> = serde_json::from_value(json!({
        "max_new_tokens": NEW_TOKENS,
        "do_sample": false,
        "return_full_text": false,
        "clean_up_tokenization_spaces": false,
    }))
    .unwrap();
    let result = pipeline_named("text-generation", model)
        .unwrap()
        .call(&json!("Hello world"), &options)
        .unwrap();
    result[0]["generated_text"].as_str().unwrap().to_string()
}

#[test]
fn generate_routes_match_the_pipeline() {
    let model = fixture("gpt2");
    let expected = expected_text(&model);
    let server = Server::with_model(&model);
    let parameters = json!({"max_new_tokens": NEW_TOKENS, "do_sample": false, "details": true});

    // /generate
    let answer = server.post_json(
        "/generate",
        &json!({"inputs": "Hello world", "parameters": parameters}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["generated_text"], expected.as_str());
    let generated_tokens = body["details"]["generated_tokens"].as_u64().unwrap() as usize;
    assert!((1..=NEW_TOKENS).contains(&generated_tokens));
    let finish_reason = if generated_tokens == NEW_TOKENS {
        "length"
    } else {
        "eos_token"
    };
    assert_eq!(body["details"]["finish_reason"], finish_reason);
    let tokens = body["details"]["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), generated_tokens);
    let joined: String = tokens.iter().map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(joined, expected);

    // return_full_text puts the prompt first.
    let answer = server.post_json(
        "/generate",
        &json!({"inputs": "Hello world", "parameters": {"max_new_tokens": NEW_TOKENS, "do_sample": false, "return_full_text": true}}),
    );
    assert_eq!(
        answer.json()["generated_text"],
        format!("Hello world{expected}")
    );

    // /generate_stream: one event per token, the last with the text and finish reason.
    let answer = server.post_json(
        "/generate_stream",
        &json!({"inputs": "Hello world", "parameters": parameters}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"))
    );
    let events: Vec<Value> = sse_data(&answer.body)
        .iter()
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(events.len(), generated_tokens, "{}", answer.body);
    let (last, rest) = events.split_last().unwrap();
    for (index, event) in rest.iter().enumerate() {
        assert_eq!(event["index"], index + 1);
        assert!(event["generated_text"].is_null() && event["details"].is_null());
    }
    assert_eq!(last["generated_text"], expected.as_str());
    assert_eq!(last["details"]["finish_reason"], finish_reason);
    assert_eq!(last["details"]["generated_tokens"], generated_tokens);
    let streamed: String = events
        .iter()
        .map(|e| e["token"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, expected);
    let ids: Vec<&Value> = events.iter().map(|e| &e["token"]["id"]).collect();
    let generate_ids: Vec<&Value> = tokens.iter().map(|t| &t["id"]).collect();
    assert_eq!(ids, generate_ids);

    // /v1/completions, whole.
    let request = json!({"model": "gpt2", "prompt": "Hello world", "max_tokens": NEW_TOKENS, "temperature": 0});
    let answer = server.post_json("/v1/completions", &request);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], "gpt2");
    assert_eq!(body["choices"][0]["text"], expected.as_str());
    let openai_reason = if finish_reason == "length" {
        "length"
    } else {
        "stop"
    };
    assert_eq!(body["choices"][0]["finish_reason"], openai_reason);
    assert_eq!(body["usage"]["completion_tokens"], generated_tokens);

    // /v1/completions, streamed: chunks, then `data: [DONE]`.
    let mut request = request;
    request["stream"] = json!(true);
    let answer = server.post_json("/v1/completions", &request);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let data = sse_data(&answer.body);
    assert_eq!(
        data.last().map(String::as_str),
        Some("[DONE]"),
        "{}",
        answer.body
    );
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks.len(), generated_tokens);
    let streamed: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, expected);
    let (last, rest) = chunks.split_last().unwrap();
    assert!(
        rest.iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert_eq!(last["choices"][0]["finish_reason"], openai_reason);
}

#[test]
fn generation_errors_come_before_the_stream() {
    let server = Server::with_model(&fixture("gpt2"));
    for (path, body) in [
        (
            "/generate",
            json!({"inputs": "a", "parameters": {"stop": ["x"]}}),
        ),
        (
            "/generate_stream",
            json!({"inputs": "a", "parameters": {"no_such": 1}}),
        ),
        ("/v1/completions", json!({"prompt": "a", "n": 2})),
        (
            "/v1/completions",
            json!({"prompt": "a", "stream": true, "echo": true}),
        ),
    ] {
        let answer = server.post_json(path, &body);
        assert_eq!(answer.status, 422, "{path}: {}", answer.body);
        let key = if path.starts_with("/v1/") {
            "type"
        } else {
            "error_type"
        };
        assert_eq!(answer.json()[key], "Validation", "{}", answer.body);
    }
    // An option the pipeline refuses, found on the model thread, ends the stream with an
    // error event.
    let answer = server.post_json(
        "/generate_stream",
        &json!({"inputs": "a", "parameters": {"max_new_tokens": "many"}}),
    );
    let data = sse_data(&answer.body);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error_type"], "Validation", "{}", answer.body);
    // Embedding routes are not for generators.
    let answer = server.post_json("/embed", &json!({"inputs": "a"}));
    assert_eq!(answer.status, 424);
    let answer = server.post_json(
        "/generate",
        &json!({"inputs": "still", "parameters": {"max_new_tokens": 2}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
}
