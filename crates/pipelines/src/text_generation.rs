//! The text-generation pipeline, as transformers/pipelines/text_generation.py: a prompt (with
//! an optional `prefix`) is tokenized, continued by [`Generation`], and decoded; the output is
//! shaped like transformers' (`[{"generated_text": ...}]` per prompt, or
//! `[{"generated_token_ids": [...]}]` with `return_tensors`).
//!
//! ```no_run
//! # fn main() -> oxformer_pipelines::Result<()> {
//! use oxformer_pipelines::text_generation::TextGenerationPipeline;
//!
//! let pipeline = TextGenerationPipeline::from_folder("fixtures/models/gpt2".as_ref())?;
//! let mut options = pipeline.default_options();
//! options.generation.do_sample = false;
//! options.generation.max_new_tokens = Some(8);
//! let results = pipeline.generate(&["Hello, my dog is cute"], &options)?;
//! println!("{results:?}");
//! for piece in pipeline.stream("Once upon a time", &options)? {
//!     print!("{}", piece?.text);
//! }
//! # Ok(())
//! # }
//! ```

use std::path::Path;

use oxformer_models::gpt2::Gpt2LmHeadModel;
use oxformer_tensor::ThreadPool;
use oxformer_tokenizer::{EncodeOptions, Tokenizer};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::generation::{
    Generation, GenerationConfig, Generative, Prompts, TokenLogprobs, TokenStream, greedy_decode,
};
use crate::{Error, Result};

const TASK: &str = "text-generation";

/// One generated sequence, serialised with transformers' keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum GeneratedSequence {
    /// `{"generated_text": ...}`: the prompt and the continuation (`return_full_text`), or
    /// the continuation only.
    Text {
        /// The text.
        generated_text: String,
    },
    /// `{"generated_token_ids": [...]}` (`return_tensors`): prompt ids then new ids.
    Tokens {
        /// The ids.
        generated_token_ids: Vec<u32>,
    },
}

/// The pipeline's options: decoding ([`GenerationConfig`]) and the pipeline's own.
#[derive(Clone, Debug, PartialEq)]
pub struct TextGenerationOptions {
    /// How to decode; start from [`TextGenerationPipeline::generation_config`].
    pub generation: GenerationConfig,
    /// `return_full_text` (true): the prompt followed by the continuation; false: the
    /// continuation only.
    pub return_full_text: bool,
    /// `return_tensors` (false): token ids instead of text.
    pub return_tensors: bool,
    /// `prefix`: text put before each prompt for the model, not shown in the output.
    pub prefix: Option<String>,
    /// `clean_up_tokenization_spaces` (true in the pipeline's output).
    pub clean_up_tokenization_spaces: bool,
    /// `skip_special_tokens` (true).
    pub skip_special_tokens: bool,
    /// `stop_sequence`: its token ids become the end-of-sequence ids.
    pub stop_sequence: Option<String>,
}

/// The pipeline option names besides [`crate::generation::OPTION_NAMES`].
pub const PIPELINE_OPTION_NAMES: [&str; 6] = [
    "return_full_text",
    "return_tensors",
    "prefix",
    "clean_up_tokenization_spaces",
    "skip_special_tokens",
    "stop_sequence",
];

/// A piece of streamed text: the token just generated (none for the final flush) and the text
/// it completes (empty while a multi-byte character is still incomplete).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamPiece {
    /// The new token, if this piece comes from one.
    pub token_id: Option<u32>,
    /// New text; the pieces concatenated are the decoded continuation.
    pub text: String,
    /// With [`TextStream::with_logprobs`], the new token's log-probability and the most likely
    /// tokens of its step.
    pub logprobs: Option<TokenLogprobs>,
}

/// A causal language model and its tokenizer: any [`Generative`] decoder-only model (GPT-2 by
/// default, which [`TextGenerationPipeline::from_folder`] loads).
pub struct TextGenerationPipeline<M = Gpt2LmHeadModel> {
    model: M,
    tokenizer: Tokenizer,
    generation_config: GenerationConfig,
    threads: Option<ThreadPool>,
}

impl TextGenerationPipeline {
    /// Loads a model folder, or a model id found in the local Hugging Face cache (see
    /// `oxformer_nn::hub::resolve_model`); then as [`TextGenerationPipeline::from_folder`].
    ///
    /// # Errors
    /// When the model cannot be found, or as [`TextGenerationPipeline::from_folder`].
    pub fn new(model: &str) -> Result<Self> {
        let dir = oxformer_nn::hub::resolve_model(model).map_err(Error::Model)?;
        Self::from_folder(&dir)
    }

    /// Loads a GPT-2 folder (`config.json`, weights, tokenizer files, and
    /// `generation_config.json` if any).
    ///
    /// Decoding defaults are transformers' pipeline defaults (`max_new_tokens` 256,
    /// `do_sample` true, `temperature` 0.7), overridden by the folder's generation config, with
    /// `pad_token_id` from the tokenizer when the model has none.
    ///
    /// # Errors
    /// A missing or invalid config, weights or tokenizer.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let model = Gpt2LmHeadModel::from_folder(dir)?;
        let tokenizer = Tokenizer::from_folder(dir)?;
        let mut generation_config = Self::pipeline_defaults();
        generation_config.update_from_folder(dir)?;
        if generation_config.eos_token_id.is_empty() {
            generation_config.eos_token_id = model.config().common.eos_token_ids.clone();
        }
        Self::from_model(model, tokenizer, generation_config)
    }
}

impl<M: Generative> TextGenerationPipeline<M> {
    /// transformers' defaults of the pipeline (`max_new_tokens` 256, `do_sample` true,
    /// `temperature` 0.7), which a model's generation config then overrides.
    pub fn pipeline_defaults() -> GenerationConfig {
        GenerationConfig {
            max_new_tokens: Some(256),
            do_sample: true,
            temperature: 0.7,
            ..GenerationConfig::default()
        }
    }

    /// A pipeline over a loaded decoder-only model, its tokenizer and its decoding defaults
    /// (`pad_token_id` from the tokenizer when the config has none).
    ///
    /// # Errors
    /// An encoder-decoder model (those go to the text2text pipelines).
    pub fn from_model(
        model: M,
        tokenizer: Tokenizer,
        mut generation_config: GenerationConfig,
    ) -> Result<Self> {
        if model.is_encoder_decoder() {
            return Err(Error::input(
                TASK,
                "text-generation takes decoder-only models; encoder-decoder models run in \
                 text2text-generation, summarization or translation",
            ));
        }
        if generation_config.pad_token_id.is_none() {
            generation_config.pad_token_id = tokenizer.pad_token_id();
        }
        Ok(Self {
            model,
            tokenizer,
            generation_config,
            threads: None,
        })
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The decoding defaults.
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

    /// The defaults: [`TextGenerationPipeline::generation_config`], full text, no prefix.
    pub fn default_options(&self) -> TextGenerationOptions {
        TextGenerationOptions {
            generation: self.generation_config.clone(),
            return_full_text: true,
            return_tensors: false,
            prefix: None,
            clean_up_tokenization_spaces: true,
            skip_special_tokens: true,
            stop_sequence: None,
        }
    }

    /// Options from JSON, as `pipeline(...)(inputs, **options)` takes them: the pipeline's own
    /// ([`PIPELINE_OPTION_NAMES`]) and generate()'s.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an unknown option, a value of the wrong type, or
    /// `return_full_text` together with `return_tensors`.
    pub fn options_from_json(&self, options: &Map<String, Value>) -> Result<TextGenerationOptions> {
        let mut result = self.default_options();
        let mut generation = Map::new();
        let boolean = |option: &'static str, value: &Value| {
            value.as_bool().ok_or_else(|| {
                Error::option(TASK, option, format!("expected true or false, got {value}"))
            })
        };
        let text = |option: &'static str, value: &Value| match value {
            Value::Null => Ok(None),
            Value::String(text) => Ok(Some(text.clone())),
            other => Err(Error::option(
                TASK,
                option,
                format!("expected a string, got {other}"),
            )),
        };
        for (key, value) in options {
            match key.as_str() {
                "return_full_text" => result.return_full_text = boolean("return_full_text", value)?,
                "return_tensors" => result.return_tensors = boolean("return_tensors", value)?,
                "clean_up_tokenization_spaces" => {
                    result.clean_up_tokenization_spaces =
                        boolean("clean_up_tokenization_spaces", value)?
                }
                "skip_special_tokens" => {
                    result.skip_special_tokens = boolean("skip_special_tokens", value)?
                }
                "prefix" => result.prefix = text("prefix", value)?,
                "stop_sequence" => result.stop_sequence = text("stop_sequence", value)?,
                _ => {
                    generation.insert(key.clone(), value.clone());
                }
            }
        }
        if options.contains_key("return_full_text") && options.contains_key("return_tensors") {
            return Err(Error::option(
                TASK,
                "return_tensors",
                "`return_full_text` is mutually exclusive with `return_tensors`",
            ));
        }
        result.generation.update(&generation)?;
        Ok(result)
    }

    /// Continues each prompt; one list of `num_return_sequences` results per prompt, as
    /// transformers returns for a list of prompts (for one prompt, take the first list).
    ///
    /// # Errors
    /// An empty prompt, invalid options, a prompt plus new tokens longer than the model allows.
    pub fn generate<S: AsRef<str> + Sync>(
        &self,
        prompts: &[S],
        options: &TextGenerationOptions,
    ) -> Result<Vec<Vec<GeneratedSequence>>> {
        self.in_pool(|| {
            prompts
                .iter()
                .map(|prompt| self.generate_one(prompt.as_ref(), options))
                .collect()
        })
    }

    /// Runs the pipeline as transformers' `pipeline("text-generation")(inputs, **options)`:
    /// `inputs` a string (the result is a list of `{"generated_text": ...}`) or a list of
    /// strings (a list of such lists); `options` as [`TextGenerationPipeline::options_from_json`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for inputs that are not a string or a list of strings; otherwise
    /// as [`TextGenerationPipeline::options_from_json`] and [`TextGenerationPipeline::generate`].
    pub fn call(&self, inputs: &Value, options: &Map<String, Value>) -> Result<Value> {
        let options = self.options_from_json(options)?;
        match inputs {
            Value::String(prompt) => {
                let mut results = self.generate(&[prompt.as_str()], &options)?;
                to_json(&results.remove(0))
            }
            Value::Array(items) => {
                let prompts = items
                    .iter()
                    .map(|item| {
                        item.as_str().ok_or_else(|| {
                            Error::input(TASK, format!("expected a string prompt, got {item}"))
                        })
                    })
                    .collect::<Result<Vec<&str>>>()?;
                to_json(&self.generate(&prompts, &options)?)
            }
            other => Err(Error::input(
                TASK,
                format!("expected a string or a list of strings, got {other}"),
            )),
        }
    }

    fn in_pool<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.threads {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }

    /// The decoding config for one call: `stop_sequence` and `prefix` folded in as transformers.
    fn resolved_config(
        &self,
        options: &TextGenerationOptions,
        prefix_length: usize,
    ) -> Result<GenerationConfig> {
        let mut config = options.generation.clone();
        if let Some(stop) = &options.stop_sequence {
            let encoding = self.tokenizer.encode(stop.as_str(), &plain_encoding())?;
            config.eos_token_id = encoding.ids().to_vec();
        }
        if prefix_length > 0 && config.max_new_tokens.is_none() {
            let max_length = config.max_length.unwrap_or(20);
            config.max_length = Some(max_length + prefix_length);
        }
        if prefix_length > 0 && config.min_new_tokens.is_none() && config.min_length > 0 {
            config.min_length += prefix_length;
        }
        Ok(config)
    }

    /// The prompt's ids: `prefix + prompt`, without special tokens (the pipeline's default),
    /// and the length of the prefix alone.
    fn encode_prompt(
        &self,
        prompt: &str,
        options: &TextGenerationOptions,
    ) -> Result<(Vec<u32>, usize)> {
        if prompt.is_empty() && options.prefix.as_deref().unwrap_or("").is_empty() {
            return Err(Error::input(TASK, "the prompt is empty"));
        }
        let prefix = options.prefix.as_deref().unwrap_or("");
        let prefix_length = if prefix.is_empty() {
            0
        } else {
            self.tokenizer.encode(prefix, &plain_encoding())?.len()
        };
        let text = format!("{prefix}{prompt}");
        let ids = self
            .tokenizer
            .encode(text.as_str(), &plain_encoding())?
            .ids()
            .to_vec();
        if ids.is_empty() {
            return Err(Error::input(
                TASK,
                format!("the prompt {prompt:?} has no tokens"),
            ));
        }
        Ok((ids, prefix_length))
    }

    fn generate_one(
        &self,
        prompt: &str,
        options: &TextGenerationOptions,
    ) -> Result<Vec<GeneratedSequence>> {
        let (ids, prefix_length) = self.encode_prompt(prompt, options)?;
        let config = self.resolved_config(options, prefix_length)?;
        let pad = config.pad_or_eos().unwrap_or(0);
        let prompts = Prompts::left_padded(std::slice::from_ref(&ids), pad)?;
        let tokenizer = &self.tokenizer;
        let output = Generation::new(&self.model, &prompts, &config)?
            .with_text_decoder(move |tokens: &[u32]| {
                tokenizer
                    .decode(tokens, false, Some(false))
                    .unwrap_or_default()
            })
            .run()?;
        let prompt_text_length = if options.return_tensors {
            0
        } else {
            self.decode(&ids, options)?.chars().count()
        };
        output
            .sequences
            .iter()
            .map(|sequence| {
                if options.return_tensors {
                    return Ok(GeneratedSequence::Tokens {
                        generated_token_ids: sequence.clone(),
                    });
                }
                // As transformers: decode everything, drop as many characters as the decoded
                // prompt has, and put the original prompt (without prefix) back in front.
                let text = self.decode(sequence, options)?;
                let continuation: String = text.chars().skip(prompt_text_length).collect();
                let generated_text = if options.return_full_text {
                    format!("{prompt}{continuation}")
                } else {
                    continuation
                };
                Ok(GeneratedSequence::Text { generated_text })
            })
            .collect()
    }

    fn decode(&self, ids: &[u32], options: &TextGenerationOptions) -> Result<String> {
        Ok(self.tokenizer.decode(
            ids,
            options.skip_special_tokens,
            Some(options.clean_up_tokenization_spaces),
        )?)
    }

    /// Streams the continuation of one prompt as text pieces, as they are generated (greedy
    /// decoding or sampling; one sequence). A piece holds back a character whose bytes are
    /// split over tokens until it is complete, so the pieces concatenated equal the decoded
    /// continuation (decoded without the clean-up of tokenization spaces, which could change
    /// text already shown).
    ///
    /// Each step runs on the pipeline's threads ([`TextGenerationPipeline::set_num_threads`]).
    ///
    /// # Errors
    /// As [`TextGenerationPipeline::generate`]; beam search and `num_return_sequences` above 1
    /// are refused.
    pub fn stream<'a>(
        &'a self,
        prompt: &str,
        options: &TextGenerationOptions,
    ) -> Result<TextStream<'a, M>> {
        if options.generation.num_return_sequences != 1 {
            return Err(Error::option(
                TASK,
                "num_return_sequences",
                "streaming produces one sequence",
            ));
        }
        let (ids, prefix_length) = self.encode_prompt(prompt, options)?;
        let config = self.resolved_config(options, prefix_length)?;
        let pad = config.pad_or_eos().unwrap_or(0);
        let prompts = Prompts::left_padded(std::slice::from_ref(&ids), pad)?;
        let tokenizer = &self.tokenizer;
        let tokens = Generation::new(&self.model, &prompts, &config)?
            .with_text_decoder(move |tokens: &[u32]| {
                tokenizer
                    .decode(tokens, false, Some(false))
                    .unwrap_or_default()
            })
            .tokens()?;
        Ok(TextStream {
            tokens,
            threads: self.threads.as_ref(),
            tokenizer: &self.tokenizer,
            skip_special_tokens: options.skip_special_tokens,
            generated: Vec::new(),
            shown: 0,
            done: false,
        })
    }

    /// Greedy decoding of exactly `new_tokens` tokens after `prompt_ids` (no end-of-sequence
    /// stop), for benchmarks: returns the new ids.
    ///
    /// # Errors
    /// An empty prompt, or more positions than the model has.
    pub fn greedy_new_tokens(&self, prompt_ids: &[u32], new_tokens: usize) -> Result<Vec<u32>> {
        self.in_pool(|| greedy_decode(&self.model, prompt_ids, new_tokens))
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|error| {
        Error::input(
            TASK,
            format!("the result cannot be written as JSON: {error}"),
        )
    })
}

fn plain_encoding() -> EncodeOptions {
    EncodeOptions {
        add_special_tokens: false,
        ..EncodeOptions::default()
    }
}

/// The text of a generation as it is produced; see [`TextGenerationPipeline::stream`].
pub struct TextStream<'a, M: Generative = Gpt2LmHeadModel> {
    tokens: TokenStream<'a, M>,
    threads: Option<&'a ThreadPool>,
    tokenizer: &'a Tokenizer,
    skip_special_tokens: bool,
    generated: Vec<u32>,
    /// Bytes of the decoded continuation already returned.
    shown: usize,
    done: bool,
}

impl<M: Generative> TextStream<'_, M> {
    /// Gives each piece its token's log-probability and the `top` most likely tokens of its
    /// step (see [`Generation::with_logprobs`]); call it before the first piece.
    pub fn with_logprobs(mut self, top: usize) -> Self {
        self.tokens = self.tokens.with_logprobs(top);
        self
    }

    fn decoded(&self) -> Result<String> {
        Ok(self
            .tokenizer
            .decode(&self.generated, self.skip_special_tokens, Some(false))?)
    }
}

impl<M: Generative> Iterator for TextStream<'_, M> {
    type Item = Result<StreamPiece>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let tokens = &mut self.tokens;
        let next = match self.threads {
            Some(pool) => pool.install(|| tokens.next()),
            None => tokens.next(),
        };
        match next {
            Some(Ok(step)) => {
                let token = step[0];
                self.generated.push(token);
                let text = match self.decoded() {
                    Ok(text) => text,
                    Err(error) => return Some(Err(error)),
                };
                // Hold back an incomplete character (decoded as U+FFFD) and anything that does
                // not extend what was shown.
                let piece = if !text.ends_with('\u{FFFD}')
                    && text.len() >= self.shown
                    && text.is_char_boundary(self.shown)
                {
                    let piece = text[self.shown..].to_string();
                    self.shown = text.len();
                    piece
                } else {
                    String::new()
                };
                Some(Ok(StreamPiece {
                    token_id: Some(token),
                    text: piece,
                    logprobs: self.tokens.logprobs().first().cloned(),
                }))
            }
            Some(Err(error)) => {
                self.done = true;
                Some(Err(error))
            }
            None => {
                self.done = true;
                let text = match self.decoded() {
                    Ok(text) => text,
                    Err(error) => return Some(Err(error)),
                };
                if text.len() > self.shown && text.is_char_boundary(self.shown) {
                    let piece = text[self.shown..].to_string();
                    self.shown = text.len();
                    Some(Ok(StreamPiece {
                        token_id: None,
                        text: piece,
                        logprobs: None,
                    }))
                } else {
                    None
                }
            }
        }
    }
}
