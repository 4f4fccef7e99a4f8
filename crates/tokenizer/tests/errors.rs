//! Bad folders, bad configuration files and bad options are errors that name the file, the field
//! or the option; nothing panics.

mod common;

use std::path::PathBuf;

use oxformer_tokenizer::{EncodeOptions, Padding, Tokenizer, TokenizerError, Truncation};

fn fixture(name: &str) -> PathBuf {
    common::fixtures_dir().join("tokenizers").join(name)
}

/// A copy of a fixture folder with only the named files, for the test to change.
fn copy_of(name: &str, files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in files {
        std::fs::copy(fixture(name).join(file), dir.path().join(file)).unwrap();
    }
    dir
}

#[test]
fn folder_without_tokenizer_files_names_folder_and_files() {
    let dir = copy_of(
        "wordpiece-cased",
        &["tokenizer_config.json", "special_tokens_map.json"],
    );
    let error = Tokenizer::from_folder(dir.path()).unwrap_err();
    assert!(
        matches!(error, TokenizerError::NoTokenizerFiles { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    for file in ["tokenizer.json", "vocab.txt", "vocab.json", "merges.txt"] {
        assert!(message.contains(file), "{message}");
    }
}

#[test]
fn missing_folder_is_an_error() {
    let error = Tokenizer::from_folder("/nonexistent/oxformer/tokenizer").unwrap_err();
    assert!(
        matches!(error, TokenizerError::NoTokenizerFiles { .. }),
        "{error:?}"
    );
}

#[test]
fn vocab_json_without_merges_is_not_enough() {
    let dir = copy_of("bpe-gpt2", &["vocab.json", "tokenizer_config.json"]);
    let error = Tokenizer::from_folder(dir.path()).unwrap_err();
    assert!(
        matches!(error, TokenizerError::NoTokenizerFiles { .. }),
        "{error:?}"
    );
}

#[test]
fn corrupt_tokenizer_json_names_the_file() {
    let dir = copy_of("wordpiece-cased", &["tokenizer_config.json"]);
    std::fs::write(dir.path().join("tokenizer.json"), "{\"model\": 3").unwrap();
    let error = Tokenizer::from_folder(dir.path()).unwrap_err();
    assert!(
        matches!(error, TokenizerError::InvalidTokenizerFile { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("tokenizer.json"), "{error}");
}

#[test]
fn tokenizer_config_that_is_not_json_names_the_file() {
    let dir = copy_of("wordpiece-cased", &["tokenizer.json"]);
    std::fs::write(dir.path().join("tokenizer_config.json"), "{not json").unwrap();
    let error = Tokenizer::from_folder(dir.path()).unwrap_err();
    assert!(matches!(error, TokenizerError::Json { .. }), "{error:?}");
    assert!(
        error.to_string().contains("tokenizer_config.json"),
        "{error}"
    );
}

#[test]
fn wrongly_typed_config_field_names_the_field() {
    let dir = copy_of("wordpiece-cased", &["tokenizer.json"]);
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"model_max_length": "long", "tokenizer_class": "BertTokenizer"}"#,
    )
    .unwrap();
    let error = Tokenizer::from_folder(dir.path()).unwrap_err();
    assert!(
        matches!(error, TokenizerError::InvalidConfig { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("model_max_length"), "{error}");

    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"padding_side": "middle"}"#,
    )
    .unwrap();
    let error = Tokenizer::from_folder(dir.path()).unwrap_err();
    assert!(error.to_string().contains("padding_side"), "{error}");
}

#[test]
fn vocab_txt_without_the_cls_token_names_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vocab.txt"), "[UNK]\n[SEP]\nhello\n").unwrap();
    let error = Tokenizer::from_folder(dir.path()).unwrap_err();
    assert!(
        matches!(error, TokenizerError::InvalidConfig { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("cls_token"), "{error}");
    assert!(error.to_string().contains("[CLS]"), "{error}");
}

#[test]
fn padding_without_pad_token_is_an_error() {
    // the trained GPT-2 tokenizer has no pad token, as GPT-2
    let tokenizer = Tokenizer::from_folder(fixture("bpe-gpt2")).unwrap();
    let options = EncodeOptions {
        padding: Padding::Longest,
        ..EncodeOptions::default()
    };
    let error = tokenizer
        .encode_batch(&["a".into(), "b c".into()], &options)
        .unwrap_err();
    assert!(
        matches!(error, TokenizerError::InvalidOptions(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("pad token"), "{error}");
}

#[test]
fn max_length_below_the_special_tokens_is_an_error() {
    let tokenizer = Tokenizer::from_folder(fixture("wordpiece-cased")).unwrap();
    let options = EncodeOptions {
        truncation: Truncation::LongestFirst,
        max_length: Some(1),
        ..EncodeOptions::default()
    };
    let error = tokenizer.encode("Hello world", &options).unwrap_err();
    assert!(
        matches!(error, TokenizerError::InvalidOptions(_)),
        "{error:?}"
    );
}

#[test]
fn stride_too_large_for_a_pair_window_is_an_error_not_a_panic() {
    let tokenizer = Tokenizer::from_folder(fixture("wordpiece-cased")).unwrap();
    let options = EncodeOptions {
        truncation: Truncation::LongestFirst,
        max_length: Some(12),
        stride: 6,
        return_overflowing: true,
        ..EncodeOptions::default()
    };
    let long = "The quick brown fox jumps over the lazy dog again and again and again.";
    // longest_first gives each text 4.5 tokens of the 9 left by [CLS] A [SEP] B [SEP]: the
    // tokenizers library would panic on a stride of 6; this is caught before, as an error.
    let error = tokenizer.encode((long, long), &options).unwrap_err();
    assert!(
        matches!(error, TokenizerError::InvalidOptions(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("stride 6"), "{error}");
    // the same inputs with a stride that fits
    let options = EncodeOptions {
        stride: 3,
        ..options
    };
    let encoding = tokenizer.encode((long, long), &options).unwrap();
    assert!(!encoding.overflowing().is_empty());
    assert!(encoding.windows().all(|window| window.len() <= 12));
}

#[test]
fn unknown_id_in_convert_ids_to_tokens_is_an_error() {
    let tokenizer = Tokenizer::from_folder(fixture("wordpiece-cased")).unwrap();
    let error = tokenizer
        .convert_ids_to_tokens(&[2, 1_000_000], false)
        .unwrap_err();
    assert!(
        matches!(error, TokenizerError::UnknownTokenId { id: 1_000_000, .. }),
        "{error:?}"
    );
}

#[test]
fn padding_beyond_any_model_is_an_error_not_an_allocation() {
    // found by the fuzzer: max_length 2^40 with padding to it allocated 2^42 bytes
    let tokenizer = Tokenizer::from_folder(fixture("wordpiece-cased")).unwrap();
    for (max_length, multiple) in [(Some(1usize << 40), None), (None, Some(1usize << 40))] {
        let options = EncodeOptions {
            padding: if max_length.is_some() {
                Padding::MaxLength
            } else {
                Padding::Longest
            },
            max_length,
            pad_to_multiple_of: multiple,
            ..EncodeOptions::default()
        };
        let error = tokenizer.encode("Hello world", &options).unwrap_err();
        assert!(
            matches!(error, TokenizerError::InvalidOptions(_)),
            "{error:?}"
        );
        assert!(error.to_string().contains("1099511627776"), "{error}");
    }
    let options = EncodeOptions {
        padding: Padding::MaxLength,
        max_length: Some(oxformer_tokenizer::MAX_PADDED_LENGTH),
        truncation: Truncation::LongestFirst,
        ..EncodeOptions::default()
    };
    assert_eq!(
        tokenizer.encode("Hello world", &options).unwrap().len(),
        oxformer_tokenizer::MAX_PADDED_LENGTH
    );
}

#[test]
fn a_tokenizer_json_cut_inside_its_decoder_is_an_error_not_a_panic() {
    // found by the fuzzer: tokenizers 0.22.2 `expect`s the decoder's JSON (decoders/mod.rs)
    let dir = copy_of("wordpiece-cased", &["tokenizer_config.json"]);
    let text = std::fs::read_to_string(fixture("wordpiece-cased").join("tokenizer.json")).unwrap();
    let decoder = text.find("\"decoder\"").expect("the fixture has a decoder");
    let cut = decoder + text[decoder..].find('{').unwrap() + 3;
    std::fs::write(dir.path().join("tokenizer.json"), &text[..cut]).unwrap();
    let error = Tokenizer::from_folder(dir.path()).unwrap_err();
    assert!(
        matches!(error, TokenizerError::InvalidTokenizerFile { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("tokenizer.json"), "{error}");
}

#[test]
fn max_length_below_the_special_tokens_without_them_truncates() {
    // found by afl-fuzz: the tokenizers library subtracts the special tokens from max_length
    // unchecked when truncation is set, a panic under overflow checks (`cargo test`'s profile)
    let tokenizer = Tokenizer::from_folder(fixture("wordpiece-cased")).unwrap();
    let options = EncodeOptions {
        add_special_tokens: false,
        truncation: Truncation::LongestFirst,
        max_length: Some(1),
        ..EncodeOptions::default()
    };
    let encoding = tokenizer.encode("Hello world", &options).unwrap();
    let whole = tokenizer
        .encode(
            "Hello world",
            &EncodeOptions {
                add_special_tokens: false,
                ..EncodeOptions::default()
            },
        )
        .unwrap();
    assert_eq!(encoding.ids(), &whole.ids()[..1]);
}
