//! The generation engine: model-agnostic decoding (greedy, sampling, beam search) over a KV
//! cache, as transformers/generation/utils.py `GenerationMixin.generate` in 4.57.
//!
//! A model implements [`Generative`] (in its own file in oxformer-models: a start hook that runs
//! the encoder, if any, once per input; next-token logits from new decoder ids, appending to its
//! cache; a cache reorder for beams); [`Generation`] runs the decoding loop:
//!
//! ```no_run
//! # fn main() -> oxformer_pipelines::Result<()> {
//! use oxformer_models::gpt2::Gpt2LmHeadModel;
//! use oxformer_pipelines::generation::{Generation, GenerationConfig, Prompts};
//!
//! let dir = std::path::Path::new("fixtures/models/gpt2");
//! let model = Gpt2LmHeadModel::from_folder(dir)?;
//! let mut config = GenerationConfig::from_folder(dir)?;
//! config.max_new_tokens = Some(10);
//! let prompts = Prompts::left_padded(&[vec![39, 599, 75], vec![51, 71]], 1500)?;
//! let output = Generation::new(&model, &prompts, &config)?.run()?;
//! println!("{:?}", output.new_tokens());
//! # Ok(())
//! # }
//! ```
//!
//! [`Generation::tokens`] streams the tokens of each step as an `Iterator` (greedy and
//! sampling). Processors and warpers are in [`processors`], mirroring logits_process.py.

mod beam;
mod config;
pub mod processors;
mod rng;

use ndarray::Array2;
use oxformer_tensor::team;

pub use oxformer_models::generation::{Generative, NextStep, Prompts};

pub use config::{EarlyStopping, GenerationConfig, OPTION_NAMES};
pub use processors::{Builtin, LogitsProcessor, LogitsProcessorList};
pub use rng::Rng;

use crate::{Error, Result};

const TASK: &str = "text-generation";

/// Turns a row's tokens into text (for stop strings).
type TextDecoder<'a> = dyn Fn(&[u32]) -> String + Send + Sync + 'a;

/// What [`Generation::run`] returns, as generate()'s `GenerateDecoderOnlyOutput` /
/// `GenerateBeamDecoderOnlyOutput`.
#[derive(Clone, Debug, Default)]
pub struct GenerateOutput {
    /// One row per returned sequence (prompt `i`'s sequences are rows
    /// `i × num_return_sequences ..`): the decoder's start (decoder-only models: the padded
    /// prompt; encoder-decoder models: `decoder_start_token_id`), then the new tokens; rows
    /// that finished early are filled with the pad token.
    pub sequences: Vec<Vec<u32>>,
    /// The length of the decoder's start: new tokens start there.
    pub prompt_length: usize,
    /// Beam search: each returned sequence's length-penalised log-probability.
    pub sequences_scores: Option<Vec<f32>>,
    /// When recorded: the raw logits of each step, (rows, vocab) per step (`output_logits`).
    pub logits: Vec<Array2<f32>>,
    /// When recorded: the scores after the processors, (rows, vocab) per step
    /// (`output_scores`; log-probabilities for beam search).
    pub scores: Vec<Array2<f32>>,
}

impl GenerateOutput {
    /// The new tokens of each row (pad fill included).
    pub fn new_tokens(&self) -> Vec<&[u32]> {
        self.sequences
            .iter()
            .map(|row| &row[self.prompt_length..])
            .collect()
    }
}

/// The log-probability of a token chosen at one step, and of the step's most likely tokens:
/// `log_softmax` of the step's scores after the processors and warpers, what transformers'
/// `compute_transition_scores` reads from `output_scores` (and TGI's `logprob`).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    /// The chosen token's.
    pub logprob: f32,
    /// The most likely tokens, best first (the first id on ties), as (id, log-probability).
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprobs {
    /// The log-probability of `token` under `scores` and the `top` most likely tokens.
    fn of(scores: &[f32], token: u32, top: usize) -> Self {
        let log_probs = processors::log_softmax(scores);
        let top = top.min(log_probs.len());
        let mut best: Vec<u32> = Vec::new();
        if top > 0 {
            // Larger first, then the smaller id; NaN last.
            let by_rank = |a: &u32, b: &u32| {
                let (x, y) = (log_probs[*a as usize], log_probs[*b as usize]);
                y.partial_cmp(&x)
                    .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
                    .then(a.cmp(b))
            };
            best = (0..log_probs.len() as u32).collect();
            best.select_nth_unstable_by(top - 1, by_rank);
            best.truncate(top);
            best.sort_by(by_rank);
        }
        Self {
            logprob: log_probs[token as usize],
            top: best
                .into_iter()
                .map(|id| (id, log_probs[id as usize]))
                .collect(),
        }
    }
}

/// A decoding run: built from a model, prompts and a config, then [`Generation::run`] to the
/// end or iterated step by step with [`Generation::tokens`].
pub struct Generation<'a, M: Generative + ?Sized> {
    model: &'a M,
    config: GenerationConfig,
    processors: LogitsProcessorList,
    prompts: Prompts,
    /// `decoder_start_token_id` (or `bos_token_id`) for encoder-decoder models.
    decoder_start: Option<u32>,
    /// The length of the decoder's start rows (decoder-only: the padded prompt; else 1).
    start_length: usize,
    /// Per prompt: padding before its first real token in the decoder's rows.
    padding: Vec<usize>,
    max_length: usize,
    record: bool,
    /// With [`Generation::with_logprobs`]: how many of the most likely tokens to keep.
    logprobs: Option<usize>,
    decode: Option<Box<TextDecoder<'a>>>,
    rng: Rng,
    state: Option<State<M::Cache>>,
}

/// The running state of greedy decoding and sampling.
struct State<C> {
    rows: Vec<Vec<u32>>,
    unfinished: Vec<bool>,
    cache: Option<C>,
    cached: usize,
    logits: Vec<Array2<f32>>,
    scores: Vec<Array2<f32>>,
    /// With [`Generation::with_logprobs`]: the last step's, one per row.
    logprobs: Vec<TokenLogprobs>,
    finished: bool,
}

impl<'a, M: Generative + ?Sized> Generation<'a, M> {
    /// Prepares a run: validates the config and resolves the lengths.
    ///
    /// # Errors
    /// An invalid config; a prompt already as long as `max_length`; more positions than the
    /// model has; stop strings (they need [`Generation::with_text_decoder`], checked at run).
    pub fn new(model: &'a M, prompts: &Prompts, config: &GenerationConfig) -> Result<Self> {
        config.validate()?;
        let encoder_decoder = model.is_encoder_decoder();
        let decoder_start = config.decoder_start_token_id.or(config.bos_token_id);
        if encoder_decoder && decoder_start.is_none() {
            return Err(Error::option(
                TASK,
                "decoder_start_token_id",
                "an encoder-decoder model needs decoder_start_token_id (or bos_token_id) to start the decoder",
            ));
        }
        // the decoder's own prompt: the prompt itself, or the start token
        let prompt_length = if encoder_decoder { 1 } else { prompts.length() };
        let padding = prompts
            .attention_mask()
            .iter()
            .map(|mask| {
                if encoder_decoder {
                    0
                } else {
                    mask.iter().take_while(|&&m| m == 0).count()
                }
            })
            .collect();
        let max_length = config.resolved_max_length(prompt_length, model.max_positions());
        if prompt_length >= max_length {
            let what = if encoder_decoder {
                "decoder_input_ids have"
            } else {
                "the prompt has"
            };
            return Err(Error::option(
                TASK,
                "max_length",
                format!(
                    "{what} {prompt_length} tokens but max_length is {max_length}; set max_new_tokens instead"
                ),
            ));
        }
        if let Some(limit) = model.max_positions()
            && max_length > limit
        {
            return Err(Error::option(
                TASK,
                "max_new_tokens",
                format!(
                    "{prompt_length} prompt tokens and {} new ones exceed the model's {limit} positions",
                    max_length - prompt_length
                ),
            ));
        }
        let rng = config.seed.map_or_else(Rng::from_clock, Rng::new);
        Ok(Self {
            model,
            processors: LogitsProcessorList::for_generation(config, prompt_length, max_length),
            config: config.clone(),
            prompts: prompts.clone(),
            decoder_start,
            start_length: prompt_length,
            padding,
            max_length,
            record: false,
            logprobs: None,
            decode: None,
            rng,
            state: None,
        })
    }

    /// Keeps the raw logits and processed scores of every step in the output.
    pub fn record_logits(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Computes the log-probabilities of each step's tokens, with the `top` most likely ones
    /// ([`TokenStream::logprobs`]); greedy decoding then takes the model's logits rather than
    /// its argmax shortcut (the same tokens).
    pub fn with_logprobs(mut self, top: usize) -> Self {
        self.logprobs = Some(top);
        self
    }

    /// Replaces the processor chain (e.g. to add one; the default is built from the config).
    pub fn with_processors(mut self, processors: LogitsProcessorList) -> Self {
        self.processors = processors;
        self
    }

    /// How to turn a row's tokens into text, for `stop_strings`.
    pub fn with_text_decoder(
        mut self,
        decode: impl Fn(&[u32]) -> String + Send + Sync + 'a,
    ) -> Self {
        self.decode = Some(Box::new(decode));
        self
    }

    /// The total length decoding stops at.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Decodes to the end.
    ///
    /// # Errors
    /// A model error, or stop strings without a text decoder.
    pub fn run(mut self) -> Result<GenerateOutput> {
        self.check_stop_strings()?;
        if self.config.num_beams > 1 {
            return beam::beam_search(&mut self);
        }
        while self.step()?.is_some() {}
        let state = self.state.take().expect("step() made the state");
        Ok(GenerateOutput {
            sequences: state.rows,
            prompt_length: self.start_length,
            sequences_scores: None,
            logits: state.logits,
            scores: state.scores,
        })
    }

    /// The tokens of each step, one per row (finished rows get the pad token), as an
    /// `Iterator`; greedy decoding and sampling only (transformers' streamers refuse beams too).
    ///
    /// # Errors
    /// Beam search, or stop strings without a text decoder.
    pub fn tokens(self) -> Result<TokenStream<'a, M>> {
        if self.config.num_beams > 1 {
            return Err(Error::option(
                TASK,
                "num_beams",
                "streaming works with greedy decoding and sampling, not beam search",
            ));
        }
        self.check_stop_strings()?;
        Ok(TokenStream {
            generation: self,
            failed: false,
        })
    }

    fn check_stop_strings(&self) -> Result<()> {
        if !self.config.stop_strings.is_empty() && self.decode.is_none() {
            return Err(Error::option(
                TASK,
                "stop_strings",
                "stop strings need a tokenizer to decode the text",
            ));
        }
        Ok(())
    }

    /// The model's start hook for `expand` rows per prompt: the cache (with room for
    /// `capacity` decoder positions) and the decoder's first ids.
    pub(crate) fn start_rows(
        &self,
        expand: usize,
        capacity: usize,
    ) -> Result<(M::Cache, Vec<Vec<u32>>)> {
        Ok(self
            .model
            .start(&self.prompts, expand, capacity, self.decoder_start)?)
    }

    /// The decoding state of greedy decoding and sampling.
    fn start(&self) -> Result<State<M::Cache>> {
        let (cache, rows) = self.start_rows(self.config.num_return_sequences, self.max_length)?;
        Ok(State {
            unfinished: vec![true; rows.len()],
            rows,
            cache: self.config.use_cache.then_some(cache),
            cached: 0,
            logits: Vec::new(),
            scores: Vec::new(),
            logprobs: Vec::new(),
            finished: false,
        })
    }

    /// One step of greedy decoding or sampling (utils.py `_sample`): the next token of every
    /// row, or `None` once every row has stopped.
    fn step(&mut self) -> Result<Option<Vec<u32>>> {
        if self.state.is_none() {
            self.state = Some(self.start()?);
        }
        let greedy = !self.config.do_sample
            && self.processors.is_empty()
            && !self.record
            && self.logprobs.is_none();
        let expand = self.config.num_return_sequences;
        let state = self.state.as_mut().expect("state was just made");
        if state.finished {
            return Ok(None);
        }
        let fresh = || {
            self.model.start(
                &self.prompts,
                expand,
                state.rows[0].len(),
                self.decoder_start,
            )
        };
        let (logits, chosen) = match next_step(
            self.model,
            &state.rows,
            state.cache.as_mut(),
            &mut state.cached,
            greedy,
            fresh,
        )? {
            NextStep::Logits(logits) => (Some(logits), None),
            NextStep::Tokens(tokens) => (None, Some(tokens)),
        };
        // the processors work on the logits themselves; a copy is kept only to be recorded
        let (logits, mut scores) = if self.record {
            (logits.clone(), logits)
        } else {
            (None, logits)
        };
        if let Some(scores) = &mut scores {
            for (row, mut row_scores) in state.rows.iter().zip(scores.rows_mut()) {
                let slice = row_scores
                    .as_slice_mut()
                    .expect("logits rows are contiguous");
                self.processors.apply(row, slice);
            }
        }
        let pad = self.config.pad_or_eos();
        let has_eos = !self.config.eos_token_id.is_empty();
        let mut tokens = Vec::with_capacity(state.rows.len());
        for index in 0..state.rows.len() {
            let token = match (&chosen, &scores) {
                (Some(chosen), _) => chosen[index],
                (None, Some(scores)) => {
                    let row_scores = scores.row(index);
                    let row_scores = row_scores.as_slice().expect("contiguous");
                    let token = if self.config.do_sample {
                        let probs = processors::softmax(row_scores);
                        self.rng.categorical(&probs).ok_or_else(|| {
                            Error::input(
                                TASK,
                                "every token was filtered out: no distribution to sample from",
                            )
                        })?
                    } else {
                        argmax(row_scores)
                    };
                    debug_assert!(token < row_scores.len());
                    token as u32
                }
                (None, None) => unreachable!("a step gives logits or tokens"),
            };
            let token = if has_eos && !state.unfinished[index] {
                pad.unwrap_or(token)
            } else {
                token
            };
            tokens.push(token);
        }
        if let (Some(top), Some(scores)) = (self.logprobs, &scores) {
            state.logprobs = tokens
                .iter()
                .enumerate()
                .map(|(index, &token)| {
                    let row_scores = scores.row(index);
                    let row_scores = row_scores.as_slice().expect("contiguous");
                    TokenLogprobs::of(row_scores, token, top)
                })
                .collect();
        }
        for (row, &token) in state.rows.iter_mut().zip(&tokens) {
            row.push(token);
        }
        let length = state.rows[0].len();
        for (index, row) in state.rows.iter().enumerate() {
            let last = *row.last().expect("a token was just pushed");
            let stopped = length >= self.max_length
                || self.config.eos_token_id.contains(&last)
                || stop_string_hit(
                    &self.config.stop_strings,
                    self.decode.as_deref(),
                    row,
                    self.padding[index / expand],
                );
            if stopped {
                state.unfinished[index] = false;
            }
        }
        if self.record {
            // a recording step always asks for the logits (see `greedy` above)
            state.logits.extend(logits);
            state.scores.extend(scores);
        }
        state.finished = !state.unfinished.contains(&true);
        Ok(Some(tokens))
    }
}

/// Greedy decoding of exactly `new_tokens` tokens after `prompt` (no end-of-sequence stop),
/// with the KV cache: the plain decode loop benchmarks time (`oxformer bench --generate`).
/// Returns the new ids. Runs on the rayon pool it is called from.
///
/// # Errors
/// An empty prompt, more positions than the model has, or a model error.
pub fn greedy_decode<M: Generative + ?Sized>(
    model: &M,
    prompt: &[u32],
    new_tokens: usize,
) -> Result<Vec<u32>> {
    let config = GenerationConfig {
        max_new_tokens: Some(new_tokens),
        eos_token_id: Vec::new(),
        pad_token_id: Some(0),
        ..GenerationConfig::default()
    };
    let prompts = Prompts::left_padded(&[prompt.to_vec()], 0)?;
    let output = Generation::new(model, &prompts, &config)?.run()?;
    Ok(output.new_tokens()[0].to_vec())
}

/// The tokens of each decoding step, see [`Generation::tokens`]. After the last step,
/// [`TokenStream::sequences`] gives the full rows.
pub struct TokenStream<'a, M: Generative + ?Sized> {
    generation: Generation<'a, M>,
    failed: bool,
}

impl<M: Generative + ?Sized> TokenStream<'_, M> {
    /// The rows so far: padded prompt then new tokens.
    pub fn sequences(&self) -> &[Vec<u32>] {
        self.generation
            .state
            .as_ref()
            .map_or(&[][..], |state| &state.rows[..])
    }

    /// The padded prompt length.
    pub fn prompt_length(&self) -> usize {
        self.generation.start_length
    }

    /// [`Generation::with_logprobs`] from the next step on.
    pub fn with_logprobs(mut self, top: usize) -> Self {
        self.generation.logprobs = Some(top);
        self
    }

    /// With [`Generation::with_logprobs`], the log-probabilities of the last step's tokens,
    /// one per row; empty otherwise and before the first step.
    pub fn logprobs(&self) -> &[TokenLogprobs] {
        self.generation
            .state
            .as_ref()
            .map_or(&[][..], |state| &state.logprobs[..])
    }
}

impl<M: Generative + ?Sized> Iterator for TokenStream<'_, M> {
    type Item = Result<Vec<u32>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.generation.step() {
            Ok(tokens) => tokens.map(Ok),
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// The index of the largest score, the first one on ties (as `torch.argmax`).
fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (index, &score) in scores.iter().enumerate() {
        if score > scores[best] || (scores[best].is_nan() && !score.is_nan()) {
            best = index;
        }
    }
    best
}

/// [`next_step`] asking for the logits (sampling, beam search, recorded steps).
pub(crate) fn next_logits<M: Generative + ?Sized>(
    model: &M,
    rows: &[Vec<u32>],
    cache: Option<&mut M::Cache>,
    cached: &mut usize,
    fresh: impl FnOnce() -> oxformer_models::Result<(M::Cache, Vec<Vec<u32>>)>,
) -> Result<Array2<f32>> {
    match next_step(model, rows, cache, cached, false, fresh)? {
        NextStep::Logits(logits) => Ok(logits),
        NextStep::Tokens(_) => unreachable!("forward_last gives logits"),
    }
}

/// The next step of every row: the decoder ids not yet in the cache through the model; without
/// a cache (`use_cache` false), every id through a `fresh` one. With `greedy`, the model may
/// answer with the tokens instead of the logits.
fn next_step<M: Generative + ?Sized>(
    model: &M,
    rows: &[Vec<u32>],
    cache: Option<&mut M::Cache>,
    cached: &mut usize,
    greedy: bool,
    fresh: impl FnOnce() -> oxformer_models::Result<(M::Cache, Vec<Vec<u32>>)>,
) -> Result<NextStep> {
    let batch = rows.len();
    let length = rows[0].len();
    let mut own;
    let (cache, from) = match cache {
        Some(cache) => (cache, *cached),
        None => {
            own = fresh()?.0;
            (&mut own, 0)
        }
    };
    let new = length - from;
    let ids = Array2::from_shape_fn((batch, new), |(b, t)| rows[b][from + t]);
    let mut run = || -> Result<NextStep> {
        Ok(if greedy {
            model.forward_last_greedy(ids.view(), cache)?
        } else {
            NextStep::Logits(model.forward_last(ids.view(), cache)?)
        })
    };
    // a step of one new token per row is a run of small kernels: keep the pool's threads awake
    // between them
    let step = if new == 1 { team(run) } else { run() }?;
    *cached = length;
    Ok(step)
}

/// Whether a stop string ends inside the row's last token (transformers'
/// `StopStringCriteria`: it must overlap the final token; it may start in earlier ones).
fn stop_string_hit(
    stop_strings: &[String],
    decode: Option<&TextDecoder<'_>>,
    row: &[u32],
    padding: usize,
) -> bool {
    let Some(decode) = decode else {
        return false;
    };
    if stop_strings.is_empty() {
        return false;
    }
    let real = &row[padding..];
    let Some((_, before_last)) = real.split_last() else {
        return false;
    };
    let text = decode(real);
    let before = decode(before_last);
    // The part of the text the last token added starts where the earlier text ends.
    let last_start = if text.starts_with(&before) {
        before.len()
    } else {
        0
    };
    stop_strings.iter().any(|stop| {
        text.match_indices(stop.as_str())
            .any(|(start, matched)| start + matched.len() > last_start)
    })
}
