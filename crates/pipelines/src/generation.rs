//! The generation engine: model-agnostic decoding (greedy, sampling, beam search) over a KV
//! cache, as transformers/generation/utils.py `GenerationMixin.generate` in 4.57.
//!
//! A model implements [`CausalLm`] (next-token logits from new ids, their positions and the
//! padding mask, appending to its cache); [`Generation`] runs the decoding loop:
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

use ndarray::{Array2, ArrayView2};
use oxformer_models::gpt2::{Gpt2Input, Gpt2LmHeadModel, KvCache};
use oxformer_tensor::team;

pub use config::{EarlyStopping, GenerationConfig, OPTION_NAMES};
pub use processors::{LogitsProcessor, LogitsProcessorList};
pub use rng::Rng;

use crate::{Error, Result};

const TASK: &str = "text-generation";

/// Turns a row's tokens into text (for stop strings).
type TextDecoder<'a> = dyn Fn(&[u32]) -> String + Send + Sync + 'a;

/// A decoder-only language model the engine can drive.
pub trait CausalLm {
    /// Keys and values kept between steps.
    type Cache;

    /// Size of the vocabulary (the logits' width).
    fn vocab_size(&self) -> usize;

    /// The most positions the model can see, if limited.
    fn max_positions(&self) -> Option<usize>;

    /// An empty cache for `batch` rows of up to `capacity` positions, allocated once.
    fn new_cache(&self, batch: usize, capacity: usize) -> Self::Cache;

    /// Runs the new tokens after those in `cache`, appends them to it, and returns the logits
    /// of the last new position of each row.
    ///
    /// # Shapes
    /// `input_ids`, `position_ids`: (batch, new); `attention_mask`: (batch, cached + new);
    /// result: (batch, vocab).
    ///
    /// # Errors
    /// Inputs the model cannot take (ids, positions, a full cache).
    fn forward_last(
        &self,
        input_ids: ArrayView2<'_, u32>,
        position_ids: ArrayView2<'_, u32>,
        attention_mask: ArrayView2<'_, f32>,
        cache: &mut Self::Cache,
    ) -> Result<Array2<f32>>;

    /// Row `i` of the cache becomes old row `rows[i]` (beam search).
    ///
    /// # Errors
    /// When `rows` does not fit the cache.
    fn reorder_cache(&self, cache: &mut Self::Cache, rows: &[usize]) -> Result<()>;

    /// As [`CausalLm::forward_last`], for greedy decoding without logits processors: a model
    /// that can find each row's largest logit (first on ties) without computing all of them
    /// returns the tokens; by default, the logits.
    ///
    /// # Errors
    /// As [`CausalLm::forward_last`].
    fn forward_last_greedy(
        &self,
        input_ids: ArrayView2<'_, u32>,
        position_ids: ArrayView2<'_, u32>,
        attention_mask: ArrayView2<'_, f32>,
        cache: &mut Self::Cache,
    ) -> Result<NextStep> {
        self.forward_last(input_ids, position_ids, attention_mask, cache)
            .map(NextStep::Logits)
    }
}

/// What a decoding step of the model gives: the logits of each row's last position, or, from
/// [`CausalLm::forward_last_greedy`], directly the largest one's id.
#[derive(Clone, Debug)]
pub enum NextStep {
    /// (batch, vocab).
    Logits(Array2<f32>),
    /// One id per row.
    Tokens(Vec<u32>),
}

impl CausalLm for Gpt2LmHeadModel {
    type Cache = KvCache;

    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    fn max_positions(&self) -> Option<usize> {
        Some(self.config().n_positions)
    }

    fn new_cache(&self, batch: usize, capacity: usize) -> KvCache {
        Gpt2LmHeadModel::new_cache(self, batch, capacity)
    }

    fn forward_last(
        &self,
        input_ids: ArrayView2<'_, u32>,
        position_ids: ArrayView2<'_, u32>,
        attention_mask: ArrayView2<'_, f32>,
        cache: &mut KvCache,
    ) -> Result<Array2<f32>> {
        let input = Gpt2Input {
            input_ids,
            position_ids: Some(position_ids),
            attention_mask: Some(attention_mask),
        };
        Ok(Gpt2LmHeadModel::forward_last(self, &input, Some(cache))?)
    }

    fn reorder_cache(&self, cache: &mut KvCache, rows: &[usize]) -> Result<()> {
        Ok(cache.reorder_rows(rows)?)
    }

    /// Through the 8-bit screen of the LM head ([`Gpt2LmHeadModel::greedy_token`]); the logits
    /// when it cannot decide a row.
    fn forward_last_greedy(
        &self,
        input_ids: ArrayView2<'_, u32>,
        position_ids: ArrayView2<'_, u32>,
        attention_mask: ArrayView2<'_, f32>,
        cache: &mut KvCache,
    ) -> Result<NextStep> {
        let input = Gpt2Input {
            input_ids,
            position_ids: Some(position_ids),
            attention_mask: Some(attention_mask),
        };
        let hidden = self.forward_last_hidden(&input, Some(cache))?;
        let mut tokens = Some(Vec::with_capacity(hidden.nrows()));
        for row in hidden.rows() {
            let token = match row.as_slice() {
                Some(row) => self.greedy_token(row)?,
                None => None,
            };
            match (token, tokens.as_mut()) {
                (Some(token), Some(decided)) => decided.push(token),
                _ => {
                    tokens = None;
                    break;
                }
            }
        }
        Ok(match tokens {
            Some(tokens) => NextStep::Tokens(tokens),
            None => NextStep::Logits(self.logits(hidden.view())?),
        })
    }
}

/// A batch of prompts of equal (padded) length, with their padding mask, as generate() takes
/// `input_ids` and `attention_mask`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompts {
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
}

impl Prompts {
    /// Prompts left-padded with `pad_token_id` to the longest (what decoder-only generation
    /// needs: every row's last token is real).
    ///
    /// # Errors
    /// When there is no prompt or a prompt is empty.
    pub fn left_padded(prompts: &[Vec<u32>], pad_token_id: u32) -> Result<Self> {
        if prompts.is_empty() {
            return Err(Error::input(TASK, "no prompt to generate from"));
        }
        if let Some(index) = prompts.iter().position(Vec::is_empty) {
            return Err(Error::input(
                TASK,
                format!("prompt {index} has no tokens to generate from"),
            ));
        }
        let length = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(prompts.len());
        let mut attention_mask = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let padding = length - prompt.len();
            let mut ids = vec![pad_token_id; padding];
            ids.extend_from_slice(prompt);
            let mut mask = vec![0; padding];
            mask.resize(length, 1);
            input_ids.push(ids);
            attention_mask.push(mask);
        }
        Ok(Self {
            input_ids,
            attention_mask,
        })
    }

    /// Prompts already padded, with their mask (1 for real tokens, 0 for padding).
    ///
    /// # Errors
    /// When the rows differ in length, the mask does not match, or a row has no real token.
    pub fn from_padded(input_ids: Vec<Vec<u32>>, attention_mask: Vec<Vec<u32>>) -> Result<Self> {
        let length = input_ids.first().map_or(0, Vec::len);
        if input_ids.is_empty() || length == 0 {
            return Err(Error::input(TASK, "no prompt to generate from"));
        }
        if input_ids.len() != attention_mask.len()
            || input_ids
                .iter()
                .zip(&attention_mask)
                .any(|(ids, mask)| ids.len() != length || mask.len() != length)
        {
            return Err(Error::input(
                TASK,
                "input_ids and attention_mask must be rows of one length",
            ));
        }
        if let Some(index) = attention_mask.iter().position(|mask| !mask.contains(&1)) {
            return Err(Error::input(
                TASK,
                format!("prompt {index} has no real token (its attention mask is all 0)"),
            ));
        }
        Ok(Self {
            input_ids,
            attention_mask,
        })
    }

    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether there is no prompt (never true for a built value).
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// The padded length.
    pub fn length(&self) -> usize {
        self.input_ids[0].len()
    }

    /// The padded ids, one row per prompt.
    pub fn input_ids(&self) -> &[Vec<u32>] {
        &self.input_ids
    }

    /// The mask, one row per prompt.
    pub fn attention_mask(&self) -> &[Vec<u32>] {
        &self.attention_mask
    }

    /// Each row repeated `times` times in place (`repeat_interleave`, as generate() expands
    /// for `num_return_sequences` and beams).
    fn expanded(&self, times: usize) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
        let mut ids = Vec::with_capacity(self.len() * times);
        let mut mask = Vec::with_capacity(self.len() * times);
        for (row, row_mask) in self.input_ids.iter().zip(&self.attention_mask) {
            for _ in 0..times {
                ids.push(row.clone());
                mask.push(row_mask.iter().map(|&m| m as f32).collect());
            }
        }
        (ids, mask)
    }
}

/// What [`Generation::run`] returns, as generate()'s `GenerateDecoderOnlyOutput` /
/// `GenerateBeamDecoderOnlyOutput`.
#[derive(Clone, Debug, Default)]
pub struct GenerateOutput {
    /// One row per returned sequence (prompt `i`'s sequences are rows
    /// `i × num_return_sequences ..`): the padded prompt, then the new tokens; rows that
    /// finished early are filled with the pad token.
    pub sequences: Vec<Vec<u32>>,
    /// The padded prompt length: new tokens start there.
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

/// A decoding run: built from a model, prompts and a config, then [`Generation::run`] to the
/// end or iterated step by step with [`Generation::tokens`].
pub struct Generation<'a, M: CausalLm> {
    model: &'a M,
    config: GenerationConfig,
    processors: LogitsProcessorList,
    prompts: Prompts,
    max_length: usize,
    record: bool,
    decode: Option<Box<TextDecoder<'a>>>,
    rng: Rng,
    state: Option<State<M::Cache>>,
}

/// The running state of greedy decoding and sampling.
struct State<C> {
    rows: Vec<Vec<u32>>,
    mask: Vec<Vec<f32>>,
    unfinished: Vec<bool>,
    cache: Option<C>,
    cached: usize,
    logits: Vec<Array2<f32>>,
    scores: Vec<Array2<f32>>,
    finished: bool,
}

impl<'a, M: CausalLm> Generation<'a, M> {
    /// Prepares a run: validates the config and resolves the lengths.
    ///
    /// # Errors
    /// An invalid config; a prompt already as long as `max_length`; more positions than the
    /// model has; stop strings (they need [`Generation::with_text_decoder`], checked at run).
    pub fn new(model: &'a M, prompts: &Prompts, config: &GenerationConfig) -> Result<Self> {
        config.validate()?;
        let prompt_length = prompts.length();
        let max_length = config.resolved_max_length(prompt_length, model.max_positions());
        if prompt_length >= max_length {
            return Err(Error::option(
                TASK,
                "max_length",
                format!(
                    "the prompt has {prompt_length} tokens but max_length is {max_length}; set max_new_tokens instead"
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
            processors: LogitsProcessorList::from_config(config, prompt_length),
            config: config.clone(),
            prompts: prompts.clone(),
            max_length,
            record: false,
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
            prompt_length: self.prompts.length(),
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

    fn start(&self) -> State<M::Cache> {
        let times = self.config.num_return_sequences;
        let (rows, mask) = self.prompts.expanded(times);
        let cache = self
            .config
            .use_cache
            .then(|| self.model.new_cache(rows.len(), self.max_length));
        State {
            unfinished: vec![true; rows.len()],
            rows,
            mask,
            cache,
            cached: 0,
            logits: Vec::new(),
            scores: Vec::new(),
            finished: false,
        }
    }

    /// One step of greedy decoding or sampling (utils.py `_sample`): the next token of every
    /// row, or `None` once every row has stopped.
    fn step(&mut self) -> Result<Option<Vec<u32>>> {
        if self.state.is_none() {
            self.state = Some(self.start());
        }
        let state = self.state.as_mut().expect("state was just made");
        if state.finished {
            return Ok(None);
        }
        let greedy = !self.config.do_sample && self.processors.is_empty() && !self.record;
        let (logits, chosen) = match next_step(
            self.model,
            &state.rows,
            &state.mask,
            state.cache.as_mut(),
            &mut state.cached,
            greedy,
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
        for ((row, mask), &token) in state.rows.iter_mut().zip(&mut state.mask).zip(&tokens) {
            row.push(token);
            mask.push(1.0);
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
                    &self.prompts.attention_mask[index / self.config.num_return_sequences],
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
pub fn greedy_decode<M: CausalLm>(
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
pub struct TokenStream<'a, M: CausalLm> {
    generation: Generation<'a, M>,
    failed: bool,
}

impl<M: CausalLm> TokenStream<'_, M> {
    /// The rows so far: padded prompt then new tokens.
    pub fn sequences(&self) -> &[Vec<u32>] {
        self.generation
            .state
            .as_ref()
            .map_or(&[][..], |state| &state.rows[..])
    }

    /// The padded prompt length.
    pub fn prompt_length(&self) -> usize {
        self.generation.prompts.length()
    }
}

impl<M: CausalLm> Iterator for TokenStream<'_, M> {
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

/// Position ids for generation: `cumsum(mask) − 1`, 1 on padding
/// (`GenerationMixin.prepare_inputs_for_generation`).
fn position_ids(mask: &[f32]) -> Vec<u32> {
    let mut seen = 0u32;
    mask.iter()
        .map(|&m| {
            if m != 0.0 {
                seen += 1;
                seen - 1
            } else {
                1
            }
        })
        .collect()
}

/// [`next_step`] asking for the logits (sampling, beam search, recorded steps).
pub(crate) fn next_logits<M: CausalLm>(
    model: &M,
    rows: &[Vec<u32>],
    mask: &[Vec<f32>],
    cache: Option<&mut M::Cache>,
    cached: &mut usize,
) -> Result<Array2<f32>> {
    match next_step(model, rows, mask, cache, cached, false)? {
        NextStep::Logits(logits) => Ok(logits),
        NextStep::Tokens(_) => unreachable!("forward_last gives logits"),
    }
}

/// The next step of every row: the tokens not yet in the cache (all of them without a cache)
/// through the model; with `greedy`, the model may answer with the tokens instead of the logits.
fn next_step<M: CausalLm>(
    model: &M,
    rows: &[Vec<u32>],
    mask: &[Vec<f32>],
    cache: Option<&mut M::Cache>,
    cached: &mut usize,
    greedy: bool,
) -> Result<NextStep> {
    let batch = rows.len();
    let length = rows[0].len();
    let mut fresh;
    let (cache, from) = match cache {
        Some(cache) => (cache, *cached),
        None => {
            fresh = model.new_cache(batch, length);
            (&mut fresh, 0)
        }
    };
    let new = length - from;
    let mut ids = Array2::<u32>::zeros((batch, new));
    let mut positions = Array2::<u32>::zeros((batch, new));
    let mut attention = Array2::<f32>::zeros((batch, length));
    for (b, (row, row_mask)) in rows.iter().zip(mask).enumerate() {
        let row_positions = position_ids(row_mask);
        for t in 0..new {
            ids[[b, t]] = row[from + t];
            positions[[b, t]] = row_positions[from + t];
        }
        for (t, &m) in row_mask.iter().enumerate() {
            attention[[b, t]] = m;
        }
    }
    let mut run = || -> Result<NextStep> {
        Ok(if greedy {
            model.forward_last_greedy(ids.view(), positions.view(), attention.view(), cache)?
        } else {
            NextStep::Logits(model.forward_last(
                ids.view(),
                positions.view(),
                attention.view(),
                cache,
            )?)
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
    prompt_mask: &[u32],
) -> bool {
    let Some(decode) = decode else {
        return false;
    };
    if stop_strings.is_empty() {
        return false;
    }
    let padding = prompt_mask.iter().take_while(|&&m| m == 0).count();
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
