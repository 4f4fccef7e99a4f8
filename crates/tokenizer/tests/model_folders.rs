//! Every model folder of `fixtures/models/` (and the real all-MiniLM-L6-v2 of `fixtures/minilm/`):
//! its tokenizer, loaded from the folder, reproduces exactly the `input_ids`, `attention_mask`
//! and `token_type_ids` that transformers / sentence-transformers fed the model for the reference
//! outputs (a padded batch of the texts in `reference.json`).

mod common;

use std::path::Path;

use oxformer_tokenizer::{EncodeInput, EncodeOptions, Padding, Side, Tokenizer, Truncation};
use safetensors::SafeTensors;
use serde_json::Value;

fn int_tensor(tensors: &SafeTensors<'_>, name: &str) -> Option<Vec<Vec<i64>>> {
    let view = tensors.tensor(name).ok()?;
    assert_eq!(view.dtype(), safetensors::Dtype::I64, "{name}");
    let columns = view.shape()[1];
    let values: Vec<i64> = view
        .data()
        .chunks_exact(8)
        .map(|bytes| i64::from_le_bytes(bytes.try_into().unwrap()))
        .collect();
    Some(values.chunks(columns).map(<[i64]>::to_vec).collect())
}

/// Encodes the folder's reference texts as the reference did and compares with `tensors_file`.
fn check_folder(
    folder: &Path,
    reference: &Value,
    tensors_file: &Path,
    sentence_transformers: bool,
) {
    let mut tokenizer =
        Tokenizer::from_folder(folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
    if let Some(pad_id) = reference.get("pad_token_id").and_then(Value::as_u64) {
        let pad = tokenizer.id_to_token(pad_id as u32).unwrap();
        tokenizer.set_pad_token(&pad).unwrap();
    }
    // sentence-transformers' tokenize(): lower-cased with do_lower_case, cut at max_seq_length
    // (sentence_bert_config.json).
    let sentence_config: Value = std::fs::read_to_string(folder.join("sentence_bert_config.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    let lower_case = sentence_transformers && sentence_config["do_lower_case"] == true;
    let max_seq_length = sentence_config["max_seq_length"].as_u64().unwrap_or(128) as usize;
    let lowered: Vec<String> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| match text {
            Value::String(text) if lower_case => text.to_lowercase(),
            Value::String(text) => text.clone(),
            _ => String::new(),
        })
        .collect();
    let texts = reference["texts"].as_array().unwrap();
    let inputs: Vec<EncodeInput<'_>> = texts
        .iter()
        .zip(&lowered)
        .map(|(text, lowered)| match text {
            Value::String(_) => EncodeInput::Single(lowered),
            Value::Array(pair) => {
                EncodeInput::Pair(pair[0].as_str().unwrap(), pair[1].as_str().unwrap())
            }
            other => panic!("text {other}"),
        })
        .collect();
    let options = EncodeOptions {
        padding: Padding::Longest,
        padding_side: Some(
            match reference.get("padding_side").and_then(Value::as_str) {
                Some("left") => Side::Left,
                _ => Side::Right,
            },
        ),
        truncation: if sentence_transformers {
            Truncation::LongestFirst
        } else {
            Truncation::None
        },
        max_length: sentence_transformers.then_some(max_seq_length),
        ..EncodeOptions::default()
    };
    let encodings = tokenizer.encode_batch(&inputs, &options).unwrap();
    let bytes = std::fs::read(tensors_file).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let to_i64 = |values: &[u32]| values.iter().map(|&v| i64::from(v)).collect::<Vec<_>>();
    let ours_ids: Vec<Vec<i64>> = encodings.iter().map(|e| to_i64(e.ids())).collect();
    let ours_mask: Vec<Vec<i64>> = encodings
        .iter()
        .map(|e| to_i64(e.attention_mask()))
        .collect();
    let ours_types: Vec<Vec<i64>> = encodings.iter().map(|e| to_i64(e.type_ids())).collect();
    let name = folder.display();
    assert_eq!(
        ours_ids,
        int_tensor(&tensors, "input_ids").unwrap(),
        "{name}: input_ids"
    );
    assert_eq!(
        ours_mask,
        int_tensor(&tensors, "attention_mask").unwrap(),
        "{name}: attention_mask"
    );
    let takes_types = tokenizer
        .model_input_names()
        .iter()
        .any(|n| n == "token_type_ids");
    match int_tensor(&tensors, "token_type_ids") {
        Some(types) => {
            assert!(
                takes_types,
                "{name}: token_type_ids in the reference, not in model_input_names"
            );
            assert_eq!(ours_types, types, "{name}: token_type_ids");
        }
        None => assert!(
            !takes_types,
            "{name}: model_input_names {:?} but the reference has no token_type_ids",
            tokenizer.model_input_names()
        ),
    }
}

#[test]
fn every_model_folder_tokenizes_its_reference_batch() {
    let models = common::fixtures_dir().join("models");
    let mut folders: Vec<_> = std::fs::read_dir(&models)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("reference.json").is_file())
        .collect();
    folders.sort();
    assert!(folders.len() >= 30, "{} model folders", folders.len());
    for folder in folders {
        let reference: Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("reference.json")).unwrap())
                .unwrap();
        let sentence_transformers = reference["model_class"] == "SentenceTransformer";
        check_folder(
            &folder,
            &reference,
            &folder.join("reference.safetensors"),
            sentence_transformers,
        );
    }
}

#[test]
#[ignore = "needs `cargo xtask fetch`"]
fn real_minilm_tokenizes_the_embedding_sentences() {
    let fixture = common::fixtures_dir().join("minilm");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("reference.json")).unwrap())
            .unwrap();
    let folder = common::cache_dir().join("models/sentence-transformers/all-MiniLM-L6-v2");
    check_folder(
        &folder,
        &reference,
        &fixture.join("embeddings.safetensors"),
        true,
    );
}
