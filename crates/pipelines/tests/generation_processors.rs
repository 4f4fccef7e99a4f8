//! Logits processors and warpers against transformers' own on the same inputs
//! (`fixtures/generation/processors.{json,safetensors}`): the chain `generate()` builds from
//! each config, and its output scores and their softmax.

mod generation_common;

use generation_common::{Fixture, fixtures};
use oxformer_pipelines::generation::{
    Builtin, GenerationConfig, LogitsProcessor, LogitsProcessorList,
};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = scores.iter().map(|&s| ((s - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

#[test]
fn every_processor_chain_matches_transformers() {
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("generation/processors.json")).unwrap(),
    )
    .unwrap();
    let tensors = Fixture::open(&fixtures().join("generation/processors.safetensors"));
    let input_ids = tensors.ints("input_ids");
    let scores = tensors.floats("scores");
    let prompt_length = json["prompt_length"].as_u64().unwrap() as usize;
    let eos = json["eos_token_id"].as_u64().unwrap() as u32;
    let vocab = json["vocab_size"].as_u64().unwrap() as usize;
    let cases = json["cases"].as_object().unwrap();
    assert!(cases.len() >= 26, "every case is read");
    for (case, spec) in cases {
        let fields = spec["generation_config"].as_object().unwrap();
        let chain = if case == "min-new-tokens-5" {
            // Built by hand in the reference script, as generate() would after resolving eos.
            LogitsProcessorList::new(vec![Box::new(Builtin::MinNewTokens {
                prompt_length,
                min_new_tokens: 5,
                eos_token_ids: vec![eos],
            })])
        } else {
            let mut config = GenerationConfig::default();
            config.update(fields).unwrap();
            LogitsProcessorList::from_config(&config, prompt_length)
        };
        let names = chain.names();
        let expected_names: Vec<&str> = spec["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap())
            .collect();
        assert_eq!(names, expected_names, "{case}: chain");

        let expected = tensors.floats(&format!("{case}.scores"));
        let expected_probs = tensors.floats(&format!("{case}.probs"));
        let mut max_difference = 0.0f32;
        // The chain sees the first `history_length` tokens of each row.
        let history_length = spec
            .get("history_length")
            .map_or(input_ids.ncols(), |length| {
                length.as_u64().unwrap() as usize
            });
        for row in 0..input_ids.nrows() {
            let history: Vec<u32> = input_ids
                .row(row)
                .iter()
                .take(history_length)
                .map(|&id| id as u32)
                .collect();
            let mut ours: Vec<f32> = scores.row(row).to_vec();
            chain.apply(&history, &mut ours);
            assert_eq!(ours.len(), vocab);
            for (token, (&value, &reference)) in ours.iter().zip(expected.row(row)).enumerate() {
                let same = if reference.is_infinite() || value.is_infinite() {
                    value == reference
                } else {
                    let difference = (value - reference).abs();
                    max_difference = max_difference.max(difference);
                    difference <= TOLERANCE
                };
                assert!(
                    same,
                    "{case}: row {row} token {token}: ours {value}, reference {reference}"
                );
            }
            for (token, (&p, &reference)) in softmax(&ours)
                .iter()
                .zip(expected_probs.row(row))
                .enumerate()
            {
                assert!(
                    (p - reference).abs() <= TOLERANCE,
                    "{case}: row {row} probability of {token}: ours {p}, reference {reference}"
                );
            }
        }
        println!("{case}: {expected_names:?}, max difference {max_difference:e}");
    }
}

#[test]
fn unknown_and_ill_typed_options_are_errors() {
    let mut config = GenerationConfig::default();
    let bad: serde_json::Map<String, Value> = serde_json::from_str(r#"{"top_kk": 3}"#).unwrap();
    let error = config.update(&bad).unwrap_err().to_string();
    assert!(error.contains("top_kk"), "{error}");
    let bad: serde_json::Map<String, Value> =
        serde_json::from_str(r#"{"temperature": "hot"}"#).unwrap();
    let error = config.update(&bad).unwrap_err().to_string();
    assert!(error.contains("temperature"), "{error}");
    let mut config = GenerationConfig {
        do_sample: true,
        temperature: 0.0,
        ..GenerationConfig::default()
    };
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("temperature"), "{error}");
    config.temperature = 1.0;
    config.num_beams = 2;
    config.num_return_sequences = 3;
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("num_return_sequences"), "{error}");
}

/// A processor of the user's own, in a chain with the built-in ones.
#[derive(Debug)]
struct ForbidEven;

impl LogitsProcessor for ForbidEven {
    fn name(&self) -> &str {
        "ForbidEven"
    }

    fn apply(&self, _history: &[u32], scores: &mut [f32]) {
        for score in scores.iter_mut().step_by(2) {
            *score = f32::NEG_INFINITY;
        }
    }
}

#[test]
fn users_can_add_their_own_processor() {
    let config = GenerationConfig {
        repetition_penalty: 2.0,
        ..GenerationConfig::default()
    };
    let mut chain = LogitsProcessorList::from_config(&config, 2);
    chain.push(ForbidEven);
    assert_eq!(
        chain.names(),
        ["RepetitionPenaltyLogitsProcessor", "ForbidEven"]
    );
    let mut scores = vec![1.0, 2.0, 3.0, -4.0];
    chain.apply(&[1, 3], &mut scores);
    assert_eq!(scores, [f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY, -8.0]);
}
