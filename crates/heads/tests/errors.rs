//! Bad folders and bad inputs are errors that say what is wrong, never panics.

mod common;

use std::fs;
use std::path::Path;

use common::model_dir;
use ndarray::Array2;
use oxformer_heads::{EncoderInput, EncoderModel, Error, HeadKind, SentenceTransformer};

/// A copy of a fixture folder (its module subfolders too), to corrupt.
fn copy_of(name: &str) -> tempfile::TempDir {
    fn copy_tree(from: &Path, to: &Path) {
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                fs::create_dir(&target).unwrap();
                copy_tree(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&model_dir(name), dir.path());
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

#[test]
fn unknown_architecture_lists_the_supported_ones() {
    let dir = copy_of("bert-seqcls-single");
    edit_config(dir.path(), |config| {
        config["architectures"] = serde_json::json!(["BertForMultipleChoice"]);
    });
    let error = EncoderModel::from_folder(dir.path()).unwrap_err();
    assert!(
        matches!(error, Error::UnknownArchitecture { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("BertForMultipleChoice"), "{message}");
    assert!(message.contains("BertForTokenClassification"), "{message}");
    assert!(message.contains("config.json"), "{message}");
    // An architecture of another family is unknown for this model type.
    edit_config(dir.path(), |config| {
        config["architectures"] = serde_json::json!(["RobertaForMaskedLM"]);
    });
    assert!(matches!(
        EncoderModel::from_folder(dir.path()),
        Err(Error::UnknownArchitecture { .. })
    ));
}

#[test]
fn gpt2_has_no_encoder_head() {
    let error = EncoderModel::from_folder_as(&model_dir("gpt2"), HeadKind::Base).unwrap_err();
    assert!(matches!(error, Error::UnsupportedHead { .. }), "{error:?}");
    let error = EncoderModel::from_folder(&model_dir("gpt2")).unwrap_err();
    assert!(matches!(error, Error::UnsupportedHead { .. }), "{error:?}");
    assert!(error.to_string().contains("gpt2"), "{error}");
}

#[test]
fn a_missing_head_tensor_is_named_with_its_full_path() {
    // A body-only checkpoint asked for a token classifier.
    let error = EncoderModel::from_folder_as(&model_dir("bert"), HeadKind::TokenClassification)
        .unwrap_err();
    assert!(error.to_string().contains("`classifier.weight`"), "{error}");
    // A RoBERTa base checkpoint asked for a masked-LM head.
    let error =
        EncoderModel::from_folder_as(&model_dir("roberta"), HeadKind::MaskedLm).unwrap_err();
    assert!(
        error.to_string().contains("lm_head.dense.weight"),
        "{error}"
    );
}

#[test]
fn a_head_of_the_wrong_shape_gives_expected_and_found() {
    let dir = copy_of("bert-seqcls-single");
    // Three labels in the config, two rows in the classifier.
    edit_config(dir.path(), |config| {
        config["id2label"] = serde_json::json!({"0": "a", "1": "b", "2": "c"});
        config["label2id"] = serde_json::json!({"a": 0, "b": 1, "c": 2});
    });
    let message = EncoderModel::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("classifier.weight"), "{message}");
    assert!(
        message.contains("[3, 32]") && message.contains("[2, 32]"),
        "{message}"
    );
}

#[test]
fn pickle_only_folder_explains_how_to_convert() {
    let dir = copy_of("bert");
    fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    fs::write(dir.path().join("pytorch_model.bin"), b"not loaded").unwrap();
    let message = EncoderModel::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("pytorch_model.bin") && message.contains("safetensors"),
        "{message}"
    );
}

#[test]
fn ids_beyond_the_vocabulary_and_over_long_sequences_are_errors() {
    let model = EncoderModel::from_folder(&model_dir("distilbert-seqcls")).unwrap();
    let ones = Array2::<u32>::ones((1, 4));
    let ids = Array2::<u32>::from_elem((1, 4), 1500);
    let message = model
        .forward(&EncoderInput::new(ids.view(), ones.view()))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("word_embeddings") && message.contains("1500"),
        "{message}"
    );

    let long_ids = Array2::<u32>::from_elem((1, 129), 5);
    let long_mask = Array2::<u32>::ones((1, 129));
    let message = model
        .forward(&EncoderInput::new(long_ids.view(), long_mask.view()))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("129") && message.contains("128"),
        "{message}"
    );

    let empty = Array2::<u32>::zeros((1, 0));
    assert!(
        model
            .forward(&EncoderInput::new(empty.view(), empty.view()))
            .is_err()
    );
}

#[test]
fn malformed_sentence_transformers_folders() {
    let dir = copy_of("st-mean");
    fs::write(
        dir.path().join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 32}"#,
    )
    .unwrap();
    let message = SentenceTransformer::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("no pooling mode"), "{message}");

    // A Dense module before any Pooling.
    fs::write(
        dir.path().join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#,
    )
    .unwrap();
    let message = SentenceTransformer::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("Dense"), "{message}");

    fs::write(
        dir.path().join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "x", "type": "sentence_transformers.models.LSTM"}]"#,
    )
    .unwrap();
    let message = SentenceTransformer::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("LSTM"), "{message}");

    fs::write(dir.path().join("modules.json"), "[{").unwrap();
    let message = SentenceTransformer::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("modules.json"), "{message}");

    fs::remove_file(dir.path().join("modules.json")).unwrap();
    let message = SentenceTransformer::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("modules.json") && message.contains("not a sentence-transformers folder"),
        "{message}"
    );
}

#[test]
fn malformed_dense_modules_name_the_file() {
    let dir = copy_of("st-dense-prompts");
    edit_config(&dir.path().join("2_Dense"), |config| {
        config["activation_function"] = "torch.nn.modules.activation.Softsign".into();
    });
    let message = SentenceTransformer::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("2_Dense/config.json") && message.contains("Softsign"),
        "{message}"
    );

    let dir = copy_of("st-dense-prompts");
    edit_config(&dir.path().join("3_Dense"), |config| {
        config["in_features"] = 23.into();
    });
    let message = SentenceTransformer::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("linear.weight"), "{message}");

    let dir = copy_of("st-dense-prompts");
    fs::remove_file(dir.path().join("2_Dense/model.safetensors")).unwrap();
    let message = SentenceTransformer::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("2_Dense"), "{message}");

    let dir = copy_of("st-dense-prompts");
    fs::write(
        dir.path().join("config_sentence_transformers.json"),
        r#"{"prompts": {"query": "query: "}, "default_prompt_name": "doc"}"#,
    )
    .unwrap();
    let message = SentenceTransformer::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("default_prompt_name `doc`"), "{message}");
}

#[test]
fn untied_masked_lm_without_a_decoder_names_the_missing_tensor() {
    let dir = copy_of("bert-mlm");
    edit_config(dir.path(), |config| {
        config["tie_word_embeddings"] = serde_json::json!(false);
    });
    // The checkpoint stores no decoder weight (transformers ties it to the word embeddings).
    let message = EncoderModel::from_folder(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("cls.predictions.decoder.weight"),
        "{message}"
    );
}

#[test]
fn max_sequence_length_accounts_for_roberta_position_offset() {
    // The reference tokenizers' `model_max_length` is the longest input transformers runs.
    for name in ["bert-qa", "roberta-qa", "xlmr-qa", "distilbert-qa"] {
        let tokenizer_config: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(model_dir(name).join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        let model_max_length = tokenizer_config["model_max_length"].as_u64().unwrap() as usize;
        let model = EncoderModel::from_folder(&model_dir(name)).unwrap();
        assert_eq!(model.max_sequence_length(), model_max_length, "{name}");
    }
}
