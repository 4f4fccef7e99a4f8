//! Greedy generation through the engine with T5, BART and Marian on the tiny fixtures
//! (`fixtures/models/{t5,t5-v1_1,mt5,bart,marian}`), against transformers' greedy `generate()` with
//! no logits processors (`reference.json` → `generate.greedy`): the tokens, exactly, for the padded
//! batch and for each input alone.

use std::path::{Path, PathBuf};

use oxformer_models::bart::BartForConditionalGeneration;
use oxformer_models::generation::{Generative, Prompts};
use oxformer_models::marian::MarianMTModel;
use oxformer_models::t5::T5ForConditionalGeneration;
use oxformer_pipelines::generation::{Generation, GenerationConfig};
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
