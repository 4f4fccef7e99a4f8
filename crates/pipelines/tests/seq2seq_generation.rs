//! Greedy generation through the engine with T5, BART and Marian on the tiny fixtures
//! (`fixtures/models/{t5,t5-v1_1,mt5,bart,marian}`), against transformers' greedy `generate()` with
//! no logits processors (`reference.json` → `generate.greedy`): the tokens, exactly, for the padded
//! batch and for each input alone. Beam search gives the same bits on any number of threads.

use std::path::{Path, PathBuf};

use oxformer_models::bart::BartForConditionalGeneration;
use oxformer_models::generation::{Generative, Prompts};
use oxformer_models::marian::MarianMTModel;
use oxformer_models::t5::T5ForConditionalGeneration;
use oxformer_pipelines::generation::{Generation, GenerationConfig};
use oxformer_tensor::ThreadPool;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn folder(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

/// An int64 (rows, columns) tensor of `reference.safetensors` as rows of u32.
fn rows(dir: &Path, name: &str) -> Vec<Vec<u32>> {
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let view = tensors.tensor(name).unwrap();
    assert_eq!(view.dtype(), Dtype::I64);
    let columns = view.shape()[1];
    let values: Vec<u32> = view
        .data()
        .chunks_exact(8)
        .map(|chunk| i64::from_le_bytes(chunk.try_into().unwrap()) as u32)
        .collect();
    values.chunks(columns).map(<[u32]>::to_vec).collect()
}

fn ids(value: &Value) -> Vec<Vec<u32>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

/// The reference's greedy settings as a config.
fn config(settings: &Value) -> GenerationConfig {
    let id = |key: &str| settings[key].as_u64().map(|id| id as u32);
    GenerationConfig {
        max_new_tokens: settings["max_new_tokens"].as_u64().map(|n| n as usize),
        decoder_start_token_id: id("decoder_start_token_id"),
        bos_token_id: id("bos_token_id"),
        pad_token_id: id("pad_token_id"),
        eos_token_id: id("eos_token_id").into_iter().collect(),
        ..GenerationConfig::default()
    }
}

fn check<M: Generative>(name: &str, model: &M) {
    let dir = folder(name);
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let greedy = &reference["generate"]["greedy"];
    let config = config(&greedy["settings"]);
    let input_ids = rows(&dir, "input_ids");
    let attention_mask = rows(&dir, "attention_mask");

    let prompts = Prompts::from_padded(input_ids.clone(), attention_mask.clone()).unwrap();
    let output = Generation::new(model, &prompts, &config)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(output.sequences, ids(&greedy["batch"]), "{name}: the batch");

    for (row, expected) in ids(&greedy["one_by_one"]).into_iter().enumerate() {
        let length = attention_mask[row]
            .iter()
            .filter(|&&value| value == 1)
            .count();
        let alone = Prompts::from_padded(
            vec![input_ids[row][..length].to_vec()],
            vec![vec![1; length]],
        )
        .unwrap();
        let output = Generation::new(model, &alone, &config)
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(output.sequences, [expected], "{name}: input {row} alone");
    }
}

#[test]
fn t5_greedy_generate_matches_transformers() {
    for name in ["t5", "t5-v1_1", "mt5"] {
        check(
            name,
            &T5ForConditionalGeneration::from_folder(&folder(name)).unwrap(),
        );
    }
}

#[test]
fn bart_greedy_generate_matches_transformers() {
    check(
        "bart",
        &BartForConditionalGeneration::from_folder(&folder("bart")).unwrap(),
    );
}

#[test]
fn marian_greedy_generate_matches_transformers() {
    check(
        "marian",
        &MarianMTModel::from_folder(&folder("marian")).unwrap(),
    );
}

/// Beam search with BART's processors (forced BOS and EOS, no-repeat 3, min length, length
/// penalty): the same sequences, scores and per-step log-probabilities on 1, 2 and 3 threads (the
/// per-row work of a step is split over the threads).
#[test]
fn beam_search_is_bit_identical_for_any_thread_count() {
    let dir = folder("bart");
    let model = BartForConditionalGeneration::from_folder(&dir).unwrap();
    let mut config = GenerationConfig::from_folder(&dir).unwrap();
    config.max_new_tokens = Some(20);
    config.min_length = 10;
    let prompts =
        Prompts::from_padded(rows(&dir, "input_ids"), rows(&dir, "attention_mask")).unwrap();
    let run = |threads: usize| {
        ThreadPool::new(threads).unwrap().install(|| {
            Generation::new(&model, &prompts, &config)
                .unwrap()
                .record_logits(true)
                .run()
                .unwrap()
        })
    };
    let one = run(1);
    assert!(one.scores.len() > 1, "no steps recorded");
    for threads in [2, 3] {
        let many = run(threads);
        assert_eq!(
            many.sequences, one.sequences,
            "{threads} threads: sequences"
        );
        assert_eq!(
            many.sequences_scores, one.sequences_scores,
            "{threads} threads: sequence scores"
        );
        assert_eq!(many.scores, one.scores, "{threads} threads: step scores");
    }
}
