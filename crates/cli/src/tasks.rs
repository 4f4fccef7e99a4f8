//! The pipeline subcommands: `oxformer <task> --model <DIR|ID> [options] [TEXT ...]`.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use clap::ArgAction;
use oxformer_pipelines::feature_extraction::{FeatureExtractionOptions, Features};
use oxformer_pipelines::fill_mask::{FillMaskOptions, FillMaskOutput, FillMaskPrediction};
use oxformer_pipelines::question_answering::{QaInput, QaOutput, QuestionAnsweringOptions};
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
    /// Model folder, or a model id in the local Hugging Face cache.
    #[arg(long)]
    pub model: String,
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

/// The arguments as given, or stdin's non-empty lines when there are none.
fn texts_or_stdin(texts: &[String]) -> Result<Vec<String>> {
    if !texts.is_empty() {
        return Ok(texts.to_vec());
    }
    let mut lines = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let line = line.trim_end_matches('\r');
        if !line.trim().is_empty() {
            lines.push(line.to_string());
        }
    }
    if lines.is_empty() {
        return Err(UsageError("no input: give TEXT arguments or lines on stdin".into()).into());
    }
    Ok(lines)
}

/// Loads the pipeline and sets its threads.
fn load(task: Task, common: &CommonArgs) -> Result<Pipeline> {
    let mut loaded = pipeline(task, &common.model)?;
    if let Some(threads) = common.threads {
        loaded.model().set_threads(threads)?;
    }
    Ok(loaded)
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
        batch_size: args.common.batch_size.unwrap_or(0),
    };
    let inputs: Vec<TextInput> = texts_or_stdin(&args.texts)?
        .into_iter()
        .map(|line| {
            if args.texts.is_empty() && line.trim_start().starts_with('{') {
                if let Ok(serde_json::Value::Object(object)) = serde_json::from_str(&line) {
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
            }
            Ok(TextInput {
                text: line,
                text_pair: args.text_pair.clone(),
            })
        })
        .collect::<Result<_>>()?;
    let loaded = load(Task::TextClassification, &args.common)?;
    let pipeline = loaded.text_classification().expect("built for the task");
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
            ClassificationOutput::Best(best) => vec![vec![best.label.clone(), score(best.score)]],
            ClassificationOutput::Ranked(ranked) => ranked
                .iter()
                .map(|entry| vec![entry.label.clone(), score(entry.score)])
                .collect(),
        };
        write_table(&mut out, &["label", "score"], &rows)?;
    }
    Ok(())
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
    let texts = texts_or_stdin(&args.texts)?;
    let loaded = load(Task::TokenClassification, &args.common)?;
    let pipeline = loaded.token_classification().expect("built for the task");
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
    let inputs: Vec<QaInput> = match (&args.question, &args.context) {
        (Some(question), Some(context)) => vec![QaInput {
            question: question.clone(),
            context: context.clone(),
        }],
        _ => texts_or_stdin(&[])?
            .iter()
            .map(|line| {
                serde_json::from_str::<QaInput>(line).map_err(|error| {
                    usage(format!(
                        "each stdin line must be {{\"question\": ..., \"context\": ...}} ({error}): {}",
                        one_line(line, 80)
                    ))
                })
            })
            .collect::<Result<_>>()?,
    };
    let loaded = load(Task::QuestionAnswering, &args.common)?;
    let pipeline = loaded.question_answering().expect("built for the task");
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
}

pub fn fill_mask(args: &FillMaskArgs) -> Result<()> {
    let options = FillMaskOptions {
        top_k: args.top_k,
        targets: args.targets.as_deref().map(parse_labels),
        batch_size: args.common.batch_size.unwrap_or(0),
    };
    let texts = texts_or_stdin(&args.texts)?;
    let loaded = load(Task::FillMask, &args.common)?;
    let pipeline = loaded.fill_mask().expect("built for the task");
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
}

pub fn feature_extraction(args: &FeatureExtractionArgs) -> Result<()> {
    let options = FeatureExtractionOptions {
        truncation: args.truncation,
        batch_size: args.common.batch_size.unwrap_or(0),
    };
    let texts = texts_or_stdin(&args.texts)?;
    let loaded = load(Task::FeatureExtraction, &args.common)?;
    let pipeline = loaded.feature_extraction().expect("built for the task");
    let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
    let results = pipeline.run(&borrowed, &options)?;
    if args.common.json {
        return write_json(&results);
    }
    let mut out = std::io::stdout().lock();
    let preview = |values: &[f32]| -> String {
        let shown: Vec<String> = values.iter().take(4).map(|x| format!("{x:.4}")).collect();
        format!("[{}, …]", shown.join(", "))
    };
    for (text, features) in texts.iter().zip(&results) {
        writeln!(out, "> {}", one_line(text, 100))?;
        match features {
            Features::Tokens(batch) => {
                let tokens = &batch[0];
                let width = tokens.first().map_or(0, Vec::len);
                writeln!(out, "  token embeddings: {} tokens × {width}", tokens.len())?;
                if let Some(first) = tokens.first() {
                    writeln!(out, "  first token: {}", preview(first))?;
                }
            }
            Features::Sentence(embedding) => {
                writeln!(
                    out,
                    "  sentence embedding ({}): {}",
                    embedding.len(),
                    preview(embedding)
                )?;
            }
        }
    }
    Ok(())
}

pub fn zero_shot_classification(args: &ZeroShotArgs) -> Result<()> {
    let mut options = ZeroShotOptions::new(parse_labels(&args.candidate_labels));
    if let Some(template) = &args.hypothesis_template {
        options.hypothesis_template = template.clone();
    }
    options.multi_label = args.multi_label;
    options.batch_size = args.common.batch_size.unwrap_or(0);
    let texts = texts_or_stdin(&args.texts)?;
    let loaded = load(Task::ZeroShotClassification, &args.common)?;
    let pipeline = loaded
        .zero_shot_classification()
        .expect("built for the task");
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
}
