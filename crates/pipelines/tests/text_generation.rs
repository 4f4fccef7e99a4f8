//! The text-generation pipeline against transformers' `pipeline("text-generation")` outputs
//! (`fixtures/pipelines/text-generation/*.json`), streaming, and option errors.

mod generation_common;

use generation_common::{fixtures, read_json};
use oxformer_pipelines::text_generation::{GeneratedSequence, TextGenerationPipeline};
use serde_json::{Value, json};

fn pipeline(model: &str) -> TextGenerationPipeline {
    TextGenerationPipeline::from_folder(&fixtures().join("models").join(model)).unwrap()
}

#[test]
fn every_pipeline_case_matches_transformers() {
    let mut paths: Vec<_> = std::fs::read_dir(fixtures().join("pipelines/text-generation"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 9, "every case is read");
    for path in paths {
        let case = read_json(&path);
        let model = case["model"].as_str().unwrap();
        let pipeline = pipeline(model);
        let options = pipeline
            .options_from_json(case["options"].as_object().unwrap())
            .unwrap();
        let (prompts, single): (Vec<String>, bool) = match &case["inputs"] {
            Value::String(text) => (vec![text.clone()], true),
            Value::Array(texts) => (
                texts
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
                false,
            ),
            other => panic!("unexpected inputs {other}"),
        };
        let results = pipeline.generate(&prompts, &options).unwrap();
        let ours = if single {
            serde_json::to_value(&results[0]).unwrap()
        } else {
            serde_json::to_value(&results).unwrap()
        };
        assert_eq!(ours, case["output"], "{}: output differs", path.display());
        println!("{}: ok", path.file_name().unwrap().to_string_lossy());
    }
}

/// The streamed pieces, concatenated, are the decoded continuation, also where a character's
/// bytes are split over tokens (the random models emit many such); and every piece is whole
/// text (no replacement character that a later token would complete).
#[test]
fn streamed_pieces_concatenate_to_the_full_decode() {
    let pipeline = pipeline("gpt2");
    let mut options = pipeline
        .options_from_json(
            json!({"do_sample": false, "max_new_tokens": 24, "return_tensors": true})
                .as_object()
                .unwrap(),
        )
        .unwrap();
    let mut split_characters = 0;
    for prompt in [
        "Hello, my dog is cute",
        "The capital of France",
        "Once upon a time, there lived a",
    ] {
        let results = pipeline.generate(&[prompt], &options).unwrap();
        let GeneratedSequence::Tokens {
            generated_token_ids,
        } = &results[0][0]
        else {
            panic!("return_tensors gives ids");
        };
        let prompt_length = pipeline
            .tokenizer()
            .encode(prompt, &Default::default())
            .unwrap()
            .len();
        let new_tokens = &generated_token_ids[prompt_length..];
        let full = pipeline
            .tokenizer()
            .decode(new_tokens, true, Some(false))
            .unwrap();

        options.return_tensors = false;
        let mut streamed = String::new();
        let mut tokens = Vec::new();
        for piece in pipeline.stream(prompt, &options).unwrap() {
            let piece = piece.unwrap();
            if let Some(token) = piece.token_id {
                tokens.push(token);
                if piece.text.is_empty() {
                    split_characters += 1;
                }
            }
            streamed.push_str(&piece.text);
        }
        options.return_tensors = true;
        assert_eq!(tokens, new_tokens, "{prompt}: streamed tokens");
        assert_eq!(streamed, full, "{prompt}: streamed text");
    }
    assert!(
        split_characters > 0,
        "the fixtures' continuations split characters over tokens"
    );
}

#[test]
fn bad_options_and_inputs_are_errors() {
    let pipeline = pipeline("gpt2");
    let error = pipeline
        .options_from_json(json!({"max_new_tokenz": 3}).as_object().unwrap())
        .unwrap_err()
        .to_string();
    assert!(error.contains("max_new_tokenz"), "{error}");
    let error = pipeline
        .options_from_json(
            json!({"return_full_text": false, "return_tensors": true})
                .as_object()
                .unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("return_tensors"), "{error}");
    let options = pipeline.default_options();
    let error = pipeline.generate(&[""], &options).unwrap_err().to_string();
    assert!(error.contains("empty"), "{error}");
    let mut options = pipeline.default_options();
    options.generation.max_new_tokens = Some(500);
    let error = pipeline
        .generate(&["Hello"], &options)
        .unwrap_err()
        .to_string();
    assert!(error.contains("positions"), "{error}");
    options.generation.max_new_tokens = Some(4);
    options.generation.num_beams = 2;
    assert!(pipeline.stream("Hello", &options).is_err());
}

/// Seeded sampling through the pipeline: the same seed gives the same text, on any number of
/// threads.
#[test]
fn seeded_sampling_gives_the_same_text() {
    let mut pipeline = pipeline("gpt2");
    let options = pipeline
        .options_from_json(
            json!({"do_sample": true, "max_new_tokens": 12, "seed": 42, "top_k": 0,
                   "num_return_sequences": 3})
            .as_object()
            .unwrap(),
        )
        .unwrap();
    let first = pipeline.generate(&["Once upon a time"], &options).unwrap();
    pipeline.set_num_threads(1).unwrap();
    let second = pipeline.generate(&["Once upon a time"], &options).unwrap();
    assert_eq!(first, second);
    assert_eq!(first[0].len(), 3, "num_return_sequences");
}

#[test]
fn greedy_new_tokens_for_benchmarks() {
    let pipeline = pipeline("gpt2");
    let case = read_json(&fixtures().join("generation/gpt2/greedy.json"));
    let prompt: Vec<u32> = case["input_ids"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let expected: Vec<u32> = case["new_tokens"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let ours = pipeline.greedy_new_tokens(&prompt, expected.len()).unwrap();
    assert_eq!(ours, expected);
}

/// `call` takes and returns JSON as transformers' pipeline does.
#[test]
fn call_takes_and_returns_transformers_json() {
    let case = read_json(&fixtures().join("pipelines/text-generation/gpt2-list.json"));
    let pipeline = pipeline("gpt2");
    let output = pipeline
        .call(&case["inputs"], case["options"].as_object().unwrap())
        .unwrap();
    assert_eq!(output, case["output"]);
    let error = pipeline
        .call(&json!(3), case["options"].as_object().unwrap())
        .unwrap_err()
        .to_string();
    assert!(error.contains("string"), "{error}");
    let by_id = TextGenerationPipeline::new(fixtures().join("models/gpt2").to_str().unwrap());
    assert!(by_id.is_ok());
}

/// `stop_strings`: decoding stops at the token that completes the string, not before; the
/// expected tokens are the reference's greedy ones, cut there.
#[test]
fn stop_strings_end_the_text_where_they_appear() {
    let pipeline = pipeline("gpt2");
    let reference = read_json(&fixtures().join("generation/gpt2/greedy.json"));
    let greedy: Vec<u32> = reference["new_tokens"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let prompt = reference["prompts"][0].as_str().unwrap();
    let stop = "out";
    let cut = (1..=greedy.len())
        .find(|&k| {
            pipeline
                .tokenizer()
                .decode(&greedy[..k], false, Some(false))
                .unwrap()
                .contains(stop)
        })
        .expect("the greedy text contains the stop string");
    assert!(cut < greedy.len(), "the stop string ends the text early");
    let options = pipeline
        .options_from_json(
            json!({"do_sample": false, "max_new_tokens": 10, "stop_strings": stop,
                   "return_tensors": true})
            .as_object()
            .unwrap(),
        )
        .unwrap();
    let results = pipeline.generate(&[prompt], &options).unwrap();
    let GeneratedSequence::Tokens {
        generated_token_ids,
    } = &results[0][0]
    else {
        panic!("return_tensors gives ids");
    };
    let prompt_length = generated_token_ids.len() - cut;
    assert_eq!(&generated_token_ids[prompt_length..], &greedy[..cut]);
}

/// Streaming on the pipeline's own threads gives the same pieces as on the caller's.
#[test]
fn streaming_on_pipeline_threads_gives_the_same_pieces() {
    let collect = |pipeline: &TextGenerationPipeline| -> Vec<String> {
        let options = pipeline
            .options_from_json(
                json!({"do_sample": true, "seed": 5, "max_new_tokens": 12})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        pipeline
            .stream("The capital of France", &options)
            .unwrap()
            .map(|piece| piece.unwrap().text)
            .collect()
    };
    let plain = pipeline("gpt2");
    let mut threaded = pipeline("gpt2");
    threaded.set_num_threads(2).unwrap();
    let pieces = collect(&plain);
    assert!(!pieces.concat().is_empty());
    assert_eq!(pieces, collect(&threaded));
}
