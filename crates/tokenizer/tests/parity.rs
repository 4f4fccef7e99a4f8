//! Parity with transformers' fast tokenizers: every case of `fixtures/tokenizers/reference/*.json`
//! (written by `xtask/python/fixtures_tokenizers.py` from transformers 4.57.6) must give identical
//! ids, token types, masks, character offsets, word and sequence ids, tokens, overflow windows and
//! their sample mapping, the same errors, and the same decoded text.

mod common;

use std::path::PathBuf;

use oxformer_tokenizer::{
    EncodeInput, EncodeOptions, Encoding, Padding, Side, Tokenizer, Truncation,
    overflow_to_sample_mapping,
};
use serde_json::Value;

struct Reference {
    name: String,
    json: Value,
    /// Keeps the folder of slow files alive while the tokenizer is tested.
    _copy: Option<tempfile::TempDir>,
    tokenizer: Tokenizer,
}

fn load(name: &str) -> Reference {
    let path = common::fixtures_dir().join(format!("tokenizers/reference/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).unwrap();
    let source = &json["source"];
    let root = match source["root"].as_str().unwrap() {
        "fixtures" => common::fixtures_dir(),
        "cache" => common::cache_dir(),
        other => panic!("unknown root {other}"),
    };
    let folder: PathBuf = root.join(source["folder"].as_str().unwrap());
    let (copy, folder) = match source["files"].as_array() {
        Some(files) => {
            let copy = tempfile::tempdir().unwrap();
            for file in files {
                let file = file.as_str().unwrap();
                std::fs::copy(folder.join(file), copy.path().join(file))
                    .unwrap_or_else(|e| panic!("{}: {e}", folder.join(file).display()));
            }
            if let Some(overrides) = source["config_overrides"].as_object() {
                let path = copy.path().join("tokenizer_config.json");
                let mut config: Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                for (key, value) in overrides {
                    config[key] = value.clone();
                }
                std::fs::write(&path, config.to_string()).unwrap();
            }
            let path = copy.path().to_path_buf();
            (Some(copy), path)
        }
        None => (None, folder),
    };
    let tokenizer = Tokenizer::from_folder(&folder)
        .unwrap_or_else(|e| panic!("{name}: loading {}: {e}", folder.display()));
    Reference {
        name: name.to_string(),
        json,
        _copy: copy,
        tokenizer,
    }
}

fn options_from(json: &Value) -> EncodeOptions {
    let mut options = EncodeOptions::default();
    let map = json.as_object().unwrap();
    for (key, value) in map {
        match key.as_str() {
            "add_special_tokens" => options.add_special_tokens = value.as_bool().unwrap(),
            "truncation" => {
                options.truncation = match value {
                    Value::Bool(true) => Truncation::LongestFirst,
                    Value::Bool(false) => Truncation::None,
                    Value::String(s) if s == "longest_first" => Truncation::LongestFirst,
                    Value::String(s) if s == "only_first" => Truncation::OnlyFirst,
                    Value::String(s) if s == "only_second" => Truncation::OnlySecond,
                    other => panic!("truncation {other}"),
                }
            }
            "max_length" => options.max_length = Some(value.as_u64().unwrap() as usize),
            "stride" => options.stride = value.as_u64().unwrap() as usize,
            "return_overflowing_tokens" => options.return_overflowing = value.as_bool().unwrap(),
            "padding" => {
                options.padding = match value {
                    Value::Bool(true) => Padding::Longest,
                    Value::Bool(false) => Padding::None,
                    Value::String(s) if s == "longest" => Padding::Longest,
                    Value::String(s) if s == "max_length" => Padding::MaxLength,
                    other => panic!("padding {other}"),
                }
            }
            "pad_to_multiple_of" => {
                options.pad_to_multiple_of = Some(value.as_u64().unwrap() as usize)
            }
            "padding_side" => {
                options.padding_side = Some(match value.as_str().unwrap() {
                    "left" => Side::Left,
                    "right" => Side::Right,
                    other => panic!("side {other}"),
                })
            }
            "truncation_side" => {
                options.truncation_side = Some(match value.as_str().unwrap() {
                    "left" => Side::Left,
                    "right" => Side::Right,
                    other => panic!("side {other}"),
                })
            }
            // handled by the caller: the tokenizer pads with its eos token
            "pad_token" => {}
            other => panic!("option {other} not handled by the test"),
        }
    }
    options
}

fn digits(values: &[u32]) -> String {
    values.iter().map(|value| value.to_string()).collect()
}

fn sequence_digits(values: &[Option<usize>]) -> String {
    values
        .iter()
        .map(|value| value.map_or("-".to_string(), |v| v.to_string()))
        .collect()
}

fn row_fields(encoding: &Encoding) -> Vec<(&'static str, Value)> {
    vec![
        ("input_ids", serde_json::to_value(encoding.ids()).unwrap()),
        ("token_type_ids", Value::String(digits(encoding.type_ids()))),
        (
            "attention_mask",
            Value::String(digits(encoding.attention_mask())),
        ),
        (
            "special_tokens_mask",
            Value::String(digits(encoding.special_tokens_mask())),
        ),
        (
            "offsets",
            serde_json::to_value(
                encoding
                    .offsets()
                    .iter()
                    .flat_map(|&(s, e)| [s, e])
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
        ),
        (
            "word_ids",
            serde_json::to_value(encoding.word_ids()).unwrap(),
        ),
        (
            "sequence_ids",
            Value::String(sequence_digits(encoding.sequence_ids())),
        ),
        ("tokens", serde_json::to_value(encoding.tokens()).unwrap()),
    ]
}

/// Byte offsets slice the same text as the character offsets.
fn check_byte_offsets(
    encoding: &Encoding,
    input: &EncodeInput<'_>,
    failures: &mut Vec<String>,
    what: &str,
) {
    for (token, ((&(start, end), &(byte_start, byte_end)), sequence)) in encoding
        .offsets()
        .iter()
        .zip(encoding.byte_offsets())
        .zip(encoding.sequence_ids())
        .enumerate()
    {
        let Some(sequence) = sequence else { continue };
        let text = if *sequence == 0 {
            input.first()
        } else {
            input.second().unwrap()
        };
        let by_chars: String = text
            .chars()
            .skip(start)
            .take(end.saturating_sub(start))
            .collect();
        let by_bytes = text.get(byte_start..byte_end);
        if by_bytes != Some(by_chars.as_str()) {
            failures.push(format!(
                "{what}: token {token}: chars {start}..{end} = {by_chars:?} but bytes \
                 {byte_start}..{byte_end} = {by_bytes:?}"
            ));
        }
    }
}

fn check(name: &str) {
    let reference = load(name);
    let tokenizer = &reference.tokenizer;
    let json = &reference.json;
    let mut failures: Vec<String> = Vec::new();
    let compare = |what: String, ours: Value, theirs: &Value, failures: &mut Vec<String>| {
        if &ours != theirs {
            failures.push(format!("{what}:\n   ours   {ours}\n   theirs {theirs}"));
        }
    };

    // what the tokenizer says about itself
    let info = &json["info"];
    compare(
        "vocab_size".into(),
        tokenizer.vocab_size().into(),
        &info["vocab_size"],
        &mut failures,
    );
    compare(
        "len".into(),
        tokenizer.len().into(),
        &info["len"],
        &mut failures,
    );
    compare(
        "model_max_length".into(),
        serde_json::to_value(tokenizer.model_max_length()).unwrap(),
        &info["model_max_length"],
        &mut failures,
    );
    let side = |side: Side| if side == Side::Left { "left" } else { "right" };
    compare(
        "padding_side".into(),
        side(tokenizer.padding_side()).into(),
        &info["padding_side"],
        &mut failures,
    );
    compare(
        "truncation_side".into(),
        side(tokenizer.truncation_side()).into(),
        &info["truncation_side"],
        &mut failures,
    );
    compare(
        "clean_up_tokenization_spaces".into(),
        tokenizer.clean_up_tokenization_spaces().into(),
        &info["clean_up_tokenization_spaces"],
        &mut failures,
    );
    compare(
        "model_input_names".into(),
        serde_json::to_value(tokenizer.model_input_names()).unwrap(),
        &info["model_input_names"],
        &mut failures,
    );
    compare(
        "num_special_tokens_to_add".into(),
        serde_json::to_value([
            tokenizer.num_special_tokens_to_add(false),
            tokenizer.num_special_tokens_to_add(true),
        ])
        .unwrap(),
        &info["num_special_tokens_to_add"],
        &mut failures,
    );
    compare(
        "all_special_ids".into(),
        serde_json::to_value(tokenizer.all_special_ids()).unwrap(),
        &info["all_special_ids"],
        &mut failures,
    );
    let special = &info["special_tokens"];
    let named: [(&str, Option<&str>, Option<u32>); 7] = [
        ("bos_token", tokenizer.bos_token(), tokenizer.bos_token_id()),
        ("eos_token", tokenizer.eos_token(), tokenizer.eos_token_id()),
        ("unk_token", tokenizer.unk_token(), tokenizer.unk_token_id()),
        ("sep_token", tokenizer.sep_token(), tokenizer.sep_token_id()),
        ("pad_token", tokenizer.pad_token(), tokenizer.pad_token_id()),
        ("cls_token", tokenizer.cls_token(), tokenizer.cls_token_id()),
        (
            "mask_token",
            tokenizer.mask_token(),
            tokenizer.mask_token_id(),
        ),
    ];
    for (key, token, id) in named {
        compare(
            key.into(),
            serde_json::to_value(token).unwrap(),
            &special[key],
            &mut failures,
        );
        compare(
            format!("{key}_id"),
            serde_json::to_value(id).unwrap(),
            &special[format!("{key}_id")],
            &mut failures,
        );
    }
    for (id, token) in info["added_tokens"].as_object().unwrap() {
        let id: u32 = id.parse().unwrap();
        compare(
            format!("added token {id}"),
            serde_json::to_value(tokenizer.id_to_token(id)).unwrap(),
            token,
            &mut failures,
        );
    }

    // every encode case
    let texts: Vec<String> = json["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let pairs: Vec<(String, String)> = json["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut default_ids: Vec<Vec<u32>> = Vec::new();
    let cases = json["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let case_name = case["name"].as_str().unwrap();
        let inputs: Vec<EncodeInput<'_>> = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|input| {
                let index = input[1].as_u64().unwrap() as usize;
                match input[0].as_str().unwrap() {
                    "t" => EncodeInput::Single(&texts[index]),
                    _ => EncodeInput::Pair(&pairs[index].0, &pairs[index].1),
                }
            })
            .collect();
        let options = options_from(&case["options"]);
        let padded_with_eos;
        let tokenizer = if case["options"].get("pad_token").is_some() {
            let mut with_pad = tokenizer.clone();
            with_pad
                .set_pad_token(tokenizer.eos_token().unwrap())
                .unwrap();
            padded_with_eos = with_pad;
            &padded_with_eos
        } else {
            tokenizer
        };
        let result: Result<Vec<Encoding>, _> = match case["call"].as_str().unwrap() {
            "batch" => tokenizer.encode_batch(&inputs, &options),
            _ => inputs
                .iter()
                .map(|input| tokenizer.encode(*input, &options))
                .collect(),
        };
        let encodings = match (result, case.get("error")) {
            (Err(_), Some(_)) => continue,
            (Err(error), None) => {
                failures.push(format!(
                    "{case_name}: error {error}, transformers gives rows"
                ));
                continue;
            }
            (Ok(_), Some(error)) => {
                failures.push(format!("{case_name}: rows, transformers raises {error}"));
                continue;
            }
            (Ok(encodings), None) => encodings,
        };
        let windows: Vec<(&Encoding, &EncodeInput<'_>)> = encodings
            .iter()
            .zip(&inputs)
            .flat_map(|(encoding, input)| encoding.windows().map(move |window| (window, input)))
            .collect();
        let rows = &case["rows"];
        let expected_rows = rows["input_ids"].as_array().unwrap().len();
        if windows.len() != expected_rows {
            failures.push(format!(
                "{case_name}: {} rows, transformers {expected_rows}",
                windows.len()
            ));
            continue;
        }
        for (row, (window, input)) in windows.iter().enumerate() {
            for (field, ours) in row_fields(window) {
                if let Some(theirs) = rows.get(field) {
                    compare(
                        format!("{case_name} row {row} {field}"),
                        ours,
                        &theirs[row],
                        &mut failures,
                    );
                }
            }
            check_byte_offsets(
                window,
                input,
                &mut failures,
                &format!("{case_name} row {row}"),
            );
        }
        if let Some(mapping) = case.get("overflow_to_sample_mapping") {
            compare(
                format!("{case_name} overflow_to_sample_mapping"),
                serde_json::to_value(overflow_to_sample_mapping(&encodings)).unwrap(),
                mapping,
                &mut failures,
            );
        }
        if case_name == "default" {
            default_ids = windows
                .iter()
                .map(|(window, _)| window.ids().to_vec())
                .collect();
        }
    }

    // decode and batch_decode
    let reference_ids: Vec<Vec<u32>> = cases
        .iter()
        .find(|case| case["name"] == "default")
        .map(|case| serde_json::from_value(case["rows"]["input_ids"].clone()).unwrap())
        .unwrap();
    assert_eq!(
        default_ids.len(),
        reference_ids.len(),
        "{name}: default rows"
    );
    for (index, (ids, decoded)) in reference_ids
        .iter()
        .zip(json["decode"].as_array().unwrap())
        .enumerate()
    {
        let variants = [
            ("keep", false, None),
            ("skip", true, None),
            ("skip_clean", true, Some(true)),
            ("keep_no_clean", false, Some(false)),
        ];
        for (key, skip, clean) in variants {
            let ours = tokenizer.decode(ids, skip, clean).unwrap();
            compare(
                format!("decode {index} {key}"),
                ours.into(),
                &decoded[key],
                &mut failures,
            );
        }
    }
    let batch = &json["batch_decode"];
    let sequences: Vec<Vec<u32>> = batch["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| reference_ids[row.as_u64().unwrap() as usize].clone())
        .collect();
    compare(
        "batch_decode skip".into(),
        serde_json::to_value(tokenizer.batch_decode(&sequences, true, None).unwrap()).unwrap(),
        &batch["skip"],
        &mut failures,
    );
    compare(
        "batch_decode keep".into(),
        serde_json::to_value(tokenizer.batch_decode(&sequences, false, None).unwrap()).unwrap(),
        &batch["keep"],
        &mut failures,
    );

    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(25).collect();
        panic!(
            "{}: {} differences from transformers (first {}):\n{}",
            reference.name,
            failures.len(),
            shown.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn wordpiece_cased() {
    check("wordpiece-cased");
}

#[test]
fn wordpiece_cased_from_vocab_txt() {
    check("wordpiece-cased-slow");
}

#[test]
fn unigram_xlmr() {
    check("unigram-xlmr");
}

#[test]
fn bpe_roberta() {
    check("bpe-roberta");
}

#[test]
fn bpe_roberta_from_vocab_json_and_merges() {
    check("bpe-roberta-slow");
}

#[test]
fn bpe_gpt2() {
    check("bpe-gpt2");
}

#[test]
fn bpe_gpt2_from_vocab_json_and_merges() {
    check("bpe-gpt2-slow");
}

#[test]
fn wordpiece_cased_with_config_lowercase_strip_accents() {
    check("wordpiece-cased-lowercase-strip-accents");
}

#[test]
fn wordpiece_cased_from_vocab_txt_with_config_lowercase() {
    check("wordpiece-cased-lowercase-slow");
}

#[test]
fn bpe_roberta_with_config_add_prefix_space() {
    check("bpe-roberta-add-prefix-space");
}

#[test]
fn bpe_roberta_from_vocab_json_and_merges_with_config_add_prefix_space() {
    check("bpe-roberta-add-prefix-space-slow");
}

#[test]
fn bpe_gpt2_with_config_add_prefix_space() {
    check("bpe-gpt2-add-prefix-space");
}

#[test]
fn bpe_gpt2_from_vocab_json_and_merges_with_add_bos_token() {
    check("bpe-gpt2-bos-prefix-space-slow");
}

#[test]
#[ignore = "needs `cargo xtask fetch`"]
fn minilm_bert_base_uncased() {
    check("minilm");
}

#[test]
#[ignore = "needs `cargo xtask fetch`"]
fn minilm_bert_base_uncased_from_vocab_txt() {
    check("minilm-slow");
}

#[test]
#[ignore = "needs `cargo xtask fetch`"]
fn gpt2_real_vocab_json_and_merges() {
    check("gpt2");
}
