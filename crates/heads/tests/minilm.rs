//! The real all-MiniLM-L6-v2 (from `cargo xtask fetch`): sentence embeddings against
//! sentence-transformers (`fixtures/minilm/`, 1e-4) and the model card's similarity ordering.

mod common;

use std::path::PathBuf;

use common::{Inputs, Reference, assert_all_close, fixtures};
use oxformer_heads::SentenceTransformer;

fn cache() -> PathBuf {
    std::env::var_os("OXFORMER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"))
}

#[test]
#[ignore = "needs `cargo xtask fetch`"]
fn all_minilm_l6_v2_embeddings_and_similarity_ranking() {
    let dir = cache().join("models/sentence-transformers/all-MiniLM-L6-v2");
    let mut model = SentenceTransformer::from_folder(&dir).unwrap();
    model.set_num_threads(2).unwrap();
    let reference =
        Reference::from_file(&fixtures().join("minilm/embeddings.safetensors"), "minilm");
    let inputs = Inputs::of(&reference);
    let output = model.forward(&inputs.view()).unwrap();
    let embeddings = output.sentence_embedding;
    assert_all_close(
        vec![(
            "all-MiniLM-L6-v2 sentence_embedding".into(),
            embeddings.clone().into_dyn(),
            reference.floats("sentence_embedding"),
        )],
        1e-4,
    );

    let card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("minilm/reference.json")).unwrap(),
    )
    .unwrap();
    let texts: Vec<&str> = card["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap())
        .collect();
    let index_of = |text: &str| texts.iter().position(|t| *t == text).unwrap();
    let cosine = |a: usize, b: usize| {
        let (a, b) = (embeddings.row(a), embeddings.row(b));
        a.dot(&b) / (a.dot(&a).sqrt() * b.dot(&b).sqrt())
    };
    let query = index_of(card["similarity_query"].as_str().unwrap());
    let candidates: Vec<&str> = card["similarity_candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap())
        .collect();
    let mut scored = Vec::new();
    for (candidate, expected) in candidates
        .iter()
        .zip(card["similarities"].as_array().unwrap())
    {
        let ours = cosine(query, index_of(candidate));
        let expected = expected.as_f64().unwrap() as f32;
        assert!(
            (ours - expected).abs() < 1e-4,
            "{candidate}: {ours} vs {expected}"
        );
        scored.push((ours, *candidate));
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let ranking: Vec<&str> = scored.iter().map(|(_, text)| *text).collect();
    let expected_ranking: Vec<&str> = card["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap())
        .collect();
    assert_eq!(ranking, expected_ranking);

    let matrix = card["similarity_matrix"].as_array().unwrap();
    for (i, row) in matrix.iter().enumerate() {
        for (j, expected) in row.as_array().unwrap().iter().enumerate() {
            let expected = expected.as_f64().unwrap() as f32;
            assert!(
                (cosine(i, j) - expected).abs() < 1e-4,
                "similarity [{i}][{j}]"
            );
        }
    }
}
