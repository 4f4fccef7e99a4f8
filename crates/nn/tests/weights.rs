//! Loading tensors (f32 in place, f16/bf16 converted), sharded folders and prefix-scoped lookup.

mod common;

use common::{f32_bytes, message, ramp, write_f32_file, write_raw, write_safetensors};
use half::{bf16, f16};
use oxformer_nn::{Error, SafeTensors, Weights};
use safetensors::Dtype;

#[test]
fn f32_is_read_in_place_when_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let values = ramp(12, 0.5);
    let path = dir.path().join("model.safetensors");
    write_safetensors(&path, &[("w", Dtype::F32, vec![3, 4], f32_bytes(&values))]);
    let tensor = SafeTensors::open_file(&path).unwrap().tensor("w").unwrap();
    assert!(
        tensor.is_mapped(),
        "the serializer aligns data; f32 should be zero-copy"
    );
    assert_eq!(tensor.shape(), [3, 4]);
    assert_eq!(tensor.as_slice(), values);
    let view = tensor.view2().unwrap();
    assert_eq!(view[[2, 1]], values[2 * 4 + 1]);
    assert!(tensor.view1().is_err());
}

#[test]
fn unaligned_f32_is_copied_with_the_same_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.safetensors");
    let values = ramp(5, -1.0);
    // A 41-byte header puts the data at byte 49, which is not 4-byte aligned.
    let header = r#"{"w":{"dtype":"F32","shape":[5],"data_offsets":[0,20]}}"#;
    let header = format!("{header:<41}");
    write_raw(&path, &header, &f32_bytes(&values));
    let tensor = SafeTensors::open_file(&path).unwrap().tensor("w").unwrap();
    assert!(!tensor.is_mapped());
    assert_eq!(tensor.as_slice(), values);
}

#[test]
fn f16_bf16_and_f64_are_converted_as_half_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.safetensors");
    let values = ramp(37, 0.3);
    let as_f16: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
    let as_bf16: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
    let f16_bytes: Vec<u8> = as_f16.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bf16_bytes: Vec<u8> = as_bf16.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f64_bytes: Vec<u8> = values
        .iter()
        .flat_map(|&v| f64::from(v).to_le_bytes())
        .collect();
    write_safetensors(
        &path,
        &[
            ("h", Dtype::F16, vec![37], f16_bytes),
            ("b", Dtype::BF16, vec![37], bf16_bytes),
            ("d", Dtype::F64, vec![37], f64_bytes),
        ],
    );
    let tensors = SafeTensors::open_file(&path).unwrap();
    let expected_f16: Vec<f32> = as_f16.iter().map(|v| v.to_f32()).collect();
    let expected_bf16: Vec<f32> = as_bf16.iter().map(|v| v.to_f32()).collect();
    assert_eq!(tensors.tensor("h").unwrap().as_slice(), expected_f16);
    assert_eq!(tensors.tensor("b").unwrap().as_slice(), expected_bf16);
    assert_eq!(tensors.tensor("d").unwrap().as_slice(), values);
    assert_eq!(tensors.dtype("h"), Some(Dtype::F16));
}

#[test]
fn unaligned_f16_is_converted_value_by_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd16.safetensors");
    let values = [
        f16::from_f32(1.5),
        f16::from_f32(-0.125),
        f16::from_f32(65504.0),
    ];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = r#"{"w":{"dtype":"F16","shape":[3],"data_offsets":[0,6]}}"#;
    write_raw(&path, &format!("{header:<57}"), &bytes); // data at odd byte 65
    let tensor = SafeTensors::open_file(&path).unwrap().tensor("w").unwrap();
    let expected: Vec<f32> = values.iter().map(|v| v.to_f32()).collect();
    assert_eq!(tensor.as_slice(), expected);
}

#[test]
fn folder_with_only_pickle_explains_conversion() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"PK").unwrap();
    let error = SafeTensors::open_folder(dir.path()).unwrap_err();
    assert!(matches!(error, Error::PickleOnly { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("pytorch_model.bin") && text.contains("safe_serialization=True"));
}

#[test]
fn folder_without_weights() {
    let dir = tempfile::tempdir().unwrap();
    let text = message(SafeTensors::open_folder(dir.path()));
    assert!(text.contains("model.safetensors.index.json"), "{text}");
    let text = message(SafeTensors::open_folder(&dir.path().join("nowhere")));
    assert!(text.contains("nowhere"), "{text}");
}

/// Two shards and their index, as `save_pretrained` writes them.
fn sharded_folder(index: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_f32_file(
        dir.path(),
        "model-00001-of-00002.safetensors",
        &[("a.weight", vec![2, 2])],
    );
    write_f32_file(
        dir.path(),
        "model-00002-of-00002.safetensors",
        &[("b.weight", vec![3])],
    );
    std::fs::write(dir.path().join("model.safetensors.index.json"), index).unwrap();
    dir
}

const GOOD_INDEX: &str = r#"{"metadata": {"total_size": 28}, "weight_map": {
    "a.weight": "model-00001-of-00002.safetensors",
    "b.weight": "model-00002-of-00002.safetensors"}}"#;

#[test]
fn sharded_folder_opens_every_shard() {
    let dir = sharded_folder(GOOD_INDEX);
    let tensors = SafeTensors::open_folder(dir.path()).unwrap();
    assert_eq!(
        tensors.names().collect::<Vec<_>>(),
        ["a.weight", "b.weight"]
    );
    assert_eq!(tensors.tensor("a.weight").unwrap().as_slice(), ramp(4, 0.0));
    assert_eq!(tensors.tensor("b.weight").unwrap().as_slice(), ramp(3, 0.0));
    assert!(
        tensors
            .file_of("b.weight")
            .unwrap()
            .ends_with("model-00002-of-00002.safetensors")
    );
}

#[test]
fn shard_index_errors() {
    let wrong_shard =
        GOOD_INDEX.replace(r#""b.weight": "model-00002"#, r#""b.weight": "model-00001"#);
    let text = message(SafeTensors::open_folder(
        sharded_folder(&wrong_shard).path(),
    ));
    assert!(text.contains("`b.weight` in model-00001"), "{text}");
    assert!(
        text.contains("no shard named by the index holds it"),
        "{text}"
    );

    let listed_missing = GOOD_INDEX.replace(
        "\"a.weight\"",
        "\"c.weight\": \"model-00001-of-00002.safetensors\", \"a.weight\"",
    );
    let text = message(SafeTensors::open_folder(
        sharded_folder(&listed_missing).path(),
    ));
    assert!(
        text.contains("`c.weight`") && text.contains("no shard named by the index holds it"),
        "{text}"
    );

    let absent_file = GOOD_INDEX.replace("model-00002-of-00002", "model-00003-of-00003");
    let text = message(SafeTensors::open_folder(
        sharded_folder(&absent_file).path(),
    ));
    assert!(text.contains("model-00003-of-00003.safetensors"), "{text}");

    let escaping = GOOD_INDEX.replace("model-00002-of-00002", "../model-00002-of-00002");
    let text = message(SafeTensors::open_folder(sharded_folder(&escaping).path()));
    assert!(text.contains("not a file inside the folder"), "{text}");

    let text = message(SafeTensors::open_folder(
        sharded_folder("{\"metadata\": {}}").path(),
    ));
    assert!(text.contains("no `weight_map`"), "{text}");
    let text = message(SafeTensors::open_folder(sharded_folder("{").path()));
    assert!(
        text.contains("model.safetensors.index.json") && text.contains("not JSON"),
        "{text}"
    );
}

#[test]
fn shard_index_duplicate_tensor() {
    let dir = sharded_folder(GOOD_INDEX);
    write_f32_file(
        dir.path(),
        "model-00002-of-00002.safetensors",
        &[("a.weight", vec![2, 2])],
    );
    let index = GOOD_INDEX.replace(
        r#""b.weight": "model-00002-of-00002.safetensors""#,
        r#""x": "model-00002-of-00002.safetensors""#,
    );
    std::fs::write(dir.path().join("model.safetensors.index.json"), index).unwrap();
    let text = message(SafeTensors::open_folder(dir.path()));
    assert!(text.contains("`a.weight` is stored in both"), "{text}");
}

/// A small BERT-like checkpoint under `bert.` with an old-style LayerNorm.
fn bert_like() -> (tempfile::TempDir, Weights) {
    let dir = tempfile::tempdir().unwrap();
    write_f32_file(
        dir.path(),
        "model.safetensors",
        &[
            ("bert.embeddings.word_embeddings.weight", vec![10, 4]),
            ("bert.embeddings.LayerNorm.gamma", vec![4]),
            ("bert.embeddings.LayerNorm.beta", vec![4]),
            (
                "bert.encoder.layer.3.attention.self.query.weight",
                vec![4, 4],
            ),
            ("bert.encoder.layer.3.attention.self.query.bias", vec![4]),
        ],
    );
    let weights = Weights::from_folder(dir.path()).unwrap();
    (dir, weights)
}

#[test]
fn prefix_scoped_lookup_uses_full_dotted_names() {
    let (_dir, weights) = bert_like();
    let bert = weights.sub_if_present("bert");
    assert_eq!(bert.prefix(), "bert");
    assert_eq!(weights.sub_if_present("roberta").prefix(), "");
    let query = bert
        .sub("encoder")
        .sub("layer")
        .sub(3)
        .sub("attention")
        .sub("self")
        .sub("query");
    assert_eq!(query.prefix(), "bert.encoder.layer.3.attention.self.query");
    let weight = query.get("weight", &[4, 4]).unwrap();
    assert_eq!(
        weight.name(),
        "bert.encoder.layer.3.attention.self.query.weight"
    );
    let direct = weights.checkpoint().tensor(weight.name()).unwrap();
    assert_eq!(weight.as_slice(), direct.as_slice());
    assert!(query.contains("bias") && !query.contains("nope"));
    assert_eq!(query.shape("bias"), Some(&[4][..]));
}

#[test]
fn missing_tensor_names_full_path_file_and_closest_names() {
    let (_dir, weights) = bert_like();
    // Prefix-less lookup in a `bert.`-prefixed checkpoint: suggest the prefixed name.
    let query = weights.sub("encoder.layer.3.attention.self.query");
    let error = query.get("weight", &[4, 4]).unwrap_err();
    assert!(matches!(error, Error::TensorNotFound { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("`encoder.layer.3.attention.self.query.weight` not found"),
        "{text}"
    );
    assert!(text.contains("model.safetensors"), "{text}");
    assert!(
        text.contains("bert.encoder.layer.3.attention.self.query.weight"),
        "{text}"
    );
    // A misspelling gets the nearest names.
    let text = message(
        weights
            .sub("bert.encoder.layer.3.attention.self.query")
            .get("wieght", &[4, 4]),
    );
    assert!(
        text.contains("closest names: bert.encoder.layer.3.attention.self.query.weight"),
        "{text}"
    );
}

#[test]
fn shape_mismatch_gives_expected_and_found() {
    let (_dir, weights) = bert_like();
    let error = weights
        .sub("bert.embeddings.word_embeddings")
        .get("weight", &[12, 4])
        .unwrap_err();
    assert!(matches!(error, Error::ShapeMismatch { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("`bert.embeddings.word_embeddings.weight`"),
        "{text}"
    );
    assert!(
        text.contains("expected shape [12, 4], found [10, 4]"),
        "{text}"
    );
    assert!(text.contains("model.safetensors"), "{text}");
}

#[test]
fn get_any_takes_the_first_existing_name() {
    let (_dir, weights) = bert_like();
    let norm = weights.sub("bert.embeddings.LayerNorm");
    let gamma = norm.get_any(&["weight", "gamma"], &[4]).unwrap();
    assert_eq!(gamma.name(), "bert.embeddings.LayerNorm.gamma");
    let text = message(norm.get_any(&["scale", "g"], &[4]));
    assert!(
        text.contains("`bert.embeddings.LayerNorm.scale` or `bert.embeddings.LayerNorm.g`"),
        "{text}"
    );
}

#[test]
fn alias_resolves_tied_weights() {
    let (_dir, mut weights) = bert_like();
    assert!(!weights.contains("cls.predictions.decoder.weight"));
    weights.alias(
        "cls.predictions.decoder.weight",
        "bert.embeddings.word_embeddings.weight",
    );
    let head = weights.sub("cls").sub("predictions").sub("decoder");
    let tied = head.get("weight", &[10, 4]).unwrap();
    let embeddings = weights
        .get("bert.embeddings.word_embeddings.weight", &[10, 4])
        .unwrap();
    assert_eq!(tied.as_slice(), embeddings.as_slice());
    assert!(weights.has_sub("cls"));
}
