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
            json!({"inputs": "a", "parameters": {"stop": ["a", "b", "c", "d", "e"]}}),
        ),
        (
            "/generate_stream",
            json!({"inputs": "a", "parameters": {"stop": [""]}}),
        ),
        ("/v1/completions", json!({"prompt": "a", "stop": 3})),
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

/// The greedy tokens of the GPT-2 fixture after "Hello world" (checked against the pipeline in
/// `generate_routes_match_the_pipeline`): their texts.
fn greedy_token_texts(server: &Server) -> Vec<String> {
    let answer = server.post_json(
        "/generate",
        &json!({"inputs": "Hello world", "parameters": {"max_new_tokens": NEW_TOKENS, "do_sample": false, "details": true}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["details"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|token| token["text"].as_str().unwrap().to_string())
        .collect()
}

/// A stop sequence ends generation at the first token after which the text ends with it: TGI
/// keeps it in the text and says `stop_sequence`; OpenAI leaves it out (also when streamed,
/// though it spans two tokens) and says `stop`.
#[test]
fn stop_sequences_end_generation_as_tgi_and_openai_do() {
    let model = fixture("gpt2");
    let expected = expected_text(&model);
    let server = Server::with_model(&model);
    let texts = greedy_token_texts(&server);
    assert_eq!(texts.concat(), expected);
    assert!(texts.len() >= 5, "{texts:?}");
    // The stop: the last character of token 3 and all of token 4 (two tokens), and a stop
    // that never occurs.
    let third = &texts[2];
    let last_char = third.chars().last().expect("a token with text");
    let stop = format!("{last_char}{}", texts[3]);
    // Where the text first ends with it.
    let cut = (1..=texts.len())
        .find(|&count| texts[..count].concat().ends_with(&stop))
        .unwrap();
    // Before the length limit, so that the stop sequence is why it ends.
    assert!(cut < NEW_TOKENS, "{cut}");
    let kept = texts[..cut].concat();
    let without = &kept[..kept.len() - stop.len()];
    let stops = json!(["never in this text", stop]);

    let answer = server.post_json(
        "/generate",
        &json!({"inputs": "Hello world", "parameters": {"max_new_tokens": NEW_TOKENS, "do_sample": false, "details": true, "stop": stops}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["generated_text"], kept.as_str());
    assert_eq!(body["details"]["finish_reason"], "stop_sequence");
    assert_eq!(body["details"]["generated_tokens"], cut);

    let answer = server.post_json(
        "/generate_stream",
        &json!({"inputs": "Hello world", "parameters": {"max_new_tokens": NEW_TOKENS, "do_sample": false, "stop": stops}}),
    );
    let events: Vec<Value> = sse_data(&answer.body)
        .iter()
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(events.len(), cut, "{}", answer.body);
    let last = events.last().unwrap();
    assert_eq!(last["generated_text"], kept.as_str());
    assert_eq!(last["details"]["finish_reason"], "stop_sequence");

    let request =
        json!({"prompt": "Hello world", "max_tokens": NEW_TOKENS, "temperature": 0, "stop": stop});
    let answer = server.post_json("/v1/completions", &request);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["choices"][0]["text"], without);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], cut);

    let mut request = request;
    request["stream"] = json!(true);
    let answer = server.post_json("/v1/completions", &request);
    let data = sse_data(&answer.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, without, "{}", answer.body);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

/// A prompt is counted in tokens: past --max-input-length it is refused before generation
/// (422, as TGI's validation), and its tokens are counted in `te_batch_next_tokens`.
#[test]
fn prompt_tokens_are_limited_and_counted() {
    let model = fixture("gpt2");
    let prompt_tokens = oxformer_tokenizer::Tokenizer::from_folder(&model)
        .unwrap()
        .encode("Hello world", &oxformer_tokenizer::EncodeOptions::default())
        .unwrap()
        .len();
    let mut config = oxformer_server::ServerConfig::new(model.as_str());
    config.threads = 1;
    config.max_input_length = Some(prompt_tokens);
    let server = Server::start(config);
    let answer = server.post_json(
        "/generate",
        &json!({"inputs": "Hello world", "parameters": {"max_new_tokens": 2}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains(&format!("te_batch_next_tokens_sum {prompt_tokens}\n")),
        "{metrics}"
    );
    for (path, body) in [
        (
            "/generate",
            json!({"inputs": "Hello world, again", "parameters": {"max_new_tokens": 2}}),
        ),
        (
            "/generate_stream",
            json!({"inputs": "Hello world, again", "parameters": {"max_new_tokens": 2}}),
        ),
        (
            "/v1/completions",
            json!({"prompt": "Hello world, again", "max_tokens": 2}),
        ),
    ] {
        let answer = server.post_json(path, &body);
        assert_eq!(answer.status, 422, "{path}: {}", answer.body);
        assert!(answer.body.contains("tokens"), "{}", answer.body);
    }
}

/// Each new token's log-probability and the step's `top` most likely tokens, by id, from the
/// model's own logits: one forward pass of the GPT-2 fixture over the prompt's ids and the
/// generated ones, `log_softmax` at each position before a new token.
fn model_logprobs(
    model: &str,
    prompt: &str,
    generated: &[u32],
    top: usize,
) -> Vec<(f32, Vec<(u32, f32)>)> {
    use oxformer_models::gpt2::{Gpt2Input, Gpt2LmHeadModel};
    use oxformer_tokenizer::{EncodeOptions, Tokenizer};

    let tokenizer = Tokenizer::from_folder(model).unwrap();
    let plain = EncodeOptions {
        add_special_tokens: false,
        ..EncodeOptions::default()
    };
    let prompt_ids = tokenizer.encode(prompt, &plain).unwrap().ids().to_vec();
    let ids: Vec<u32> = prompt_ids.iter().chain(generated).copied().collect();
    let input_ids = ndarray::Array2::from_shape_vec((1, ids.len()), ids).unwrap();
    let input = Gpt2Input {
        input_ids: input_ids.view(),
        position_ids: None,
        attention_mask: None,
    };
    let gpt2 = Gpt2LmHeadModel::from_folder(std::path::Path::new(model)).unwrap();
    let (logits, _) = gpt2.forward(&input, None, false).unwrap(); // (1, seq, vocab)
    generated
        .iter()
        .enumerate()
        .map(|(step, &token)| {
            let row = logits.slice(ndarray::s![0, prompt_ids.len() - 1 + step, ..]);
            let max = row.fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
            let log_sum = max
                + row
                    .iter()
                    .map(|&x| (f64::from(x) - max).exp())
                    .sum::<f64>()
                    .ln();
            let log_prob = |id: u32| (f64::from(row[id as usize]) - log_sum) as f32;
            let mut ranked: Vec<u32> = (0..row.len() as u32).collect();
            ranked.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            let best = ranked[..top].iter().map(|&id| (id, log_prob(id))).collect();
            (log_prob(token), best)
        })
        .collect()
}

fn assert_logprob(actual: &Value, expected: f32, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: no log-probability: {actual}")) as f32;
    assert!(
        (actual - expected).abs() <= 1e-4,
        "{what}: {actual} vs the model's {expected}"
    );
}

/// Greedy decoding's log-probabilities equal `log_softmax` of the model's logits: TGI's
/// `logprob` on /generate's details and each /generate_stream token, and `top_tokens` with
/// `top_n_tokens` (more than 5 refused); OpenAI's `logprobs` on
/// /v1/completions (tokens, token_logprobs, top_logprobs by text, text_offset), streamed too;
/// `null` when not asked; more than 5 refused.
#[test]
fn log_probabilities_come_from_the_model_logits() {
    use oxformer_tokenizer::Tokenizer;

    let model = fixture("gpt2");
    let server = Server::with_model(&model);
    let prompt = "Hello world";
    let answer = server.post_json(
        "/generate",
        &json!({"inputs": prompt, "parameters": {"max_new_tokens": NEW_TOKENS, "do_sample": false, "details": true}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let tokens = answer.json()["details"]["tokens"]
        .as_array()
        .unwrap()
        .clone();
    let ids: Vec<u32> = tokens
        .iter()
        .map(|token| token["id"].as_u64().unwrap() as u32)
        .collect();
    let top = 3;
    let expected = model_logprobs(&model, prompt, &ids, top);
    for (step, token) in tokens.iter().enumerate() {
        assert_logprob(
            &token["logprob"],
            expected[step].0,
            &format!("/generate {step}"),
        );
    }

    // TGI's top_n_tokens: each step's most likely tokens, best first, in `top_tokens`.
    let check_top = |top_tokens: &Value, step: usize, what: &str| {
        let top_tokens = top_tokens.as_array().unwrap();
        assert_eq!(top_tokens.len(), top, "{what}");
        for (given, &(id, value)) in top_tokens.iter().zip(&expected[step].1) {
            assert_eq!(given["id"], id, "{what}");
            assert_logprob(&given["logprob"], value, what);
        }
    };
    let answer = server.post_json(
        "/generate",
        &json!({"inputs": prompt, "parameters": {"max_new_tokens": NEW_TOKENS, "do_sample": false, "details": true, "top_n_tokens": top}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let details = &answer.json()["details"];
    for step in 0..ids.len() {
        let what = format!("/generate top_tokens {step}");
        check_top(&details["top_tokens"][step], step, &what);
    }

    let answer = server.post_json(
        "/generate_stream",
        &json!({"inputs": prompt, "parameters": {"max_new_tokens": NEW_TOKENS, "do_sample": false, "top_n_tokens": top}}),
    );
    let events: Vec<Value> = sse_data(&answer.body)
        .iter()
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(events.len(), ids.len());
    for (step, event) in events.iter().enumerate() {
        assert_eq!(event["token"]["id"], ids[step]);
        let what = format!("/generate_stream {step}");
        assert_logprob(&event["token"]["logprob"], expected[step].0, &what);
        check_top(&event["top_tokens"], step, &what);
    }
    let too_many = server.post_json(
        "/generate",
        &json!({"inputs": prompt, "parameters": {"top_n_tokens": 6}}),
    );
    assert_eq!(too_many.status, 422, "{}", too_many.body);

    // OpenAI: top_logprobs are keyed by each token's text, decoded alone.
    let tokenizer = Tokenizer::from_folder(&model).unwrap();
    let text_of = |id: u32| tokenizer.decode(&[id], false, Some(false)).unwrap();
    let request =
        json!({"prompt": prompt, "max_tokens": NEW_TOKENS, "temperature": 0, "logprobs": top});
    let answer = server.post_json("/v1/completions", &request);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    let logprobs = &body["choices"][0]["logprobs"];
    let texts: Vec<&str> = logprobs["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), ids.len());
    assert_eq!(texts.concat(), body["choices"][0]["text"].as_str().unwrap());
    let mut offset = prompt.chars().count();
    for (step, (value, top_logprobs)) in expected.iter().enumerate() {
        let what = format!("/v1/completions {step}");
        assert_logprob(&logprobs["token_logprobs"][step], *value, &what);
        assert_eq!(logprobs["text_offset"][step], offset, "{what}");
        offset += texts[step].chars().count();
        let given = logprobs["top_logprobs"][step].as_object().unwrap();
        // Greedy: the chosen token is the most likely one, so no extra entry.
        assert_eq!(given.len(), top, "{what}: {given:?}");
        for &(id, value) in top_logprobs {
            assert_logprob(&given[&text_of(id)], value, &what);
        }
    }

    let streamed = server.post_json(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": NEW_TOKENS, "temperature": 0, "logprobs": 0, "stream": true}),
    );
    let chunks: Vec<Value> = sse_data(&streamed.body)
        .iter()
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(chunks.len(), ids.len());
    for (step, chunk) in chunks.iter().enumerate() {
        let logprobs = &chunk["choices"][0]["logprobs"];
        let what = format!("streamed {step}");
        assert_logprob(&logprobs["token_logprobs"][0], expected[step].0, &what);
        assert_eq!(
            logprobs["text_offset"][0],
            logprobs_offset(&body, step),
            "{what}"
        );
        // logprobs 0: the chosen token only.
        assert_eq!(logprobs["top_logprobs"][0].as_object().unwrap().len(), 1);
    }

    let plain = server.post_json(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 2}),
    );
    assert_eq!(plain.json()["choices"][0]["logprobs"], Value::Null);
    let too_many = server.post_json(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 2, "logprobs": 6}),
    );
    assert_eq!(too_many.status, 422, "{}", too_many.body);
}

/// The `text_offset` of token `step` in a completion's `logprobs`.
fn logprobs_offset(body: &Value, step: usize) -> Value {
    body["choices"][0]["logprobs"]["text_offset"][step].clone()
}
