//! The pipeline subcommands: `oxformer <task> --model <DIR|ID> [options] [TEXT ...]`.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use clap::ArgAction;
use oxformer_pipelines::feature_extraction::{FeatureExtractionOptions, Features};
use oxformer_pipelines::fill_mask::{FillMaskOptions, FillMaskOutput, FillMaskPrediction};
use oxformer_pipelines::question_answering::{QaInput, QaOutput, QuestionAnsweringOptions};
use oxformer_pipelines::sentence_embeddings::SentenceEmbeddingsOptions;
use oxformer_pipelines::text_classification::{
    ClassificationFunction, ClassificationOutput, ClassificationTopK, TextClassificationOptions,
    TextInput,
};
use oxformer_pipelines::token_classification::{
    AggregationStrategy, Entity, TokenClassificationOptions,
};
use oxformer_pipelines::zero_shot_classification::{ZeroShotOptions, parse_labels};
use oxformer_pipelines::{Pipeline, Task, pipeline};
use serde::Serialize;

use crate::UsageError;
use crate::table::{one_line, score, write_table};

/// Flags every pipeline subcommand takes.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Model folder, or a Hugging Face hub id (`org/name`), downloaded into the shared cache
    /// when missing (HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE apply).
    #[arg(long)]
    pub model: String,
    /// Branch, tag or commit hash of a hub model id (default: main).
    #[arg(long)]
    pub revision: Option<String>,
    /// Print one JSON value per input per line, with transformers' keys and types.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Inputs (or windows) per forward pass (default 8, grouped by length). For
    /// feature-extraction an explicit value batches as transformers' `batch_size` does, padded
    /// positions included in the output.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// No progress line on stderr (shown only when stderr is a terminal and inputs come from
    /// stdin).
    #[arg(long)]
    pub no_progress: bool,
}

/// `oxformer text-classification`.
#[derive(Debug, clap::Args)]
pub struct TextClassificationArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Labels per input: a number, or `all` (transformers' `top_k=None`); without it, the best
    /// label only.
    #[arg(long)]
    pub top_k: Option<String>,
    /// sigmoid, softmax or none (default: from the model's config).
    #[arg(long)]
    pub function_to_apply: Option<String>,
    /// Cut inputs longer than the model instead of refusing them.
    #[arg(long)]
    pub truncation: bool,
    /// Second text of a pair, for every TEXT (stdin may also give `{"text", "text_pair"}` lines).
    #[arg(long)]
    pub text_pair: Option<String>,
    /// Texts to classify (default: stdin, one per line).
    pub texts: Vec<String>,
}

/// `oxformer token-classification`.
#[derive(Debug, clap::Args)]
pub struct TokenClassificationArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// none, simple, first, average or max.
    #[arg(long)]
    pub aggregation_strategy: Option<String>,
    /// Labels to leave out, comma-separated (default `O`; an empty string keeps all).
    #[arg(long)]
    pub ignore_labels: Option<String>,
    /// Run long texts in windows overlapping by this many tokens.
    #[arg(long)]
    pub stride: Option<usize>,
    /// Texts (default: stdin, one per line).
    pub texts: Vec<String>,
}

/// `oxformer question-answering`.
#[derive(Debug, clap::Args)]
pub struct QuestionAnsweringArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The question (with --context); otherwise stdin gives `{"question", "context"}` lines.
    #[arg(long, requires = "context")]
    pub question: Option<String>,
    /// The context to find the answer in.
    #[arg(long, requires = "question")]
    pub context: Option<String>,
    /// Answers per question.
    #[arg(long, default_value_t = 1)]
    pub top_k: usize,
    /// Tokens each window of a long context repeats from the previous one.
    #[arg(long)]
    pub doc_stride: Option<usize>,
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = 15)]
    pub max_answer_len: usize,
    /// Tokens per window, question included.
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Accepted for compatibility (changes nothing with fast tokenizers, as in transformers).
    #[arg(long, default_value_t = 64)]
    pub max_question_len: usize,
    /// Also rank the empty answer.
    #[arg(long)]
    pub handle_impossible_answer: bool,
    /// Widen answers to whole words (true or false).
    #[arg(long, action = ArgAction::Set, default_value_t = true)]
    pub align_to_words: bool,
}

/// `oxformer fill-mask`.
#[derive(Debug, clap::Args)]
pub struct FillMaskArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Predictions per mask.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Only score these tokens, comma-separated.
    #[arg(long)]
    pub targets: Option<String>,
    /// Texts with the tokenizer's mask token (default: stdin, one per line).
    pub texts: Vec<String>,
}

/// `oxformer feature-extraction`.
#[derive(Debug, clap::Args)]
pub struct FeatureExtractionArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Cut inputs longer than the model instead of refusing them.
    #[arg(long)]
    pub truncation: bool,
    /// Texts (default: stdin, one per line).
    pub texts: Vec<String>,
}

/// Options of `oxformer sentence-embeddings` and `sentence-similarity`: `encode()`'s.
#[derive(Debug, clap::Args)]
pub struct SentenceOptionArgs {
    /// Use the folder's prompt of this name (config_sentence_transformers.json).
    #[arg(long)]
    pub prompt_name: Option<String>,
    /// Put this prompt before each text (wins over --prompt-name).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Scale each embedding to unit length.
    #[arg(long)]
    pub normalize_embeddings: bool,
    /// Keep only the first N values of each embedding.
    #[arg(long, value_name = "N")]
    pub truncate_dim: Option<usize>,
}

impl SentenceOptionArgs {
    fn options(&self, batch_size: Option<usize>) -> SentenceEmbeddingsOptions {
        SentenceEmbeddingsOptions {
            prompt_name: self.prompt_name.clone(),
            prompt: self.prompt.clone(),
            normalize_embeddings: self.normalize_embeddings,
            truncate_dim: self.truncate_dim,
            max_length: None,
            batch_size: batch_size.unwrap_or(0),
        }
    }
}

/// `oxformer sentence-embeddings`.
#[derive(Debug, clap::Args)]
pub struct SentenceEmbeddingsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub sentence: SentenceOptionArgs,
    /// Texts (default: stdin, one per line).
    pub texts: Vec<String>,
}

/// `oxformer sentence-similarity`.
#[derive(Debug, clap::Args)]
pub struct SentenceSimilarityArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub sentence: SentenceOptionArgs,
    /// The sentence the others are compared with; without it, stdin gives
    /// `{"source_sentence": ..., "sentences": [...]}` lines.
    #[arg(long)]
    pub source_sentence: Option<String>,
    /// The sentences to score against --source-sentence.
    pub sentences: Vec<String>,
}

/// `oxformer zero-shot-classification`.
#[derive(Debug, clap::Args)]
pub struct ZeroShotArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The candidate labels, comma-separated.
    #[arg(long)]
    pub candidate_labels: String,
    /// The hypothesis, with `{}` where the label goes.
    #[arg(long)]
    pub hypothesis_template: Option<String>,
    /// Score each label on its own.
    #[arg(long)]
    pub multi_label: bool,
    /// Texts (default: stdin, one per line).
    pub texts: Vec<String>,
}

/// Most stdin lines handed to a pipeline at once.
const STDIN_CHUNK: usize = 64;

/// Runs `handle` on the TEXT arguments, or, when there are none, on stdin's non-empty lines
/// batch by batch as they arrive (a Unix filter answers as lines come in): each call gets the
/// lines already waiting, up to [`STDIN_CHUNK`], in a multiple of `granule` lines but for the
/// last (so that transformers-style fixed batches come out as they would all at once).
fn for_each_batch(
    texts: &[String],
    common: &CommonArgs,
    granule: usize,
    mut handle: impl FnMut(Vec<String>) -> Result<()>,
) -> Result<()> {
    if !texts.is_empty() {
        return handle(texts.to_vec());
    }
    let (sender, receiver) = std::sync::mpsc::channel::<std::io::Result<String>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let failed = line.is_err();
            if sender.send(line).is_err() || failed {
                break;
            }
        }
    });
    let granule = granule.max(1);
    let limit = STDIN_CHUNK.div_ceil(granule) * granule;
    let progress = Progress::new(common.no_progress);
    let mut seen = 0;
    let mut open = true;
    while open {
        let mut chunk = Vec::new();
        // Wait for a line, take what else is waiting, then wait until the chunk is whole.
        loop {
            let line = if chunk.is_empty() || !chunk.len().is_multiple_of(granule) {
                receiver.recv().ok()
            } else if chunk.len() < limit {
                match receiver.try_recv() {
                    Ok(line) => Some(line),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
                }
            } else {
                break;
            };
            let Some(line) = line else {
                open = false;
                break;
            };
            let line = line.context("reading stdin")?;
            let line = line.trim_end_matches('\r');
            if !line.trim().is_empty() {
                chunk.push(line.to_string());
            }
        }
        if chunk.is_empty() {
            continue;
        }
        seen += chunk.len();
        let count = chunk.len();
        progress.suspend(|| handle(chunk))?;
        progress.advance(count);
    }
    progress.finish();
    if seen == 0 {
        return Err(UsageError("no input: give TEXT arguments or lines on stdin".into()).into());
    }
    Ok(())
}

/// A progress line on stderr (inputs done, inputs per second, time so far) while stdin feeds
/// inputs, only when stderr is a terminal: the number of lines to come is not known, so it
/// shows no ETA.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(disabled: bool) -> Self {
        use std::io::IsTerminal;
        if disabled || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {pos} inputs, {per_sec}, {elapsed}")
        {
            bar.set_style(style);
        }
        Self(Some(bar))
    }

    /// Runs `work` with the progress line cleared, so that its output is not mixed into it.
    fn suspend<R>(&self, work: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(bar) => bar.suspend(work),
            None => work(),
        }
    }

    fn advance(&self, count: usize) {
        if let Some(bar) = &self.0 {
            bar.inc(count as u64);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Loads the pipeline and sets its threads.
fn load(task: Task, common: &CommonArgs) -> Result<Pipeline> {
    let mut loaded = pipeline(task, &model_folder(common)?)?;
    if let Some(threads) = common.threads {
        loaded.set_threads(threads)?;
    }
    Ok(loaded)
}

/// The folder of `--model` at `--revision`, downloaded if needed; a model that is not there (or
/// not cached, offline) is a usage error.
fn model_folder(common: &CommonArgs) -> Result<String> {
    let settings = oxformer_nn::hub::HubSettings::from_env();
    let dir = settings
        .resolve(&common.model, common.revision.as_deref())
        .map_err(|error| match error {
            oxformer_nn::Error::ModelNotFound { .. }
            | oxformer_nn::Error::InvalidModelId { .. }
            | oxformer_nn::Error::OfflineNotCached { .. }
            | oxformer_nn::Error::RemoteNotFound { .. } => usage(format!("--model: {error}")),
            other => anyhow::Error::new(other),
        })?;
    dir.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not valid UTF-8", dir.display()))
}

/// Writes one JSON line per result.
fn write_json<T: Serialize>(results: &[T]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for result in results {
        writeln!(out, "{}", serde_json::to_string(result)?)?;
    }
    out.flush()?;
    Ok(())
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

pub fn text_classification(args: &TextClassificationArgs) -> Result<()> {
    let top_k = match args.top_k.as_deref() {
        None => ClassificationTopK::Best,
        Some("all" | "none" | "None") => ClassificationTopK::All,
        Some(number) => ClassificationTopK::Top(number.parse().map_err(|_| {
            usage(format!(
                "--top-k: expected a number or `all`, found `{number}`"
            ))
        })?),
    };
    let function_to_apply = args
        .function_to_apply
        .as_deref()
        .map(str::parse::<ClassificationFunction>)
        .transpose()?;
    let options = TextClassificationOptions {
        top_k,
        function_to_apply,
        truncation: args.truncation,
        max_length: None,
        batch_size: args.common.batch_size.unwrap_or(0),
    };
    let loaded = load(Task::TextClassification, &args.common)?;
    let pipeline = loaded.text_classification().expect("built for the task");
    for_each_batch(&args.texts, &args.common, 1, |texts| {
        let inputs: Vec<TextInput> = texts
            .into_iter()
            .map(|line| {
                if args.texts.is_empty()
                    && line.trim_start().starts_with('{')
                    && let Ok(serde_json::Value::Object(object)) = serde_json::from_str(&line)
                {
                    let text = object.get("text").and_then(|value| value.as_str());
                    let pair = object.get("text_pair").and_then(|value| value.as_str());
                    return match text {
                        Some(text) => Ok(TextInput {
                            text: text.to_string(),
                            text_pair: pair.map(str::to_string),
                        }),
                        None => Err(usage(format!(
                            "a JSON line must be {{\"text\": ..., \"text_pair\": ...}}: {line}"
                        ))),
                    };
                }
                Ok(TextInput {
                    text: line,
                    text_pair: args.text_pair.clone(),
                })
            })
            .collect::<Result<_>>()?;
        let results = pipeline.run(&inputs, &options)?;
        if args.common.json {
            return write_json(&results);
        }
        let mut out = std::io::stdout().lock();
        for (input, result) in inputs.iter().zip(&results) {
            let shown = match &input.text_pair {
                Some(pair) => format!("{} | {}", input.text, pair),
                None => input.text.clone(),
            };
            writeln!(out, "> {}", one_line(&shown, 100))?;
            let rows: Vec<Vec<String>> = match result {
                ClassificationOutput::Best(best) => {
                    vec![vec![best.label.clone(), score(best.score)]]
                }
                ClassificationOutput::Ranked(ranked) => ranked
                    .iter()
                    .map(|entry| vec![entry.label.clone(), score(entry.score)])
                    .collect(),
            };
            write_table(&mut out, &["label", "score"], &rows)?;
        }
        Ok(())
    })
}

pub fn token_classification(args: &TokenClassificationArgs) -> Result<()> {
    let aggregation_strategy = args
        .aggregation_strategy
        .as_deref()
        .map(str::parse::<AggregationStrategy>)
        .transpose()?;
    let options = TokenClassificationOptions {
        aggregation_strategy,
        ignore_labels: args.ignore_labels.as_deref().map(parse_labels),
        stride: args.stride,
        batch_size: args.common.batch_size.unwrap_or(0),
    };
    let loaded = load(Task::TokenClassification, &args.common)?;
    let pipeline = loaded.token_classification().expect("built for the task");
    for_each_batch(&args.texts, &args.common, 1, |texts| {
        let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
        let results = pipeline.run(&borrowed, &options)?;
        if args.common.json {
            return write_json(&results);
        }
        let mut out = std::io::stdout().lock();
        for (text, entities) in texts.iter().zip(&results) {
            writeln!(out, "> {}", one_line(text, 100))?;
            let rows: Vec<Vec<String>> = entities
                .iter()
                .map(|entity: &Entity| {
                    vec![
                        entity.label().to_string(),
                        score(entity.score()),
                        format!("{}..{}", entity.start(), entity.end()),
                        entity.word().to_string(),
                    ]
                })
                .collect();
            write_table(&mut out, &["entity", "score", "chars", "word"], &rows)?;
        }
        Ok(())
    })
}

pub fn question_answering(args: &QuestionAnsweringArgs) -> Result<()> {
    let options = QuestionAnsweringOptions {
        top_k: args.top_k,
        doc_stride: args.doc_stride,
        max_answer_len: args.max_answer_len,
        max_seq_len: args.max_seq_len,
        max_question_len: args.max_question_len,
        handle_impossible_answer: args.handle_impossible_answer,
        align_to_words: args.align_to_words,
        batch_size: args.common.batch_size.unwrap_or(0),
    };
    let loaded = load(Task::QuestionAnswering, &args.common)?;
    let pipeline = loaded.question_answering().expect("built for the task");
    let answer = |inputs: Vec<QaInput>| -> Result<()> {
        let results = pipeline.run(&inputs, &options)?;
        if args.common.json {
            return write_json(&results);
        }
        let mut out = std::io::stdout().lock();
        for (input, result) in inputs.iter().zip(&results) {
            writeln!(out, "> {}", one_line(&input.question, 100))?;
            let answers = match result {
                QaOutput::One(answer) => std::slice::from_ref(answer),
                QaOutput::Many(answers) => answers.as_slice(),
            };
            let rows: Vec<Vec<String>> = answers
                .iter()
                .map(|answer| {
                    vec![
                        score(answer.score),
                        format!("{}..{}", answer.start, answer.end),
                        one_line(&answer.answer, 80),
                    ]
                })
                .collect();
            write_table(&mut out, &["score", "chars", "answer"], &rows)?;
        }
        Ok(())
    };
    match (&args.question, &args.context) {
        (Some(question), Some(context)) => answer(vec![QaInput {
            question: question.clone(),
            context: context.clone(),
        }]),
        _ => for_each_batch(&[], &args.common, 1, |lines| {
            let inputs = lines
                .iter()
                .map(|line| {
                    serde_json::from_str::<QaInput>(line).map_err(|error| {
                        usage(format!(
                            "each stdin line must be {{\"question\": ..., \"context\": ...}} ({error}): {}",
                            one_line(line, 80)
                        ))
                    })
                })
                .collect::<Result<_>>()?;
            answer(inputs)
        }),
    }
}

pub fn fill_mask(args: &FillMaskArgs) -> Result<()> {
    let options = FillMaskOptions {
        top_k: args.top_k,
        targets: args.targets.as_deref().map(parse_labels),
        batch_size: args.common.batch_size.unwrap_or(0),
    };
    let loaded = load(Task::FillMask, &args.common)?;
    let pipeline = loaded.fill_mask().expect("built for the task");
    for_each_batch(&args.texts, &args.common, 1, |texts| {
        let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
        let results = pipeline.run(&borrowed, &options)?;
        if args.common.json {
            return write_json(&results);
        }
        let mut out = std::io::stdout().lock();
        let rows_of = |predictions: &[FillMaskPrediction]| -> Vec<Vec<String>> {
            predictions
                .iter()
                .map(|prediction| {
                    vec![
                        score(prediction.score),
                        prediction.token_str.clone(),
                        one_line(&prediction.sequence, 80),
                    ]
                })
                .collect()
        };
        for (text, result) in texts.iter().zip(&results) {
            writeln!(out, "> {}", one_line(text, 100))?;
            match result {
                FillMaskOutput::Single(predictions) => {
                    write_table(
                        &mut out,
                        &["score", "token", "sequence"],
                        &rows_of(predictions),
                    )?;
                }
                FillMaskOutput::Multiple(per_mask) => {
                    for (index, predictions) in per_mask.iter().enumerate() {
                        writeln!(out, "  mask {}:", index + 1)?;
                        write_table(
                            &mut out,
                            &["score", "token", "sequence"],
                            &rows_of(predictions),
                        )?;
                    }
                }
            }
        }
        Ok(())
    })
}

pub fn feature_extraction(args: &FeatureExtractionArgs) -> Result<()> {
    let options = FeatureExtractionOptions {
        truncation: args.truncation,
        max_length: None,
        batch_size: args.common.batch_size.unwrap_or(0),
    };
    let loaded = load(Task::FeatureExtraction, &args.common)?;
    let pipeline = loaded.feature_extraction().expect("built for the task");
    for_each_batch(
        &args.texts,
        &args.common,
        args.common.batch_size.unwrap_or(1),
        |texts| {
            let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
            let results = pipeline.run(&borrowed, &options)?;
            if args.common.json {
                return write_json(&results);
            }
            let mut out = std::io::stdout().lock();
            for (text, Features(batch)) in texts.iter().zip(&results) {
                writeln!(out, "> {}", one_line(text, 100))?;
                let tokens = &batch[0];
                let width = tokens.first().map_or(0, Vec::len);
                writeln!(out, "  token embeddings: {} tokens × {width}", tokens.len())?;
                if let Some(first) = tokens.first() {
                    writeln!(out, "  first token: {}", preview(first))?;
                }
            }
            Ok(())
        },
    )
}

/// The first values of a vector, for the table output.
fn preview(values: &[f32]) -> String {
    let shown: Vec<String> = values.iter().take(4).map(|x| format!("{x:.4}")).collect();
    format!("[{}, …]", shown.join(", "))
}

pub fn sentence_embeddings(args: &SentenceEmbeddingsArgs) -> Result<()> {
    let options = args.sentence.options(args.common.batch_size);
    let loaded = load(Task::SentenceEmbeddings, &args.common)?;
    let pipeline = loaded.sentence_embeddings().expect("built for the task");
    for_each_batch(&args.texts, &args.common, 1, |texts| {
        let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
        let results = pipeline.run(&borrowed, &options)?;
        if args.common.json {
            return write_json(&results);
        }
        let mut out = std::io::stdout().lock();
        for (text, embedding) in texts.iter().zip(&results) {
            writeln!(out, "> {}", one_line(text, 100))?;
            writeln!(
                out,
                "  sentence embedding ({}): {}",
                embedding.len(),
                preview(embedding)
            )?;
        }
        Ok(())
    })
}

/// `{"source_sentence": ..., "sentences": [...]}`, one request.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SimilarityRequest {
    source_sentence: String,
    sentences: Vec<String>,
}

pub fn sentence_similarity(args: &SentenceSimilarityArgs) -> Result<()> {
    let options = args.sentence.options(args.common.batch_size);
    if args.source_sentence.is_some() == args.sentences.is_empty() {
        return Err(usage(if args.sentences.is_empty() {
            "--source-sentence needs SENTENCES to compare it with"
        } else {
            "SENTENCES need --source-sentence"
        }));
    }
    let loaded = load(Task::SentenceSimilarity, &args.common)?;
    let pipeline = loaded.sentence_embeddings().expect("built for the task");
    let answer = |requests: Vec<SimilarityRequest>| -> Result<()> {
        let mut results = Vec::with_capacity(requests.len());
        for request in &requests {
            let sentences: Vec<&str> = request.sentences.iter().map(String::as_str).collect();
            results.push(pipeline.similarity(&request.source_sentence, &sentences, &options)?);
        }
        if args.common.json {
            return write_json(&results);
        }
        let mut out = std::io::stdout().lock();
        for (request, scores) in requests.iter().zip(&results) {
            writeln!(out, "> {}", one_line(&request.source_sentence, 100))?;
            let rows: Vec<Vec<String>> = request
                .sentences
                .iter()
                .zip(&scores.0)
                .map(|(sentence, &value)| vec![score(f64::from(value)), one_line(sentence, 80)])
                .collect();
            write_table(&mut out, &["cosine", "sentence"], &rows)?;
        }
        Ok(())
    };
    match &args.source_sentence {
        Some(source) => answer(vec![SimilarityRequest {
            source_sentence: source.clone(),
            sentences: args.sentences.clone(),
        }]),
        None => for_each_batch(&[], &args.common, 1, |lines| {
            let requests = lines
                .iter()
                .map(|line| {
                    serde_json::from_str(line).map_err(|error| {
                        usage(format!(
                            "stdin: expected {{\"source_sentence\": text, \"sentences\": [text, ...]}} \
                             per line: {error}"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            answer(requests)
        }),
    }
}

pub fn zero_shot_classification(args: &ZeroShotArgs) -> Result<()> {
    let mut options = ZeroShotOptions::new(parse_labels(&args.candidate_labels));
    if let Some(template) = &args.hypothesis_template {
        options.hypothesis_template = template.clone();
    }
    options.multi_label = args.multi_label;
    options.batch_size = args.common.batch_size.unwrap_or(0);
    let loaded = load(Task::ZeroShotClassification, &args.common)?;
    let pipeline = loaded
        .zero_shot_classification()
        .expect("built for the task");
    for_each_batch(&args.texts, &args.common, 1, |texts| {
        let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
        let results = pipeline.run(&borrowed, &options)?;
        if args.common.json {
            return write_json(&results);
        }
        let mut out = std::io::stdout().lock();
        for result in &results {
            writeln!(out, "> {}", one_line(&result.sequence, 100))?;
            let rows: Vec<Vec<String>> = result
                .labels
                .iter()
                .zip(&result.scores)
                .map(|(label, value)| vec![label.clone(), score(*value)])
                .collect();
            write_table(&mut out, &["label", "score"], &rows)?;
        }
        Ok(())
    })
}

/// The generation settings text-generation and the encoder-decoder tasks share, as transformers'
/// `generate()` keyword arguments; each one given overrides the pipeline's and the model's.
#[derive(Debug, clap::Args)]
pub struct GenerationFlags {
    /// New tokens to generate at most.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Total length at most (prompt included for decoder-only models; max_new_tokens wins when
    /// both are set, as in transformers).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Length before an end-of-sequence token is allowed.
    #[arg(long)]
    pub min_length: Option<usize>,
    /// New tokens before an end-of-sequence token is allowed.
    #[arg(long)]
    pub min_new_tokens: Option<usize>,
    /// Sample (true) or decode greedily / by beam search (false); the default comes from the
    /// model's generation config.
    #[arg(long, action = ArgAction::Set)]
    pub do_sample: Option<bool>,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Sample among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample among the most likely tokens whose probabilities add up to p.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Drop tokens less likely than min_p times the most likely.
    #[arg(long)]
    pub min_p: Option<f64>,
    /// Typical sampling mass.
    #[arg(long)]
    pub typical_p: Option<f64>,
    /// Penalty (> 1 discourages) on tokens already present.
    #[arg(long)]
    pub repetition_penalty: Option<f64>,
    /// Never repeat an n-gram of this size.
    #[arg(long)]
    pub no_repeat_ngram_size: Option<usize>,
    /// Beam search with this many beams (1: greedy or sampling; the encoder-decoder pipelines'
    /// default is 4).
    #[arg(long)]
    pub num_beams: Option<usize>,
    /// Beam scores are divided by length ** length_penalty.
    #[arg(long)]
    pub length_penalty: Option<f64>,
    /// Beam search stopping: true, false or never.
    #[arg(long)]
    pub early_stopping: Option<String>,
    /// Sequences per input.
    #[arg(long)]
    pub num_return_sequences: Option<usize>,
    /// Seed of the sampler (the same seed gives the same text).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl GenerationFlags {
    /// Adds the flags that were given to `map`, as the pipelines' JSON options.
    fn put_into(&self, map: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
        use serde_json::{Value, json};
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                map.insert(key.to_string(), value);
            }
        };
        put("max_new_tokens", self.max_new_tokens.map(|v| json!(v)));
        put("max_length", self.max_length.map(|v| json!(v)));
        put("min_length", self.min_length.map(|v| json!(v)));
        put("min_new_tokens", self.min_new_tokens.map(|v| json!(v)));
        put("do_sample", self.do_sample.map(|v| json!(v)));
        put("temperature", self.temperature.map(|v| json!(v)));
        put("top_k", self.top_k.map(|v| json!(v)));
        put("top_p", self.top_p.map(|v| json!(v)));
        put("min_p", self.min_p.map(|v| json!(v)));
        put("typical_p", self.typical_p.map(|v| json!(v)));
        put(
            "repetition_penalty",
            self.repetition_penalty.map(|v| json!(v)),
        );
        put(
            "no_repeat_ngram_size",
            self.no_repeat_ngram_size.map(|v| json!(v)),
        );
        put("num_beams", self.num_beams.map(|v| json!(v)));
        put("length_penalty", self.length_penalty.map(|v| json!(v)));
        let early_stopping = match self.early_stopping.as_deref() {
            None => None,
            Some("true") => Some(json!(true)),
            Some("false") => Some(json!(false)),
            Some("never") => Some(json!("never")),
            Some(other) => {
                return Err(usage(format!(
                    "--early-stopping: expected true, false or never, found `{other}`"
                )));
            }
        };
        put("early_stopping", early_stopping);
        put(
            "num_return_sequences",
            self.num_return_sequences.map(|v| json!(v)),
        );
        put("seed", self.seed.map(|v| json!(v)));
        Ok(())
    }
}

/// `oxformer text-generation`.
#[derive(Debug, clap::Args)]
pub struct TextGenerationArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub generation: GenerationFlags,
    /// Print the continuation as it is produced (one prompt at a time, one sequence each).
    #[arg(long)]
    pub stream: bool,
    /// Stop when the text ends with one of these, comma-separated.
    #[arg(long)]
    pub stop_strings: Option<String>,
    /// The prompt followed by the continuation (true) or the continuation only (false).
    #[arg(long, action = ArgAction::Set)]
    pub return_full_text: Option<bool>,
    /// Token ids instead of text.
    #[arg(long)]
    pub return_tensors: bool,
    /// Text put before each prompt for the model, not shown.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Stop at this text (its tokens become the end-of-sequence ids).
    #[arg(long)]
    pub stop_sequence: Option<String>,
    /// Prompts (default: stdin, one per line).
    pub prompts: Vec<String>,
}

impl TextGenerationArgs {
    /// The options given, as transformers' keyword arguments.
    fn options(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        use serde_json::{Value, json};
        let mut map = serde_json::Map::new();
        self.generation.put_into(&mut map)?;
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                map.insert(key.to_string(), value);
            }
        };
        put(
            "stop_strings",
            self.stop_strings.as_deref().map(|v| json!(parse_labels(v))),
        );
        put("return_full_text", self.return_full_text.map(|v| json!(v)));
        put(
            "return_tensors",
            self.return_tensors.then_some(Value::Bool(true)),
        );
        put("prefix", self.prefix.as_ref().map(|v| json!(v)));
        put(
            "stop_sequence",
            self.stop_sequence.as_ref().map(|v| json!(v)),
        );
        Ok(map)
    }
}

pub fn text_generation(args: &TextGenerationArgs) -> Result<()> {
    use oxformer_pipelines::text_generation::{GeneratedSequence, TextGenerationPipeline};
    let json_options = args.options()?;
    if args.stream && (args.common.json || args.return_tensors) {
        return Err(usage(
            "--stream prints text; it cannot be combined with --json or --return-tensors",
        ));
    }
    let mut pipeline = TextGenerationPipeline::new(&model_folder(&args.common)?)?;
    if let Some(threads) = args.common.threads {
        pipeline.set_num_threads(threads)?;
    }
    let options = pipeline.options_from_json(&json_options)?;
    for_each_batch(&args.prompts, &args.common, 1, |prompts| {
        let mut out = std::io::stdout().lock();
        if args.stream {
            for prompt in &prompts {
                if options.return_full_text {
                    write!(out, "{prompt}")?;
                    out.flush()?;
                }
                for piece in pipeline.stream(prompt, &options)? {
                    write!(out, "{}", piece?.text)?;
                    out.flush()?;
                }
                writeln!(out)?;
            }
            return Ok(());
        }
        let results = pipeline.generate(&prompts, &options)?;
        if args.common.json {
            drop(out);
            return write_json(&results);
        }
        for (prompt, sequences) in prompts.iter().zip(&results) {
            writeln!(out, "> {}", one_line(prompt, 100))?;
            for sequence in sequences {
                match sequence {
                    GeneratedSequence::Text { generated_text } => {
                        writeln!(out, "{generated_text}")?
                    }
                    GeneratedSequence::Tokens {
                        generated_token_ids,
                    } => writeln!(out, "{generated_token_ids:?}")?,
                }
            }
        }
        Ok(())
    })
}

/// `oxformer summarization`, `translation`, `translation_XX_to_YY` and
/// `text2text-generation`: encoder-decoder models (T5, BART, Marian).
#[derive(Debug, clap::Args)]
pub struct Text2TextArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub generation: GenerationFlags,
    /// The task name when it is not the subcommand's (`translation_en_to_de`, set from the
    /// subcommand name).
    #[arg(long, hide = true)]
    pub task: Option<String>,
    /// Print the output as it is produced (greedy decoding or sampling: give --num-beams 1).
    #[arg(long)]
    pub stream: bool,
    /// Cut inputs longer than the model takes instead of refusing them.
    #[arg(long)]
    pub truncation: bool,
    /// Token ids instead of text.
    #[arg(long)]
    pub return_tensors: bool,
    /// Clean up tokenization spaces in the decoded text (default false, as transformers).
    #[arg(long)]
    pub clean_up_tokenization_spaces: bool,
    /// Inputs (default: stdin, one per line).
    pub texts: Vec<String>,
}

impl Text2TextArgs {
    /// The options given, as transformers' keyword arguments.
    fn options(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        use serde_json::{Value, json};
        let mut map = serde_json::Map::new();
        self.generation.put_into(&mut map)?;
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                map.insert(key.to_string(), value);
            }
        };
        put("truncation", self.truncation.then_some(Value::Bool(true)));
        put(
            "return_tensors",
            self.return_tensors.then_some(Value::Bool(true)),
        );
        put(
            "clean_up_tokenization_spaces",
            self.clean_up_tokenization_spaces
                .then_some(Value::Bool(true)),
        );
        put("batch_size", self.common.batch_size.map(|v| json!(v)));
        Ok(map)
    }
}

/// Runs one of the encoder-decoder tasks (`task` is the subcommand's name unless
/// `--task` names a translation pair).
pub fn text2text(task: &str, args: &Text2TextArgs) -> Result<()> {
    use oxformer_pipelines::text2text_generation::Text2TextGenerationPipeline;
    let task = args.task.as_deref().unwrap_or(task);
    let json_options = args.options()?;
    if args.stream && (args.common.json || args.return_tensors) {
        return Err(usage(
            "--stream prints text; it cannot be combined with --json or --return-tensors",
        ));
    }
    let mut pipeline = Text2TextGenerationPipeline::new(&args.common.model, task)?;
    if let Some(threads) = args.common.threads {
        pipeline.set_num_threads(threads)?;
    }
    let stream_options = if args.stream {
        Some(pipeline.options_from_json(&json_options)?)
    } else {
        None
    };
    let key_text = format!("{}_text", pipeline.return_name());
    let key_ids = format!("{}_token_ids", pipeline.return_name());
    for_each_batch(&args.texts, &args.common, 1, |texts| {
        let mut out = std::io::stdout().lock();
        if let Some(options) = &stream_options {
            for text in &texts {
                for piece in pipeline.stream(text, options)? {
                    write!(out, "{}", piece?)?;
                    out.flush()?;
                }
                writeln!(out)?;
            }
            return Ok(());
        }
        let inputs = serde_json::Value::from(texts.clone());
        let results = pipeline.call(&inputs, &json_options)?;
        let results = results.as_array().cloned().unwrap_or_default();
        if args.common.json {
            drop(out);
            return write_json(&results);
        }
        for (text, result) in texts.iter().zip(&results) {
            writeln!(out, "> {}", one_line(text, 100))?;
            let sequences = match result {
                serde_json::Value::Array(sequences) => sequences.clone(),
                single => vec![single.clone()],
            };
            for sequence in &sequences {
                if let Some(text) = sequence.get(&key_text).and_then(|v| v.as_str()) {
                    writeln!(out, "{text}")?;
                } else if let Some(ids) = sequence.get(&key_ids) {
                    writeln!(out, "{ids}")?;
                }
            }
        }
        Ok(())
    })
}
