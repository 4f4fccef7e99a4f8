//! Folders with a sentencepiece model and no tokenizer.json (T5's spiece.model, XLM-R's
//! sentencepiece.bpe.model, Marian's source.spm + target.spm + vocab.json) give transformers'
//! ids, offsets and decoded text.
//!
//! The folders and the references are written by `xtask/python/fixtures_sentencepiece.py`
//! (`fixtures/tokenizers/spm-*`, `fixtures/tokenizers/reference/spm-*.json`): for T5 and XLM-R
//! the reference is the fast tokenizer transformers converts from the spm file (what
//! `AutoTokenizer` and the pipelines use), for Marian the slow `MarianTokenizer` (there is no
//! other).

mod common;

use std::path::PathBuf;

use oxformer_tokenizer::{EncodeInput, EncodeOptions, Padding, Tokenizer, TokenizerError};
use serde_json::Value;

fn folder(name: &str) -> PathBuf {
    common::fixtures_dir().join("tokenizers").join(name)
}

fn reference(name: &str) -> Value {
    let path = common::fixtures_dir()
        .join("tokenizers/reference")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap() as u32)
        .collect()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap()
}

/// Collects every mismatch of a folder, so that one run shows them all.
#[derive(Default)]
struct Mismatches(Vec<String>);

impl Mismatches {
    fn check<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, ours: T, theirs: T) {
        if ours != theirs {
            self.0
                .push(format!("{what}:\n   ours   {ours:?}\n   theirs {theirs:?}"));
        }
    }

    fn assert_none(self, name: &str) {
        assert!(
            self.0.is_empty(),
            "{name}: {} mismatches with transformers:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

/// Vocabulary sizes and special tokens.
fn check_info(tokenizer: &Tokenizer, reference: &Value, mismatches: &mut Mismatches) {
    let info = &reference["info"];
    mismatches.check(
        "vocab_size",
        tokenizer.vocab_size() as u64,
        info["vocab_size"].as_u64().unwrap(),
    );
    mismatches.check("len", tokenizer.len() as u64, info["len"].as_u64().unwrap());
    mismatches.check(
        "all_special_ids",
        tokenizer.all_special_ids(),
        ids(&info["all_special_ids"]),
    );
    for (key, token_and_id) in info["special_tokens"].as_object().unwrap() {
        let (ours_token, ours_id) = match key.as_str() {
            "bos_token" => (tokenizer.bos_token(), tokenizer.bos_token_id()),
            "eos_token" => (tokenizer.eos_token(), tokenizer.eos_token_id()),
            "unk_token" => (tokenizer.unk_token(), tokenizer.unk_token_id()),
            "sep_token" => (tokenizer.sep_token(), tokenizer.sep_token_id()),
            "pad_token" => (tokenizer.pad_token(), tokenizer.pad_token_id()),
            "cls_token" => (tokenizer.cls_token(), tokenizer.cls_token_id()),
            "mask_token" => (tokenizer.mask_token(), tokenizer.mask_token_id()),
            other => panic!("unexpected special token {other}"),
        };
        mismatches.check(
            key,
            (ours_token, ours_id),
            (
                token_and_id[0].as_str(),
                token_and_id[1].as_u64().map(|id| id as u32),
            ),
        );
    }
    mismatches.check(
        "additional_special_tokens",
        tokenizer.special_tokens().additional.clone(),
        info["additional_special_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|token| text(token).to_string())
            .collect(),
    );
}

/// Every encode, pair, batch and decode case of a reference file.
fn check_folder(name: &str) {
    let tokenizer = Tokenizer::from_folder(folder(name))
        .unwrap_or_else(|error| panic!("{name} does not load: {error}"));
    let reference = reference(name);
    let mut mismatches = Mismatches::default();
    check_info(&tokenizer, &reference, &mut mismatches);
    let options = EncodeOptions::default();

    let texts = reference["texts"].as_array().unwrap();
    for (input, row) in texts.iter().zip(reference["encode"].as_array().unwrap()) {
        let input = text(input);
        let encoding = tokenizer.encode(input, &options).unwrap();
        mismatches.check(
            &format!("ids of {input:?}"),
            encoding.ids().to_vec(),
            ids(&row["ids"]),
        );
        mismatches.check(
            &format!("tokens of {input:?}"),
            tokenizer
                .convert_ids_to_tokens(encoding.ids(), false)
                .unwrap(),
            row["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|token| text(token).to_string())
                .collect(),
        );
        if let Some(offsets) = row.get("offsets") {
            let ours: Vec<u32> = encoding
                .offsets()
                .iter()
                .flat_map(|&(start, end)| [start as u32, end as u32])
                .collect();
            mismatches.check(&format!("offsets of {input:?}"), ours, ids(offsets));
        }
        let reference_ids = ids(&row["ids"]);
        mismatches.check(
            &format!("decode of {input:?}"),
            tokenizer.decode(&reference_ids, false, None).unwrap(),
            text(&row["decode_keep"]).to_string(),
        );
        mismatches.check(
            &format!("decode (skip special) of {input:?}"),
            tokenizer.decode(&reference_ids, true, None).unwrap(),
            text(&row["decode_skip"]).to_string(),
        );
    }

    let pairs = reference["pairs"].as_array().unwrap();
    for (pair, row) in pairs
        .iter()
        .zip(reference["pair_encode"].as_array().unwrap())
    {
        let (first, second) = (text(&pair[0]), text(&pair[1]));
        let encoding = tokenizer.encode((first, second), &options).unwrap();
        mismatches.check(
            &format!("ids of pair {first:?} / {second:?}"),
            encoding.ids().to_vec(),
            ids(&row["ids"]),
        );
        mismatches.check(
            &format!("decode of pair {first:?} / {second:?}"),
            tokenizer.decode(&ids(&row["ids"]), false, None).unwrap(),
            text(&row["decode_keep"]).to_string(),
        );
    }

    let batch = &reference["batch"];
    let inputs: Vec<EncodeInput<'_>> = batch["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|index| EncodeInput::Single(text(&texts[index.as_u64().unwrap() as usize])))
        .collect();
    let padded = EncodeOptions {
        padding: Padding::Longest,
        ..EncodeOptions::default()
    };
    let encodings = tokenizer.encode_batch(&inputs, &padded).unwrap();
    let batch_ids: Vec<Vec<u32>> = encodings.iter().map(|e| e.ids().to_vec()).collect();
    mismatches.check(
        "batch ids",
        batch_ids.clone(),
        batch["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(ids)
            .collect(),
    );
    mismatches.check(
        "batch attention mask",
        encodings
            .iter()
            .map(|e| e.attention_mask().to_vec())
            .collect::<Vec<_>>(),
        batch["attention_mask"]
            .as_array()
            .unwrap()
            .iter()
            .map(ids)
            .collect(),
    );
    for (key, skip) in [("batch_decode_skip", true), ("batch_decode_keep", false)] {
        mismatches.check(
            key,
            tokenizer.batch_decode(&batch_ids, skip, None).unwrap(),
            batch[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| text(t).to_string())
                .collect(),
        );
    }

    // generated-looking id sequences: any id, special ones in the middle
    for row in reference["decode"].as_array().unwrap() {
        let sequence = ids(&row["ids"]);
        for (key, skip, clean) in [
            ("keep", false, None),
            ("skip", true, None),
            ("skip_clean", true, Some(true)),
        ] {
            mismatches.check(
                &format!("decode {key} of {sequence:?}"),
                tokenizer.decode(&sequence, skip, clean).unwrap(),
                text(&row[key]).to_string(),
            );
        }
    }

    // Marian: labels (`text_target`) encoded by transformers with the target model, decoded here
    if let Some(rows) = reference.get("target_encode") {
        for row in rows.as_array().unwrap() {
            let sequence = ids(&row["ids"]);
            mismatches.check(
                &format!("decode of target {sequence:?}"),
                tokenizer.decode(&sequence, false, None).unwrap(),
                text(&row["decode_keep"]).to_string(),
            );
            mismatches.check(
                &format!("decode (skip special) of target {sequence:?}"),
                tokenizer.decode(&sequence, true, None).unwrap(),
                text(&row["decode_skip"]).to_string(),
            );
        }
    }
    mismatches.assert_none(name);
}

#[test]
fn t5_spiece_model_matches_transformers() {
    check_folder("spm-t5");
}

#[test]
fn t5_with_bpe_spiece_model_matches_transformers() {
    check_folder("spm-bpe");
}

#[test]
fn xlm_roberta_sentencepiece_bpe_model_matches_transformers() {
    check_folder("spm-xlmr");
}

#[test]
fn marian_source_target_vocab_matches_transformers() {
    check_folder("spm-marian");
}

// ---- bad files ----

/// A copy of a fixture folder, for the test to damage.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(folder(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn assert_invalid_file(error: TokenizerError, file: &str, words: &str) {
    let message = error.to_string();
    match &error {
        TokenizerError::InvalidTokenizerFile { path, .. } => {
            assert!(path.ends_with(file), "{message}");
        }
        other => panic!("expected InvalidTokenizerFile naming {file}, got {other:?}"),
    }
    assert!(message.contains(file), "{message}");
    assert!(message.contains(words), "{message}");
}

#[test]
fn a_file_that_is_not_a_model_proto_is_an_error_naming_it() {
    let dir = copy_of("spm-t5");
    let json = std::fs::read(dir.path().join("tokenizer_config.json")).unwrap();
    std::fs::write(dir.path().join("spiece.model"), json).unwrap();
    let error = Tokenizer::from_folder(dir.path()).unwrap_err();
    assert_invalid_file(error, "spiece.model", "ModelProto");
}

#[test]
fn a_truncated_model_is_an_error_naming_it() {
    let dir = copy_of("spm-xlmr");
    let path = dir.path().join("sentencepiece.bpe.model");
    let bytes = std::fs::read(&path).unwrap();
    for cut in [7, bytes.len() / 3, bytes.len() - 5] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let error = Tokenizer::from_folder(dir.path()).unwrap_err();
        assert_invalid_file(error, "sentencepiece.bpe.model", "ModelProto");
    }
}

#[test]
fn a_damaged_marian_target_model_is_an_error_naming_it() {
    let dir = copy_of("spm-marian");
    let path = dir.path().join("target.spm");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let error = Tokenizer::from_folder(dir.path()).unwrap_err();
    assert_invalid_file(error, "target.spm", "ModelProto");
}

#[test]
fn a_marian_folder_without_its_target_model_or_vocabulary_says_what_it_lacks() {
    for missing in ["target.spm", "vocab.json"] {
        let dir = copy_of("spm-marian");
        std::fs::remove_file(dir.path().join(missing)).unwrap();
        match Tokenizer::from_folder(dir.path()).unwrap_err() {
            TokenizerError::MissingTokenizerFile { file, .. } => assert_eq!(file, missing),
            other => panic!("expected MissingTokenizerFile {missing}, got {other:?}"),
        }
    }
}

#[test]
fn a_t5_configuration_with_only_an_xlmr_model_file_says_what_it_lacks() {
    let dir = copy_of("spm-t5");
    std::fs::rename(
        dir.path().join("spiece.model"),
        dir.path().join("sentencepiece.bpe.model"),
    )
    .unwrap();
    match Tokenizer::from_folder(dir.path()).unwrap_err() {
        TokenizerError::MissingTokenizerFile { file, .. } => assert_eq!(file, "spiece.model"),
        other => panic!("expected MissingTokenizerFile spiece.model, got {other:?}"),
    }
}
