//! `oxformer bench`: forward-pass and generation timings on random ids.
//!
//! - Encoders (BERT, RoBERTa, XLM-R, DistilBERT, with whatever head the folder's `architectures`
//!   names): `--batch B --seq S`, or `--lengths 16,48,...` for a batch of mixed lengths padded on
//!   the right to the longest (each row's attention mask covers its own length). Ids are random
//!   from a seeded generator; `--warmup` untimed passes, then `--iterations` timed ones. Tokens/s
//!   counts real tokens only (padding excluded).
//! - GPT-2 (`--generate N`): greedy decoding of exactly N new tokens (EOS ignored, as
//!   `min_new_tokens = N` does in transformers) after a prompt of `--prompt-tokens` random ids;
//!   tokens/s counts the new tokens over the whole call (prompt pass included).
//! - T5, BART, Marian (`--generate N`): `--batch` inputs of `--prompt-tokens` random ids, the
//!   encoder once per input, then exactly N decoder tokens per input (EOS ignored), greedy or
//!   `--num-beams K`, through the generation engine; tokens/s counts batch × N over the whole call
//!   (encoder included).
//!
//! `load_ms` is the time from the model id to a model ready to run (config, weights mapped and
//! prepared); the peak resident set sizes are the kernel's VmHWM (`/proc/self/status`), read
//! right after loading and at the end. `--json` prints one object:
//! `{"batch", "seq", "threads", "cpu", "isa", "median_ms", "tokens_per_s", "load_ms", ...}` for encoders,
//! `{"new_tokens", "threads", "cpu", "isa", "median_ms", "tokens_per_s", "load_ms", ...}` for generation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use ndarray::Array2;
use oxformer_heads::{EncoderInput, EncoderModel};
use oxformer_models::ModelConfig;
use oxformer_models::bart::BartForConditionalGeneration;
use oxformer_models::gpt2::Gpt2LmHeadModel;
use oxformer_models::marian::MarianMTModel;
use oxformer_models::t5::T5ForConditionalGeneration;
use oxformer_pipelines::generation::{
    Generation, GenerationConfig, Generative, Prompts, greedy_decode,
};
use oxformer_tensor::ThreadPool;
use serde_json::{Value, json};

use crate::UsageError;

/// Options of `oxformer bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model folder or id.
    #[arg(long)]
    pub model: String,
    /// Sequences per forward pass (default 1; with --lengths, their count).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Tokens per sequence (default 128; with --lengths, the longest).
    #[arg(long)]
    pub seq: Option<usize>,
    /// A batch of mixed lengths, comma-separated (e.g. 16,48,128), padded to the longest.
    #[arg(long, value_delimiter = ',')]
    pub lengths: Option<Vec<usize>>,
    /// Time decoding of this many new tokens (GPT-2; T5, BART, Marian after their encoder)
    /// instead of one forward pass.
    #[arg(long, conflicts_with_all = ["seq", "lengths"])]
    pub generate: Option<usize>,
    /// Prompt (GPT-2) or encoder input (T5, BART, Marian) length, in random ids (with --generate).
    #[arg(long, default_value_t = 8, requires = "generate")]
    pub prompt_tokens: usize,
    /// Beam search with this many beams instead of greedy decoding (encoder-decoder models).
    #[arg(long, default_value_t = 1, requires = "generate")]
    pub num_beams: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 10)]
    pub iterations: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Seed of the random ids.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark.
///
/// # Errors
/// Bad options or a model that is not there ([`UsageError`], exit status 2); a model that fails
/// to load or run.
pub fn run(args: &BenchArgs) -> Result<()> {
    let report = run_report(args)?;
    print_report(&report, args.json);
    Ok(())
}

/// What [`run`] prints.
fn run_report(args: &BenchArgs) -> Result<Value> {
    if args.iterations == 0 {
        return Err(usage("--iterations must be at least 1"));
    }
    let threads = match args.threads {
        Some(0) => return Err(usage("--threads must be at least 1")),
        Some(threads) => threads,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let pool = ThreadPool::new(threads).context("starting the worker threads")?;
    let load_start = Instant::now();
    let dir = oxformer_nn::resolve_model(&args.model).map_err(|error| match error {
        oxformer_nn::Error::ModelNotFound { .. }
        | oxformer_nn::Error::InvalidModelId { .. }
        | oxformer_nn::Error::OfflineNotCached { .. }
        | oxformer_nn::Error::RemoteNotFound { .. } => usage(format!("--model: {error}")),
        other => anyhow::Error::new(other),
    })?;
    let config = ModelConfig::from_folder(&dir)
        .with_context(|| format!("reading {}", dir.join("config.json").display()))?;
    let report = match (&config, args.generate) {
        (ModelConfig::Gpt2(_), Some(new_tokens)) => {
            if args.batch.unwrap_or(1) != 1 || args.num_beams != 1 {
                return Err(usage(
                    "GPT-2 is timed on one prompt, greedy: --batch and --num-beams are for \
                     encoder-decoder models",
                ));
            }
            bench_generation(args, &dir, &pool, load_start, new_tokens)?
        }
        (ModelConfig::T5(_), Some(new_tokens)) => {
            let model = T5ForConditionalGeneration::from_folder(&dir)
                .with_context(|| format!("loading {}", dir.display()))?;
            bench_seq2seq(args, &dir, &model, &config, &pool, load_start, new_tokens)?
        }
        (ModelConfig::Bart(_), Some(new_tokens)) => {
            let model = BartForConditionalGeneration::from_folder(&dir)
                .with_context(|| format!("loading {}", dir.display()))?;
            bench_seq2seq(args, &dir, &model, &config, &pool, load_start, new_tokens)?
        }
        (ModelConfig::Marian(_), Some(new_tokens)) => {
            let model = MarianMTModel::from_folder(&dir)
                .with_context(|| format!("loading {}", dir.display()))?;
            bench_seq2seq(args, &dir, &model, &config, &pool, load_start, new_tokens)?
        }
        (ModelConfig::T5(_) | ModelConfig::Bart(_) | ModelConfig::Marian(_), None) => {
            return Err(usage(format!(
                "a `{}` encoder-decoder model is timed by generation: pass --generate N (new tokens)",
                config.model_type()
            )));
        }
        (ModelConfig::Gpt2(_), None) => {
            return Err(usage(
                "GPT-2 is timed by decoding: pass --generate N (new tokens)",
            ));
        }
        (_, Some(_)) => {
            return Err(usage(format!(
                "--generate needs a GPT-2, T5, BART or Marian model; {} is a `{}` encoder",
                dir.display(),
                config.model_type()
            )));
        }
        (_, None) => bench_encoder(args, &dir, &config, &pool, load_start)?,
    };
    Ok(report)
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// The shape of an encoder batch: one length per row; `seq` ≥ every length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BatchShape {
    lengths: Vec<usize>,
    seq: usize,
}

impl BatchShape {
    /// From `--batch`, `--seq` and `--lengths`; `Err` is the message for the user.
    fn from_args(
        batch: Option<usize>,
        seq: Option<usize>,
        lengths: Option<&[usize]>,
    ) -> std::result::Result<Self, String> {
        let shape = match lengths {
            None => {
                let batch = batch.unwrap_or(1);
                let seq = seq.unwrap_or(128);
                BatchShape {
                    lengths: vec![seq; batch],
                    seq,
                }
            }
            Some(lengths) => {
                let longest = lengths.iter().copied().max().unwrap_or(0);
                if let Some(batch) = batch.filter(|&batch| batch != lengths.len()) {
                    return Err(format!(
                        "--batch {batch} disagrees with the {} values of --lengths",
                        lengths.len()
                    ));
                }
                let seq = seq.unwrap_or(longest);
                if seq < longest {
                    return Err(format!(
                        "--seq {seq} is shorter than the longest of --lengths ({longest})"
                    ));
                }
                BatchShape {
                    lengths: lengths.to_vec(),
                    seq,
                }
            }
        };
        if shape.lengths.is_empty() {
            return Err("the batch is empty: --batch and --lengths need at least one row".into());
        }
        if shape.lengths.contains(&0) {
            return Err("every sequence needs at least one token (--seq / --lengths)".into());
        }
        Ok(shape)
    }

    fn batch(&self) -> usize {
        self.lengths.len()
    }

    fn real_tokens(&self) -> usize {
        self.lengths.iter().sum()
    }
}

/// The inputs of an encoder batch: random ids in `[low, vocab)` where a row attends, 0 (and a
/// zero mask) where it is padding.
///
/// # Shapes
/// Both (batch, seq).
fn encoder_batch(shape: &BatchShape, vocab_size: usize, seed: u64) -> (Array2<u32>, Array2<u32>) {
    let mut random = SplitMix64(seed);
    // Ids below 1000 are special and unused tokens in BERT-like vocabularies: avoid them when
    // the vocabulary is large enough (they would not change the work, only the realism).
    let low = if vocab_size > 2000 { 1000 } else { 0 };
    let span = (vocab_size - low).max(1) as u64;
    let mut input_ids = Array2::<u32>::zeros((shape.batch(), shape.seq));
    let mut attention_mask = Array2::<u32>::zeros((shape.batch(), shape.seq));
    for (row, &length) in shape.lengths.iter().enumerate() {
        for column in 0..length {
            input_ids[[row, column]] = (low as u64 + random.next() % span) as u32;
            attention_mask[[row, column]] = 1;
        }
    }
    (input_ids, attention_mask)
}

/// Vocabulary size and the longest sequence the encoder takes.
fn encoder_limits(config: &ModelConfig) -> Option<(usize, usize)> {
    match config {
        ModelConfig::Bert(bert) => Some((bert.vocab_size, bert.max_position_embeddings)),
        // Positions start at padding_idx + 1 (modeling_roberta.py create_position_ids_from_input_ids).
        ModelConfig::Roberta(bert) | ModelConfig::XlmRoberta(bert) => {
            let offset = config.common().pad_token_id.unwrap_or(1) as usize + 1;
            Some((
                bert.vocab_size,
                bert.max_position_embeddings.saturating_sub(offset),
            ))
        }
        ModelConfig::DistilBert(distil) => {
            Some((distil.vocab_size, distil.max_position_embeddings))
        }
        ModelConfig::Gpt2(_)
        | ModelConfig::T5(_)
        | ModelConfig::Bart(_)
        | ModelConfig::Marian(_) => None,
    }
}

fn bench_encoder(
    args: &BenchArgs,
    dir: &Path,
    config: &ModelConfig,
    pool: &ThreadPool,
    load_start: Instant,
) -> Result<Value> {
    let shape =
        BatchShape::from_args(args.batch, args.seq, args.lengths.as_deref()).map_err(usage)?;
    let (vocab_size, max_seq) = encoder_limits(config).expect("GPT-2 is handled by the caller");
    if shape.seq > max_seq {
        return Err(usage(format!(
            "--seq {} is beyond the {max_seq} positions of {}",
            shape.seq,
            dir.display()
        )));
    }
    let model =
        EncoderModel::from_folder(dir).with_context(|| format!("loading {}", dir.display()))?;
    let load_ms = milliseconds_since(load_start);
    let load_peak_rss_mb = peak_rss_mb();

    let (input_ids, attention_mask) = encoder_batch(&shape, vocab_size, args.seed);
    let input = EncoderInput::new(input_ids.view(), attention_mask.view());
    let times_ms = pool.install(|| {
        timed(args.warmup, args.iterations, || {
            model.forward(&input).map(drop)
        })
    })?;
    let median_ms = median(&times_ms);
    let tokens = shape.real_tokens();
    Ok(json!({
        "kind": "forward",
        "model": dir,
        "head": format!("{:?}", model.head()),
        "batch": shape.batch(),
        "seq": shape.seq,
        "lengths": args.lengths.as_ref().map(|_| &shape.lengths),
        "tokens": tokens,
        "threads": pool.num_threads(),
        "cpu": oxformer_tensor::cpu_model(),
        "isa": oxformer_tensor::isa().name(),
        "warmup": args.warmup,
        "iterations": args.iterations,
        "times_ms": times_ms,
        "median_ms": median_ms,
        "tokens_per_s": tokens as f64 / (median_ms / 1000.0),
        "load_ms": load_ms,
        "load_peak_rss_mb": load_peak_rss_mb,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

fn bench_generation(
    args: &BenchArgs,
    dir: &Path,
    pool: &ThreadPool,
    load_start: Instant,
    new_tokens: usize,
) -> Result<Value> {
    if new_tokens == 0 {
        return Err(usage("--generate must be at least 1 new token"));
    }
    if args.prompt_tokens == 0 {
        return Err(usage("--prompt-tokens must be at least 1"));
    }
    let model =
        Gpt2LmHeadModel::from_folder(dir).with_context(|| format!("loading {}", dir.display()))?;
    let load_ms = milliseconds_since(load_start);
    let load_peak_rss_mb = peak_rss_mb();
    let positions = model.config().n_positions;
    if args.prompt_tokens + new_tokens > positions {
        return Err(usage(format!(
            "{} prompt tokens and {new_tokens} new ones exceed the {positions} positions of {}",
            args.prompt_tokens,
            dir.display()
        )));
    }

    let mut random = SplitMix64(args.seed);
    let vocab_size = model.config().vocab_size as u64;
    let prompt: Vec<u32> = (0..args.prompt_tokens)
        .map(|_| (random.next() % vocab_size) as u32)
        .collect();
    let times_ms = pool.install(|| {
        timed(args.warmup, args.iterations, || {
            let made = greedy_decode(&model, &prompt, new_tokens)?.len();
            if made != new_tokens {
                anyhow::bail!("decoding made {made} new tokens, not {new_tokens}");
            }
            Ok(())
        })
    })?;
    let median_ms = median(&times_ms);
    Ok(json!({
        "kind": "generate",
        "model": dir,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": new_tokens,
        "threads": pool.num_threads(),
        "cpu": oxformer_tensor::cpu_model(),
        "isa": oxformer_tensor::isa().name(),
        "warmup": args.warmup,
        "iterations": args.iterations,
        "times_ms": times_ms,
        "median_ms": median_ms,
        "tokens_per_s": new_tokens as f64 / (median_ms / 1000.0),
        "load_ms": load_ms,
        "load_peak_rss_mb": load_peak_rss_mb,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// An encoder-decoder model: `--batch` inputs of `--prompt-tokens` random ids, then exactly
/// `new_tokens` decoder tokens each (no EOS), greedy or `--num-beams` beams, through the engine.
fn bench_seq2seq<M: Generative>(
    args: &BenchArgs,
    dir: &Path,
    model: &M,
    config: &ModelConfig,
    pool: &ThreadPool,
    load_start: Instant,
    new_tokens: usize,
) -> Result<Value> {
    let load_ms = milliseconds_since(load_start);
    let load_peak_rss_mb = peak_rss_mb();
    let batch = args.batch.unwrap_or(1);
    if new_tokens == 0 || args.prompt_tokens == 0 || batch == 0 || args.num_beams == 0 {
        return Err(usage(
            "--generate, --prompt-tokens, --batch and --num-beams must be at least 1",
        ));
    }
    if let Some(positions) = model.max_positions()
        && (args.prompt_tokens > positions || new_tokens + 1 > positions)
    {
        return Err(usage(format!(
            "{} input tokens or {new_tokens} new ones exceed the {positions} positions of {}",
            args.prompt_tokens,
            dir.display()
        )));
    }
    let common = config.common();
    // random source ids, clear of the special ids at the start and the end of the vocabulary
    let vocab = model.vocab_size().min(32_000) as u64;
    let mut random = SplitMix64(args.seed);
    let inputs: Vec<Vec<u32>> = (0..batch)
        .map(|_| {
            (0..args.prompt_tokens)
                .map(|_| (3 + random.next() % (vocab - 4)) as u32)
                .collect()
        })
        .collect();
    let prompts = Prompts::from_padded(inputs, vec![vec![1; args.prompt_tokens]; batch])?;
    let generation = GenerationConfig {
        max_new_tokens: Some(new_tokens),
        num_beams: args.num_beams,
        // no end of sequence: every input gets exactly `new_tokens`
        eos_token_id: Vec::new(),
        pad_token_id: common.pad_token_id.or(Some(0)),
        decoder_start_token_id: common.decoder_start_token_id.or(common.pad_token_id),
        ..GenerationConfig::default()
    };
    let times_ms = pool.install(|| {
        timed(args.warmup, args.iterations, || {
            let output = Generation::new(model, &prompts, &generation)?.run()?;
            let made: Vec<usize> = output.new_tokens().iter().map(|row| row.len()).collect();
            if made.len() != batch || made.iter().any(|&count| count != new_tokens) {
                anyhow::bail!(
                    "decoding made {made:?} new tokens, not {new_tokens} for each of {batch}"
                );
            }
            Ok(())
        })
    })?;
    let median_ms = median(&times_ms);
    Ok(json!({
        "kind": "generate",
        "model": dir,
        "model_type": config.model_type(),
        "batch": batch,
        "num_beams": args.num_beams,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": new_tokens,
        "tokens": batch * new_tokens,
        "threads": pool.num_threads(),
        "warmup": args.warmup,
        "iterations": args.iterations,
        "times_ms": times_ms,
        "median_ms": median_ms,
        "tokens_per_s": (batch * new_tokens) as f64 / (median_ms / 1000.0),
        "load_ms": load_ms,
        "load_peak_rss_mb": load_peak_rss_mb,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// Runs `work` `warmup` times, then `iterations` times, returning the latter's durations in ms.
fn timed<E>(
    warmup: usize,
    iterations: usize,
    mut work: impl FnMut() -> std::result::Result<(), E>,
) -> std::result::Result<Vec<f64>, E> {
    for _ in 0..warmup {
        work()?;
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        work()?;
        times.push(milliseconds_since(start));
    }
    Ok(times)
}

fn milliseconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// The median of a non-empty list (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// The peak resident set size of this process so far (VmHWM), in MiB; `None` off Linux.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<f64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// splitmix64 (Steele, Lea, Flood 2014): a few lines, seeded, the same ids on every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn print_report(report: &Value, as_json: bool) {
    if as_json {
        let mut report = report.clone();
        if let Value::Object(map) = &mut report {
            map.retain(|_, value| !value.is_null());
        }
        println!("{report}");
        return;
    }
    let number = |key: &str| report[key].as_f64().unwrap_or(f64::NAN);
    let model = report["model"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_default();
    if report["kind"] == "generate" {
        println!(
            "{}: greedy decoding of {} new tokens after {} prompt tokens, {} threads",
            model.display(),
            report["new_tokens"],
            report["prompt_tokens"],
            report["threads"]
        );
    } else {
        let lengths = match report["lengths"].as_array() {
            Some(lengths) => format!(
                " (lengths {})",
                lengths
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None => String::new(),
        };
        println!(
            "{}: forward pass, batch {} x seq {}{lengths}, {} threads",
            model.display(),
            report["batch"],
            report["seq"],
            report["threads"]
        );
    }
    println!(
        "  CPU {}, instruction set {} (OXFORMER_ISA caps it)",
        report["cpu"].as_str().unwrap_or("?"),
        report["isa"].as_str().unwrap_or("?")
    );
    println!(
        "  median {:.2} ms over {} runs ({} warm-up), {:.1} tokens/s",
        number("median_ms"),
        report["iterations"],
        report["warmup"],
        number("tokens_per_s")
    );
    println!("  load {:.1} ms", number("load_ms"));
    if let (Some(load), Some(peak)) = (
        report["load_peak_rss_mb"].as_f64(),
        report["peak_rss_mb"].as_f64(),
    ) {
        println!("  peak RSS {load:.0} MiB after loading, {peak:.0} MiB at the end");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_batch_defaults_to_one_by_128() {
        let shape = BatchShape::from_args(None, None, None).unwrap();
        assert_eq!(shape.lengths, vec![128]);
        assert_eq!(shape.seq, 128);
        let shape = BatchShape::from_args(Some(8), Some(64), None).unwrap();
        assert_eq!(
            (shape.batch(), shape.seq, shape.real_tokens()),
            (8, 64, 512)
        );
    }

    #[test]
    fn mixed_lengths_pad_to_the_longest_and_count_real_tokens() {
        let shape = BatchShape::from_args(None, None, Some(&[16, 48, 32])).unwrap();
        assert_eq!((shape.batch(), shape.seq, shape.real_tokens()), (3, 48, 96));
        let (ids, mask) = encoder_batch(&shape, 30522, 7);
        assert_eq!(ids.dim(), (3, 48));
        for (row, &length) in shape.lengths.iter().enumerate() {
            assert_eq!(mask.row(row).sum() as usize, length);
            assert!(
                ids.row(row)
                    .iter()
                    .take(length)
                    .all(|&id| (1000..30522).contains(&id))
            );
            assert!(ids.row(row).iter().skip(length).all(|&id| id == 0));
        }
    }

    #[test]
    fn random_ids_are_seeded() {
        let shape = BatchShape::from_args(Some(2), Some(16), None).unwrap();
        assert_eq!(encoder_batch(&shape, 500, 3), encoder_batch(&shape, 500, 3));
        assert_ne!(
            encoder_batch(&shape, 500, 3).0,
            encoder_batch(&shape, 500, 4).0
        );
        assert!(encoder_batch(&shape, 500, 3).0.iter().all(|&id| id < 500));
    }

    #[test]
    fn inconsistent_shapes_are_refused() {
        assert!(BatchShape::from_args(Some(2), None, Some(&[16, 32, 48])).is_err());
        assert!(BatchShape::from_args(None, Some(32), Some(&[16, 48])).is_err());
        assert!(BatchShape::from_args(None, None, Some(&[16, 0])).is_err());
        assert!(BatchShape::from_args(None, None, Some(&[])).is_err());
        assert!(BatchShape::from_args(Some(0), None, None).is_err());
        assert!(BatchShape::from_args(None, Some(0), None).is_err());
        let padded = BatchShape::from_args(Some(2), Some(64), Some(&[16, 48])).unwrap();
        assert_eq!(padded.seq, 64);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    fn fixture(name: &str) -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/models")
            .join(name)
            .display()
            .to_string()
    }

    fn args(model: String) -> BenchArgs {
        BenchArgs {
            model,
            batch: None,
            seq: None,
            lengths: None,
            generate: None,
            prompt_tokens: 8,
            num_beams: 1,
            threads: Some(2),
            iterations: 2,
            warmup: 1,
            seed: 0,
            json: true,
        }
    }

    fn is_usage(error: &anyhow::Error) -> bool {
        error.chain().any(|cause| cause.is::<UsageError>())
    }

    #[test]
    fn times_a_mixed_batch_of_the_tiny_bert() {
        let mut bench = args(fixture("bert"));
        bench.lengths = Some(vec![16, 48, 5]);
        let dir = PathBuf::from(&bench.model);
        let config = ModelConfig::from_folder(&dir).unwrap();
        let pool = ThreadPool::new(2).unwrap();
        let report = bench_encoder(&bench, &dir, &config, &pool, Instant::now()).unwrap();
        assert_eq!(report["batch"], 3);
        assert_eq!(report["seq"], 48);
        assert_eq!(report["tokens"], 69);
        assert_eq!(report["threads"], 2);
        assert_eq!(report["times_ms"].as_array().unwrap().len(), 2);
        let median = report["median_ms"].as_f64().unwrap();
        let rate = report["tokens_per_s"].as_f64().unwrap();
        assert!((rate - 69.0 / (median / 1000.0)).abs() < 1e-6 * rate);
        assert!(report["load_ms"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn times_greedy_decoding_of_the_tiny_gpt2() {
        let dir = PathBuf::from(fixture("gpt2"));
        let pool = ThreadPool::new(2).unwrap();
        let bench = args(fixture("gpt2"));
        let report = bench_generation(&bench, &dir, &pool, Instant::now(), 20).unwrap();
        assert_eq!(report["new_tokens"], 20);
        assert_eq!(report["prompt_tokens"], 8);
        assert_eq!(report["iterations"], 2);
        // The tiny model has 128 positions.
        let error = bench_generation(&bench, &dir, &pool, Instant::now(), 121).unwrap_err();
        assert!(is_usage(&error), "{error:#}");
    }

    #[test]
    fn times_encoder_decoder_generation_greedy_and_with_beams() {
        for name in ["t5", "bart", "marian"] {
            for (batch, beams) in [(1, 1), (2, 3)] {
                let mut bench = args(fixture(name));
                bench.generate = Some(6);
                bench.batch = Some(batch);
                bench.num_beams = beams;
                bench.prompt_tokens = 10;
                let report = run_report(&bench).unwrap();
                assert_eq!(report["batch"], batch, "{name}");
                assert_eq!(report["num_beams"], beams, "{name}");
                assert_eq!(report["tokens"], batch * 6, "{name}");
                assert_eq!(report["times_ms"].as_array().unwrap().len(), 2);
            }
        }
        let mut on_gpt2 = args(fixture("gpt2"));
        on_gpt2.generate = Some(4);
        on_gpt2.num_beams = 4;
        assert!(is_usage(&run(&on_gpt2).unwrap_err()));
        let forward_on_t5 = args(fixture("t5"));
        assert!(is_usage(&run(&forward_on_t5).unwrap_err()));
    }

    #[test]
    fn bad_usage_is_a_usage_error() {
        let mut missing = args(fixture("no-such-model"));
        missing.seq = Some(8);
        assert!(is_usage(&run(&missing).unwrap_err()));

        let mut too_long = args(fixture("bert"));
        too_long.seq = Some(129);
        let error = run(&too_long).unwrap_err();
        assert!(
            is_usage(&error) && error.to_string().contains("128 positions"),
            "{error:#}"
        );

        let mut generate_on_encoder = args(fixture("bert"));
        generate_on_encoder.generate = Some(4);
        assert!(is_usage(&run(&generate_on_encoder).unwrap_err()));

        let forward_on_gpt2 = args(fixture("gpt2"));
        assert!(is_usage(&run(&forward_on_gpt2).unwrap_err()));

        let mut no_iterations = args(fixture("bert"));
        no_iterations.iterations = 0;
        assert!(is_usage(&run(&no_iterations).unwrap_err()));
    }

    #[test]
    fn vm_hwm_is_read_in_mib() {
        let status = "Name:\toxformer\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2.0));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
    }
}
