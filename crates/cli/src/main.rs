//! `oxformer`: HF transformers' pipelines from the shell.
//!
//! `oxformer <task> --model <DIR|ID> [task options] [TEXT ...]`; with no TEXT, stdin gives one
//! input per line. `--json` prints one JSON value per input per line with the keys and value
//! types transformers' pipeline returns. Exit status: 0 on success, 2 for bad usage or input,
//! 1 for other failures; messages go to stderr.

mod bench;
mod serve;
mod table;
mod tasks;

use std::fmt;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "oxformer",
    version,
    about = "HF transformers' pipelines, in pure Rust, on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Classify texts (or pairs) with a *ForSequenceClassification model.
    #[command(visible_alias = "sentiment-analysis")]
    TextClassification(tasks::TextClassificationArgs),
    /// Label each token (named entities) with a *ForTokenClassification model.
    #[command(visible_alias = "ner")]
    TokenClassification(tasks::TokenClassificationArgs),
    /// Find the answer to a question in a context with a *ForQuestionAnswering model.
    QuestionAnswering(tasks::QuestionAnsweringArgs),
    /// Predict the masked token with a *ForMaskedLM model.
    FillMask(tasks::FillMaskArgs),
    /// Token embeddings (the last hidden state), as transformers' pipeline gives them.
    FeatureExtraction(tasks::FeatureExtractionArgs),
    /// Sentence embeddings of a sentence-transformers folder, as its encode() gives them.
    SentenceEmbeddings(tasks::SentenceEmbeddingsArgs),
    /// Cosine scores of a source sentence against others (sentence-transformers folder).
    SentenceSimilarity(tasks::SentenceSimilarityArgs),
    /// Classify texts into labels chosen at run time with an NLI model.
    ZeroShotClassification(tasks::ZeroShotArgs),
    /// Continue prompts with a causal language model (GPT-2).
    TextGeneration(Box<tasks::TextGenerationArgs>),
    /// Summarize texts with an encoder-decoder model (T5, BART).
    Summarization(Box<tasks::Text2TextArgs>),
    /// Translate texts with an encoder-decoder model (Marian, T5); also
    /// `translation_XX_to_YY` (e.g. translation_en_to_de, for T5's task prefixes).
    Translation(Box<tasks::Text2TextArgs>),
    /// Generate text from text with an encoder-decoder model (T5, BART, Marian).
    #[command(name = "text2text-generation")]
    Text2TextGeneration(Box<tasks::Text2TextArgs>),
    /// Serve the model over HTTP: TEI, HF Inference (`POST /`), TGI and OpenAI routes.
    Serve(Box<serve::ServeArgs>),
    /// Time the forward pass (or greedy generation) of a model on random ids.
    Bench(bench::BenchArgs),
}

/// A mistake in how oxformer was called or in its input: exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// 2 for the caller's mistakes (usage, input, options, a model that is not there), else 1.
fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.is::<UsageError>() {
            return 2;
        }
        if let Some(error) = cause.downcast_ref::<oxformer_pipelines::Error>() {
            return if error.is_user_error() { 2 } else { 1 };
        }
    }
    1
}

/// The command line with `translation_XX_to_YY` (transformers' task name, not a fixed
/// subcommand) read as `translation --task translation_XX_to_YY`.
fn arguments() -> Vec<String> {
    let mut arguments: Vec<String> = std::env::args().collect();
    if let Some(task) = arguments.get(1).cloned() {
        let parts: Vec<&str> = task.split('_').collect();
        if let ["translation", from, "to", to] = parts.as_slice()
            && !from.is_empty()
            && !to.is_empty()
        {
            arguments.splice(1..2, ["translation".to_string(), "--task".into(), task]);
        }
    }
    arguments
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(arguments()) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match &cli.command {
        Command::TextClassification(args) => tasks::text_classification(args),
        Command::TokenClassification(args) => tasks::token_classification(args),
        Command::QuestionAnswering(args) => tasks::question_answering(args),
        Command::FillMask(args) => tasks::fill_mask(args),
        Command::FeatureExtraction(args) => tasks::feature_extraction(args),
        Command::SentenceEmbeddings(args) => tasks::sentence_embeddings(args),
        Command::SentenceSimilarity(args) => tasks::sentence_similarity(args),
        Command::ZeroShotClassification(args) => tasks::zero_shot_classification(args),
        Command::TextGeneration(args) => tasks::text_generation(args),
        Command::Summarization(args) => tasks::text2text("summarization", args),
        Command::Translation(args) => tasks::text2text("translation", args),
        Command::Text2TextGeneration(args) => tasks::text2text("text2text-generation", args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("oxformer: {error:#}");
            ExitCode::from(exit_code(&error))
        }
    }
}
