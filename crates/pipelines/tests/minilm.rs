//! The real all-MiniLM-L6-v2 (fetched by `cargo xtask fetch`) through the sentence-embeddings
//! pipeline: sentence embeddings within 1e-5 of sentence-transformers' `encode()`
//! (`fixtures/minilm/`), and the model card's similarities and ranking through
//! sentence-similarity.

mod common;

use std::path::PathBuf;

use common::{compare, fixtures};
use oxformer_pipelines::sentence_embeddings::{
    SentenceEmbeddingsOptions, SentenceEmbeddingsPipeline,
};
use serde_json::Value;

/// The bar for the real model: within 1e-5 of `encode()`.
const TOLERANCE: f64 = 1e-5;

/// `$OXFORMER_CACHE`, or `<workspace>/.cache`.
fn cache() -> PathBuf {
    match std::env::var_os("OXFORMER_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"),
    }
}

#[test]
#[ignore = "needs `cargo xtask fetch`"]
fn minilm_sentence_embeddings_and_ranking_match_sentence_transformers() {
    let folder = cache().join("models/sentence-transformers/all-MiniLM-L6-v2");
    let pipeline = SentenceEmbeddingsPipeline::new(&folder.display().to_string()).unwrap();
    let options = SentenceEmbeddingsOptions::default();
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("minilm/reference.json")).unwrap(),
    )
    .unwrap();
    let as_strings = |key: &str| -> Vec<String> {
        reference[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|text| text.as_str().unwrap().to_string())
            .collect()
    };

    // Every sentence's embedding.
    let texts = as_strings("texts");
    let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ours = pipeline.run(&borrowed, &options).unwrap();
    let bytes = std::fs::read(fixtures().join("minilm/embeddings.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = tensors.tensor("sentence_embedding").unwrap();
    let width = view.shape()[1];
    let expected: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|bytes| f32::from_le_bytes(bytes.try_into().unwrap()))
        .collect();
    assert_eq!(ours.len(), texts.len());
    for (index, (row, expected)) in ours.iter().zip(expected.chunks(width)).enumerate() {
        compare(
            &serde_json::to_value(row).unwrap(),
            &serde_json::to_value(expected).unwrap(),
            TOLERANCE,
        )
        .unwrap_or_else(|error| panic!("sentence {index} ({:?}): {error}", texts[index]));
    }

    // The model card's similarities and ranking.
    let query = reference["similarity_query"].as_str().unwrap();
    let candidates = as_strings("similarity_candidates");
    let borrowed: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let similarities: Vec<f64> = pipeline
        .similarity(query, &borrowed, &options)
        .unwrap()
        .0
        .into_iter()
        .map(f64::from)
        .collect();
    compare(
        &serde_json::to_value(&similarities).unwrap(),
        &reference["similarities"],
        TOLERANCE,
    )
    .unwrap();
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| similarities[b].total_cmp(&similarities[a]));
    let ranking: Vec<String> = order
        .iter()
        .map(|&index| candidates[index].clone())
        .collect();
    assert_eq!(ranking, as_strings("ranking"));
}
