//! The text2text-generation, summarization and translation pipelines, as
//! transformers/pipelines/text2text_generation.py: each input (after the task's `prefix`) goes to
//! an encoder-decoder model (T5, BART, Marian), [`Generation`] decodes, and the output is decoded
//! without special tokens (`[{"summary_text": ...}]`, `translation_text`, `generated_text`).
//!
//! ```no_run
//! # fn main() -> oxformer_pipelines::Result<()> {
//! use oxformer_pipelines::text2text_generation::Text2TextGenerationPipeline;
//!
//! let pipeline = Text2TextGenerationPipeline::from_folder(
//!     "fixtures/models/t5".as_ref(),
//!     "translation_en_to_de",
//! )?;
//! let mut options = pipeline.default_options();
//! options.generation.max_new_tokens = Some(20);
//! let results = pipeline.run(&["How old are you?"], &options)?;
//! println!("{results:?}");
//! # Ok(())
//! # }
//! ```
//!
//! The decoding settings resolve as in transformers 4.57 (`Pipeline.__init__` and
//! `GenerationMixin._prepare_generation_config`):
//! 1. the pipeline's own defaults, `max_new_tokens` 256 and `num_beams` 4;
//! 2. the model's `generation_config.json` for every option still at transformers' global
//!    default; then, when the pipeline's `max_new_tokens` is untouched and the model sets a
//!    `max_length` other than 20, `max_new_tokens` is dropped so that `max_length` holds;
//! 3. `task_specific_params[task]` (its `prefix`, and the settings it names; a `max_length`
//!    here does not drop `max_new_tokens`, which then wins, as in transformers);
//! 4. the call's options.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use oxformer_models::bart::BartForConditionalGeneration;
use oxformer_models::marian::MarianMTModel;
use oxformer_models::seq2seq::Seq2SeqCache;
use oxformer_models::t5::T5ForConditionalGeneration;
use oxformer_models::{CommonConfig, ModelConfig};
use oxformer_tensor::ThreadPool;
use oxformer_tokenizer::{EncodeOptions, Tokenizer, Truncation};
use serde_json::{Map, Value};

use crate::generation::{Generation, GenerationConfig, Generative, Prompts, TokenStream};
use crate::{Error, Result, Task};

/// An encoder-decoder model behind the engine's trait.
pub type Seq2SeqModel = dyn Generative<Cache = Seq2SeqCache>;

/// Inputs per padded run when the options leave it at 0.
const DEFAULT_BATCH_SIZE: usize = 8;

/// One generated sequence: its text, or its token ids (`return_tensors`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Generated {
    /// `{"<name>_text": ...}`: decoded without special tokens.
    Text(String),
    /// `{"<name>_token_ids": [...]}`: the decoder's ids, its start token first.
    TokenIds(Vec<u32>),
}

impl Generated {
    /// As transformers returns it, with the task's key (`summary`, `translation`,
    /// `generated`).
    pub fn to_json(&self, return_name: &str) -> Value {
        let mut record = Map::new();
        match self {
            Self::Text(text) => {
                record.insert(format!("{return_name}_text"), Value::from(text.as_str()));
            }
            Self::TokenIds(ids) => {
                record.insert(format!("{return_name}_token_ids"), Value::from(ids.clone()));
            }
        }
        Value::Object(record)
    }
}

/// The pipeline's options: decoding ([`GenerationConfig`]) and the pipeline's own.
#[derive(Clone, Debug, PartialEq)]
pub struct Text2TextOptions {
    /// How to decode; start from [`Text2TextGenerationPipeline::default_options`].
    pub generation: GenerationConfig,
    /// `return_tensors` (false): token ids instead of text.
    pub return_tensors: bool,
    /// `clean_up_tokenization_spaces` (false in these pipelines' output).
    pub clean_up_tokenization_spaces: bool,
    /// `truncation` (false): cut inputs longer than the model takes instead of refusing them.
    pub truncation: bool,
    /// Inputs per padded run (0: 8).
    pub batch_size: usize,
}

/// The pipeline option names besides [`crate::generation::OPTION_NAMES`].
pub const PIPELINE_OPTION_NAMES: [&str; 9] = [
    "return_tensors",
    "return_text",
    "return_type",
    "clean_up_tokenization_spaces",
    "truncation",
    "stop_sequence",
    "src_lang",
    "tgt_lang",
    "batch_size",
];

/// An encoder-decoder model, its tokenizer and the task's settings.
pub struct Text2TextGenerationPipeline {
    task: Task,
    /// The name `task_specific_params` was looked up with (`translation_en_to_de`, ...).
    task_name: String,
    model: Box<Seq2SeqModel>,
    tokenizer: Tokenizer,
    config: ModelConfig,
    prefix: Option<String>,
    generation_config: GenerationConfig,
    threads: Option<ThreadPool>,
    /// Whether the over-long input warning was given (once per pipeline, as transformers'
    /// tokenizer gives it once).
    warned_long_input: AtomicBool,
}

impl Text2TextGenerationPipeline {
    /// Loads a model folder, or a model id found in the local Hugging Face cache (see
    /// `oxformer_nn::hub::resolve_model`), for `task`: `text2text-generation`,
    /// `summarization`, `translation` or `translation_XX_to_YY`.
    ///
    /// # Errors
    /// When the model cannot be found, or as [`Text2TextGenerationPipeline::from_folder`].
    pub fn new(model: &str, task: &str) -> Result<Self> {
        let dir = oxformer_nn::hub::resolve_model(model).map_err(Error::Model)?;
        Self::from_folder(&dir, task)
    }

    /// Loads an encoder-decoder folder (T5, BART, Marian: `config.json`, weights, tokenizer
    /// files, `generation_config.json` if any) for `task`.
    ///
    /// Plain `translation` takes the first `translation_*` entry of `task_specific_params`, as
    /// transformers' `pipeline()` does (entries in name order).
    ///
    /// # Errors
    /// A task that is not one of these pipelines'; a model that is not encoder-decoder or whose
    /// `model_type` oxformer does not support (named); a missing or invalid config, weights or
    /// tokenizer.
    pub fn from_folder(dir: &Path, task: &str) -> Result<Self> {
        let parsed: Task = task.parse()?;
        if !matches!(
            parsed,
            Task::Text2TextGeneration | Task::Summarization | Task::Translation
        ) {
            return Err(Error::input(
                parsed.name(),
                format!("{task} is not an encoder-decoder task"),
            ));
        }
        let config = ModelConfig::from_folder(dir)?;
        let model: Box<Seq2SeqModel> = match &config {
            ModelConfig::T5(_) => Box::new(T5ForConditionalGeneration::from_folder(dir)?),
            ModelConfig::Bart(_) => Box::new(BartForConditionalGeneration::from_folder(dir)?),
            ModelConfig::Marian(_) => Box::new(MarianMTModel::from_folder(dir)?),
            other => {
                return Err(Error::input(
                    parsed.name(),
                    format!(
                        "{} has model_type `{}`; {task} takes an encoder-decoder model (t5, bart, marian)",
                        dir.display(),
                        other.model_type()
                    ),
                ));
            }
        };
        let tokenizer = Tokenizer::from_folder(dir)?;
        let model_generation = GenerationConfig::from_folder(dir)?;
        Self::from_parts(parsed, task, model, tokenizer, config, &model_generation)
    }

    /// A pipeline over a loaded model, with its config and the generation config of its folder
    /// (`model.generation_config`); `task` as [`Text2TextGenerationPipeline::from_folder`].
    ///
    /// # Errors
    /// A model that is not encoder-decoder; bad values in `task_specific_params`.
    pub fn from_parts(
        task: Task,
        task_name: &str,
        model: Box<Seq2SeqModel>,
        tokenizer: Tokenizer,
        config: ModelConfig,
        model_generation: &GenerationConfig,
    ) -> Result<Self> {
        if !model.is_encoder_decoder() {
            return Err(Error::input(
                task.name(),
                "the model is decoder-only: use text-generation",
            ));
        }
        let common = config.common();
        let task_name = if task == Task::Translation && task_name == "translation" {
            // the first translation_* entry, else plain `translation`
            common
                .task_specific_params
                .keys()
                .find(|key| key.starts_with("translation"))
                .cloned()
                .unwrap_or_else(|| task_name.to_string())
        } else {
            task_name.to_string()
        };
        let (generation_config, prefix) = resolve_settings(
            common,
            &task_name,
            model_generation,
            tokenizer.pad_token_id(),
        )?;
        Ok(Self {
            task,
            task_name,
            model,
            tokenizer,
            config,
            prefix,
            generation_config,
            threads: None,
            warned_long_input: AtomicBool::new(false),
        })
    }

    /// The task.
    pub fn task(&self) -> Task {
        self.task
    }

    /// The task name `task_specific_params` was read with (`translation_en_to_de`, ...).
    pub fn task_name(&self) -> &str {
        &self.task_name
    }

    /// The key of the results: `summary`, `translation` or `generated`.
    pub fn return_name(&self) -> &'static str {
        match self.task {
            Task::Summarization => "summary",
            Task::Translation => "translation",
            _ => "generated",
        }
    }

    /// The text put before every input (`prefix`, from the config or the task's params).
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The model.
    pub fn model(&self) -> &Seq2SeqModel {
        &*self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model's config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The resolved decoding defaults (see the module's documentation).
    pub fn generation_config(&self) -> &GenerationConfig {
        &self.generation_config
    }

    /// Runs every later call on `threads` threads (0: one per CPU); results do not depend on
    /// it.
    ///
    /// # Errors
    /// When the operating system refuses the threads.
    pub fn set_num_threads(&mut self, threads: usize) -> Result<()> {
        self.threads = Some(ThreadPool::new(threads)?);
        Ok(())
    }

    /// The defaults: [`Text2TextGenerationPipeline::generation_config`], text without
    /// clean-up, no truncation.
    pub fn default_options(&self) -> Text2TextOptions {
        Text2TextOptions {
            generation: self.generation_config.clone(),
            return_tensors: false,
            clean_up_tokenization_spaces: false,
            truncation: false,
            batch_size: 0,
        }
    }

    /// Options from JSON, as `pipeline(task)(inputs, **options)` takes them: the pipeline's own
    /// ([`PIPELINE_OPTION_NAMES`]; `return_text`, `src_lang` and `tgt_lang` are accepted and, as
    /// for these tokenizers in transformers, change nothing) and generate()'s.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an unknown option or a value of the wrong type.
    pub fn options_from_json(&self, options: &Map<String, Value>) -> Result<Text2TextOptions> {
        let task = self.task.name();
        let mut result = self.default_options();
        let mut generation = Map::new();
        let boolean = |option: &'static str, value: &Value| {
            value.as_bool().ok_or_else(|| {
                Error::option(task, option, format!("expected true or false, got {value}"))
            })
        };
        for (key, value) in options {
            match key.as_str() {
                "return_tensors" => result.return_tensors = boolean("return_tensors", value)?,
                "return_text" => {
                    boolean("return_text", value)?;
                }
                "return_type" => {
                    return Err(Error::option(
                        task,
                        "return_type",
                        "use return_tensors (true: token ids, false: text)",
                    ));
                }
                "clean_up_tokenization_spaces" => {
                    result.clean_up_tokenization_spaces =
                        boolean("clean_up_tokenization_spaces", value)?
                }
                "truncation" => {
                    result.truncation = match value {
                        Value::Bool(flag) => *flag,
                        Value::String(strategy)
                            if matches!(
                                strategy.as_str(),
                                "longest_first" | "only_first" | "do_not_truncate"
                            ) =>
                        {
                            strategy != "do_not_truncate"
                        }
                        other => {
                            return Err(Error::option(
                                task,
                                "truncation",
                                format!("expected true, false or a strategy name, got {other}"),
                            ));
                        }
                    }
                }
                "stop_sequence" => {
                    let text = value.as_str().ok_or_else(|| {
                        Error::option(
                            task,
                            "stop_sequence",
                            format!("expected a string, got {value}"),
                        )
                    })?;
                    let ids = self.tokenizer.encode(text, &plain_encoding())?;
                    // transformers: the first token of the stop sequence ends generation
                    let first = ids.ids().first().copied().ok_or_else(|| {
                        Error::option(task, "stop_sequence", "the stop sequence has no tokens")
                    })?;
                    generation.insert("eos_token_id".into(), Value::from(first));
                }
                "src_lang" | "tgt_lang" => {
                    if !value.is_string() && !value.is_null() {
                        return Err(Error::option(
                            task,
                            "src_lang",
                            format!("expected a language code, got {value}"),
                        ));
                    }
                }
                "batch_size" => {
                    result.batch_size = value.as_u64().ok_or_else(|| {
                        Error::option(
                            task,
                            "batch_size",
                            format!("expected a non-negative integer, got {value}"),
                        )
                    })? as usize
                }
                _ => {
                    generation.insert(key.clone(), value.clone());
                }
            }
        }
        result
            .generation
            .update(&generation)
            .map_err(|error| retask(error, task))?;
        Ok(result)
    }

    /// Generates for each input; one list of `num_return_sequences` results per input.
    /// Inputs run `batch_size` at a time, right-padded and masked in one decoding run each;
    /// the results equal those of one input at a time.
    ///
    /// # Errors
    /// An empty input, an input longer than the model takes without `truncation`, invalid
    /// options, more decoder positions than the model has.
    pub fn run<S: AsRef<str> + Sync>(
        &self,
        inputs: &[S],
        options: &Text2TextOptions,
    ) -> Result<Vec<Vec<Generated>>> {
        let encoded = inputs
            .iter()
            .map(|input| self.encode(input.as_ref(), options.truncation))
            .collect::<Result<Vec<_>>>()?;
        let batch_size = if options.batch_size == 0 {
            DEFAULT_BATCH_SIZE
        } else {
            options.batch_size
        };
        let mut results = Vec::with_capacity(inputs.len());
        for chunk in encoded.chunks(batch_size) {
            let sequences = self.in_pool(|| self.generate(chunk, &options.generation))?;
            for group in sequences {
                results.push(
                    group
                        .into_iter()
                        .map(|sequence| self.postprocess(sequence, options))
                        .collect::<Result<Vec<_>>>()?,
                );
            }
        }
        Ok(results)
    }

    /// Runs the pipeline as transformers' `pipeline(task)(inputs, **options)`: one text gives
    /// the list of its results; a list of texts gives one result each when each has one,
    /// otherwise one list per text.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for inputs that are not a text or a list of texts; otherwise as
    /// [`Text2TextGenerationPipeline::options_from_json`] and [`Text2TextGenerationPipeline::run`].
    pub fn call(&self, inputs: &Value, options: &Map<String, Value>) -> Result<Value> {
        let task = self.task.name();
        let options = self.options_from_json(options)?;
        let name = self.return_name();
        let list = |results: &[Generated]| {
            Value::Array(results.iter().map(|result| result.to_json(name)).collect())
        };
        match inputs {
            Value::String(text) => {
                let results = self.run(&[text.as_str()], &options)?;
                Ok(list(&results[0]))
            }
            Value::Array(items) => {
                let texts = items
                    .iter()
                    .map(|item| {
                        item.as_str().ok_or_else(|| {
                            Error::input(task, format!("expected a text, got {item}"))
                        })
                    })
                    .collect::<Result<Vec<&str>>>()?;
                let results = self.run(&texts, &options)?;
                Ok(if results.iter().all(|group| group.len() == 1) {
                    Value::Array(results.iter().map(|group| group[0].to_json(name)).collect())
                } else {
                    Value::Array(results.iter().map(|group| list(group)).collect())
                })
            }
            other => Err(Error::input(
                task,
                format!("expected a text or a list of texts, got {other}"),
            )),
        }
    }

    /// Streams the decoder's tokens of one input as they come (greedy decoding or sampling;
    /// one sequence), as text pieces whose concatenation is the decoded output.
    ///
    /// # Errors
    /// As [`Text2TextGenerationPipeline::run`]; beam search and `num_return_sequences` above 1
    /// are refused.
    pub fn stream<'a>(
        &'a self,
        input: &str,
        options: &Text2TextOptions,
    ) -> Result<Text2TextStream<'a>> {
        let task = self.task.name();
        if options.generation.num_return_sequences != 1 {
            return Err(Error::option(
                task,
                "num_return_sequences",
                "streaming produces one sequence",
            ));
        }
        let ids = self.encode(input, options.truncation)?;
        let prompts = Prompts::right_padded(&[ids], self.pad_id(&options.generation))?;
        let tokens = Generation::new(&*self.model, &prompts, &options.generation)
            .map_err(|error| retask(error, task))?
            .tokens()
            .map_err(|error| retask(error, task))?;
        Ok(Text2TextStream {
            tokens,
            threads: self.threads.as_ref(),
            tokenizer: &self.tokenizer,
            generated: Vec::new(),
            shown: 0,
            done: false,
        })
    }

    fn in_pool<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.threads {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }

    fn pad_id(&self, config: &GenerationConfig) -> u32 {
        self.tokenizer
            .pad_token_id()
            .or(config.pad_token_id)
            .unwrap_or(0)
    }

    /// The most tokens the encoder can take: its position embeddings (BART, Marian); T5's
    /// relative positions have no limit.
    fn position_limit(&self) -> usize {
        match &self.config {
            ModelConfig::Bart(config) => config.max_position_embeddings,
            ModelConfig::Marian(config) => config.max_position_embeddings,
            _ => usize::MAX,
        }
    }

    /// The length `truncation` cuts an input to: the tokenizer's `model_max_length`, capped by
    /// the encoder's positions (as the encoder pipelines).
    fn max_input_length(&self) -> usize {
        let positions = self.position_limit();
        self.tokenizer
            .model_max_length()
            .map_or(positions, |limit| limit.min(positions))
    }

    /// `prefix + input` with the tokenizer's special tokens; cut to the model's limit with
    /// `truncation`. Without it, an input beyond the encoder's positions is an error, and one
    /// beyond the tokenizer's `model_max_length` only (a T5 input over 512 tokens) runs whole
    /// with a warning on stderr, as transformers' tokenizer warns and its T5 runs it.
    fn encode(&self, input: &str, truncation: bool) -> Result<Vec<u32>> {
        let task = self.task.name();
        if input.is_empty() {
            return Err(Error::input(task, "the input text is empty"));
        }
        let text = format!("{}{input}", self.prefix.as_deref().unwrap_or(""));
        let max_length = self.max_input_length();
        let limited = max_length != usize::MAX;
        let options = EncodeOptions {
            truncation: if truncation && limited {
                Truncation::LongestFirst
            } else {
                Truncation::None
            },
            max_length: (truncation && limited).then_some(max_length),
            ..EncodeOptions::default()
        };
        let encoding = self.tokenizer.encode(text.as_str(), &options)?;
        let ids = encoding.ids().to_vec();
        let positions = self.position_limit();
        if ids.len() > positions {
            return Err(Error::input(
                task,
                format!(
                    "the input has {} tokens but the model takes at most {positions}; \
                     ask for truncation to cut it",
                    ids.len()
                ),
            ));
        }
        if ids.len() > max_length && !self.warned_long_input.swap(true, Ordering::Relaxed) {
            eprintln!(
                "{task}: the input has {} tokens, more than the tokenizer's model_max_length \
                 {max_length}; running it whole, as transformers does (ask for truncation to \
                 cut it)",
                ids.len()
            );
        }
        if ids.is_empty() {
            return Err(Error::input(
                task,
                format!("the input {input:?} has no tokens"),
            ));
        }
        Ok(ids)
    }

    /// One padded run over `inputs`; per input, its `num_return_sequences` decoder sequences,
    /// each cut after the longest of its group (what one input alone gives).
    fn generate(
        &self,
        inputs: &[Vec<u32>],
        config: &GenerationConfig,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        let task = self.task.name();
        let prompts = Prompts::right_padded(inputs, self.pad_id(config))?;
        let output = Generation::new(&*self.model, &prompts, config)
            .and_then(|generation| generation.run())
            .map_err(|error| retask(error, task))?;
        let start = output.prompt_length;
        let per_input = output.sequences.len() / inputs.len();
        let eos = &config.eos_token_id;
        Ok(output
            .sequences
            .chunks(per_input)
            .map(|group| {
                // a sequence ends at its first end-of-sequence token (fill follows it)
                let end = |sequence: &Vec<u32>| {
                    sequence[start..]
                        .iter()
                        .position(|token| eos.contains(token))
                        .map_or(sequence.len(), |index| start + index + 1)
                };
                let length = group.iter().map(end).max().unwrap_or(start);
                group
                    .iter()
                    .map(|sequence| sequence[..length].to_vec())
                    .collect()
            })
            .collect())
    }

    fn postprocess(&self, sequence: Vec<u32>, options: &Text2TextOptions) -> Result<Generated> {
        if options.return_tensors {
            return Ok(Generated::TokenIds(sequence));
        }
        Ok(Generated::Text(self.tokenizer.decode(
            &sequence,
            true,
            Some(options.clean_up_tokenization_spaces),
        )?))
    }
}

/// The decoding settings of a pipeline (steps 1–3 of the module's documentation, and
/// generate()'s own fill from the model's defaults), and its `prefix`.
fn resolve_settings(
    common: &CommonConfig,
    task_name: &str,
    model_generation: &GenerationConfig,
    tokenizer_pad: Option<u32>,
) -> Result<(GenerationConfig, Option<String>)> {
    let pipeline_default_new_tokens = 256;
    let mut config = GenerationConfig {
        max_new_tokens: Some(pipeline_default_new_tokens),
        num_beams: 4,
        ..GenerationConfig::default()
    };
    config.fill_from_model(model_generation);
    if config.max_new_tokens == Some(pipeline_default_new_tokens)
        && config.max_length.is_some_and(|length| length != 20)
    {
        config.max_new_tokens = None;
    }
    let mut prefix = common.prefix.clone();
    if let Some(params) = common.task_specific_params.get(task_name) {
        let mut params = params.clone();
        if let Some(value) = params.remove("prefix") {
            prefix = value.as_str().map(str::to_string);
        }
        config.update_known(&params)?;
    }
    if config.pad_token_id.is_none() {
        config.pad_token_id = tokenizer_pad;
    }
    // generate() fills the model's defaults again under the pipeline's config
    config.fill_from_model(model_generation);
    Ok((config, prefix))
}

/// The same error, said of `task` instead of the engine's text-generation.
fn retask(error: Error, task: &'static str) -> Error {
    match error {
        Error::InvalidOption { option, reason, .. } => Error::InvalidOption {
            task,
            option,
            reason,
        },
        Error::InvalidInput { reason, .. } => Error::InvalidInput { task, reason },
        other => other,
    }
}

fn plain_encoding() -> EncodeOptions {
    EncodeOptions {
        add_special_tokens: false,
        ..EncodeOptions::default()
    }
}

/// The text of a generation as it is produced; see [`Text2TextGenerationPipeline::stream`].
pub struct Text2TextStream<'a> {
    tokens: TokenStream<'a, Seq2SeqModel>,
    threads: Option<&'a ThreadPool>,
    tokenizer: &'a Tokenizer,
    generated: Vec<u32>,
    /// Bytes of the decoded output already returned.
    shown: usize,
    done: bool,
}

impl Iterator for Text2TextStream<'_> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let tokens = &mut self.tokens;
        let next = match self.threads {
            Some(pool) => pool.install(|| tokens.next()),
            None => tokens.next(),
        };
        let step = match next {
            Some(Ok(step)) => Some(step[0]),
            Some(Err(error)) => {
                self.done = true;
                return Some(Err(error));
            }
            None => {
                self.done = true;
                None
            }
        };
        if let Some(token) = step {
            self.generated.push(token);
        }
        let text = match self.tokenizer.decode(&self.generated, true, Some(false)) {
            Ok(text) => text,
            Err(error) => return Some(Err(error.into())),
        };
        // hold back an incomplete character (U+FFFD) until the run ends
        let complete = step.is_none() || !text.ends_with('\u{FFFD}');
        let piece = if complete && text.len() >= self.shown && text.is_char_boundary(self.shown) {
            let piece = text[self.shown..].to_string();
            self.shown = text.len();
            piece
        } else {
            String::new()
        };
        if step.is_none() && piece.is_empty() {
            return None;
        }
        Some(Ok(piece))
    }
}
