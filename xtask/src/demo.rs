//! `cargo xtask demo`: fetches the pinned real all-MiniLM-L6-v2 (as `cargo xtask fetch`) and
//! runs it end to end through oxformer's sentence-similarity pipeline (sentence embeddings as
//! `SentenceTransformer.encode` gives them, then their cosines): which sentences are closest to
//! a query, beside sentence-transformers' own scores for the model card's example
//! (`fixtures/minilm/reference.json`).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use oxformer_pipelines::sentence_embeddings::{
    SentenceEmbeddingsOptions, SentenceEmbeddingsPipeline,
};
use serde_json::Value;

use crate::paths::{cache_dir, workspace_root};

const MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// A second query over a few sentences: semantic search as in sentence-transformers' examples.
const SEARCH_QUERY: &str = "A man is eating pasta.";
const SEARCH_CORPUS: [&str; 6] = [
    "A man is eating food.",
    "A man is riding a horse.",
    "The girl is carrying a baby.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A cheetah is running behind its prey.",
];

pub fn run(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("usage: cargo xtask demo (no arguments)");
    }
    crate::fetch::run(&[])?;
    let folder = cache_dir().join("models").join(MODEL);
    let started = Instant::now();
    let pipeline = SentenceEmbeddingsPipeline::new(&folder.display().to_string())
        .with_context(|| format!("loading {}", folder.display()))?;
    let load_time = started.elapsed();
    println!();
    println!("oxformer demo: {MODEL}, pure Rust on the CPU");
    println!(
        "model folder {} loaded in {:.0} ms",
        folder.display(),
        load_time.as_secs_f64() * 1000.0
    );

    // The model card's example, with sentence-transformers' scores beside ours.
    let reference_path = workspace_root().join("fixtures/minilm/reference.json");
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(&reference_path)
            .with_context(|| format!("reading {}", reference_path.display()))?,
    )?;
    let query = reference["similarity_query"]
        .as_str()
        .context("reference.json: similarity_query")?;
    let candidates: Vec<&str> = reference["similarity_candidates"]
        .as_array()
        .context("reference.json: similarity_candidates")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let expected: Vec<f64> = reference["similarities"]
        .as_array()
        .context("reference.json: similarities")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let started = Instant::now();
    let scores = similarities(&pipeline, query, &candidates)?;
    let elapsed = started.elapsed();
    println!();
    println!(
        "query: {query:?}  ({} sentences embedded in {:.1} ms)",
        candidates.len() + 1,
        elapsed.as_secs_f64() * 1000.0
    );
    println!("  rank   cosine  sentence-transformers  sentence");
    for (rank, &index) in ranking(&scores).iter().enumerate() {
        println!(
            "  {:>4}  {:>7.4}  {:>21.4}  {}",
            rank + 1,
            scores[index],
            expected.get(index).copied().unwrap_or(f64::NAN),
            candidates[index]
        );
    }
    let worst = scores
        .iter()
        .zip(&expected)
        .map(|(ours, theirs)| (f64::from(*ours) - theirs).abs())
        .fold(0.0, f64::max);
    println!("  largest difference from sentence-transformers: {worst:.1e}");

    let scores = similarities(&pipeline, SEARCH_QUERY, &SEARCH_CORPUS)?;
    println!();
    println!("query: {SEARCH_QUERY:?}");
    for (rank, &index) in ranking(&scores).iter().enumerate() {
        println!(
            "  {:>4}  {:.4}  {}",
            rank + 1,
            scores[index],
            SEARCH_CORPUS[index]
        );
    }
    println!();
    println!(
        "the same from the shell: oxformer sentence-similarity --model {} --source-sentence \"{SEARCH_QUERY}\" \"{}\" ...",
        folder.display(),
        SEARCH_CORPUS[0]
    );
    Ok(())
}

/// Cosine similarity of `query` to each candidate (sentence-similarity).
fn similarities(
    pipeline: &SentenceEmbeddingsPipeline,
    query: &str,
    candidates: &[&str],
) -> Result<Vec<f32>> {
    Ok(pipeline
        .similarity(query, candidates, &SentenceEmbeddingsOptions::default())?
        .0)
}

/// Candidate indices, most similar first.
fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}
