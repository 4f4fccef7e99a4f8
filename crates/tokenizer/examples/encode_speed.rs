//! Median time to encode a batch with a model folder's tokenizer, for side-by-side comparison with
//! transformers (`tokenizer(texts, padding=True, truncation=True, return_offsets_mapping=True)`).
//!
//! `cargo run --release -p oxformer-tokenizer --example encode_speed -- <folder> [texts.json] [runs]`
//! where texts.json is a JSON list of strings (default: the `texts` of
//! fixtures/tokenizers/reference/wordpiece-cased.json, repeated to 256).

use std::time::Instant;

use oxformer_tokenizer::{EncodeInput, EncodeOptions, Padding, Tokenizer, Truncation};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let folder = args
        .first()
        .ok_or("usage: encode_speed <folder> [texts.json] [runs]")?;
    let texts: Vec<String> = match args.get(1) {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path)?)?,
        None => {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../fixtures/tokenizers/reference/wordpiece-cased.json"
            );
            let reference: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path)?)?;
            let texts: Vec<String> = serde_json::from_value(reference["texts"].clone())?;
            texts.iter().cycle().take(256).cloned().collect()
        }
    };
    let runs: usize = args
        .get(2)
        .map(|runs| runs.parse())
        .transpose()?
        .unwrap_or(20);
    let tokenizer = Tokenizer::from_folder(folder)?;
    let inputs: Vec<EncodeInput<'_>> = texts.iter().map(EncodeInput::from).collect();
    let options = EncodeOptions {
        padding: Padding::Longest,
        truncation: Truncation::LongestFirst,
        ..EncodeOptions::default()
    };
    let mut times = Vec::with_capacity(runs);
    let mut tokens = 0;
    for _ in 0..runs + 2 {
        let start = Instant::now();
        let encodings = tokenizer.encode_batch(&inputs, &options)?;
        times.push(start.elapsed().as_secs_f64());
        tokens = encodings.iter().map(|encoding| encoding.len()).sum();
    }
    times.drain(..2); // warm-up
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{} texts, {tokens} tokens (padded): median {:.2} ms over {runs} runs",
        texts.len(),
        median * 1e3
    );
    Ok(())
}
