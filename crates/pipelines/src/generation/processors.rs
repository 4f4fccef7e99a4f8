//! Logits processors and warpers, as transformers/generation/logits_process.py: each takes a
//! row's token history and its next-token scores and changes the scores in place (-inf where
//! a token is filtered out). Computed in f32 like the reference, sums in f64.
//!
//! [`LogitsProcessor`] is the trait a chain's members implement: the built-in ones
//! ([`Builtin`], what `generate()` builds from a config) and any of the user's:
//!
//! ```
//! use oxformer_pipelines::generation::{GenerationConfig, LogitsProcessor, LogitsProcessorList};
//!
//! /// Forbids one token everywhere.
//! #[derive(Debug)]
//! struct Forbid(u32);
//!
//! impl LogitsProcessor for Forbid {
//!     fn name(&self) -> &str {
//!         "Forbid"
//!     }
//!     fn apply(&self, _history: &[u32], scores: &mut [f32]) {
//!         scores[self.0 as usize] = f32::NEG_INFINITY;
//!     }
//! }
//!
//! let mut chain = LogitsProcessorList::from_config(&GenerationConfig::default(), 3);
//! chain.push(Forbid(7));
//! let mut scores = vec![0.5; 10];
//! chain.apply(&[1, 2, 3], &mut scores);
//! assert_eq!(scores[7], f32::NEG_INFINITY);
//! ```

use std::collections::HashMap;
use std::fmt::Debug;

use super::config::GenerationConfig;

/// A logits processor (transformers' `LogitsProcessor`): changes one row's next-token scores
/// given the row's tokens so far. Implement it to add a rule of your own to a
/// [`LogitsProcessorList`] (see the module's example).
pub trait LogitsProcessor: Debug + Send + Sync {
    /// A name for listings and errors (transformers' class name for the built-in ones).
    fn name(&self) -> &str;

    /// Changes `scores` in place: -inf forbids a token.
    ///
    /// # Shapes
    /// `history`: every token of the row so far (decoder-only models: the padded prompt then
    /// the new tokens; encoder-decoder models: the decoder's, from its start token);
    /// `scores`: vocab (logits, or log-probabilities in beam search).
    fn apply(&self, history: &[u32], scores: &mut [f32]);
}

/// The processors `generate()` builds from a [`GenerationConfig`], named after their
/// transformers classes.
#[derive(Clone, Debug, PartialEq)]
pub enum Builtin {
    /// `RepetitionPenaltyLogitsProcessor`: scores of tokens already in the history are divided
    /// by the penalty when positive, multiplied when negative.
    RepetitionPenalty {
        /// The penalty (> 0; above 1 discourages repeats).
        penalty: f32,
    },
    /// `NoRepeatNGramLogitsProcessor`: a token that would repeat an n-gram of the history is
    /// forbidden.
    NoRepeatNGram {
        /// n.
        ngram_size: usize,
    },
    /// `NoBadWordsLogitsProcessor`: the last token of a banned sequence is forbidden when the
    /// history ends with the rest of it.
    NoBadWords {
        /// Banned token sequences (single eos tokens removed, as transformers).
        sequences: Vec<Vec<u32>>,
    },
    /// `MinLengthLogitsProcessor`: end-of-sequence tokens are forbidden while the history is
    /// shorter than `min_length`.
    MinLength {
        /// Total length.
        min_length: usize,
        /// The end-of-sequence ids.
        eos_token_ids: Vec<u32>,
    },
    /// `MinNewTokensLengthLogitsProcessor`: end-of-sequence tokens are forbidden until
    /// `min_new_tokens` tokens follow the prompt.
    MinNewTokens {
        /// Length of the (padded) prompt.
        prompt_length: usize,
        /// New tokens required.
        min_new_tokens: usize,
        /// The end-of-sequence ids.
        eos_token_ids: Vec<u32>,
    },
    /// `ForcedBOSTokenLogitsProcessor`: the first generated token of an encoder-decoder
    /// decoder (history of one token) is forced to `bos_token_id`.
    ForcedBos {
        /// The forced token.
        bos_token_id: u32,
    },
    /// `ForcedEOSTokenLogitsProcessor`: the last token before `max_length` is forced to one of
    /// the end-of-sequence ids.
    ForcedEos {
        /// The total length decoding stops at.
        max_length: usize,
        /// The forced ids.
        eos_token_ids: Vec<u32>,
    },
    /// `TemperatureLogitsWarper`: scores divided by the temperature.
    Temperature {
        /// The temperature (> 0).
        temperature: f32,
    },
    /// `TopKLogitsWarper`: only scores at least the k-th largest are kept.
    TopK {
        /// k (at least `min_tokens_to_keep`).
        top_k: usize,
    },
    /// `TopPLogitsWarper`: the smallest set of most likely tokens whose probability reaches
    /// `top_p` is kept.
    TopP {
        /// The probability mass to keep.
        top_p: f32,
        /// Tokens kept whatever their probability.
        min_tokens_to_keep: usize,
    },
    /// `MinPLogitsWarper`: tokens less likely than `min_p` × the top probability are removed.
    MinP {
        /// The fraction of the top probability.
        min_p: f32,
        /// Tokens kept whatever their probability.
        min_tokens_to_keep: usize,
    },
    /// `TypicalLogitsWarper`: locally typical sampling, keeping tokens whose information is
    /// closest to the entropy until `mass` is reached.
    Typical {
        /// The probability mass to keep.
        mass: f32,
        /// Tokens kept whatever their probability.
        min_tokens_to_keep: usize,
    },
}

impl LogitsProcessor for Builtin {
    /// The transformers class this mirrors.
    fn name(&self) -> &str {
        match self {
            Self::RepetitionPenalty { .. } => "RepetitionPenaltyLogitsProcessor",
            Self::NoRepeatNGram { .. } => "NoRepeatNGramLogitsProcessor",
            Self::NoBadWords { .. } => "NoBadWordsLogitsProcessor",
            Self::MinLength { .. } => "MinLengthLogitsProcessor",
            Self::MinNewTokens { .. } => "MinNewTokensLengthLogitsProcessor",
            Self::ForcedBos { .. } => "ForcedBOSTokenLogitsProcessor",
            Self::ForcedEos { .. } => "ForcedEOSTokenLogitsProcessor",
            Self::Temperature { .. } => "TemperatureLogitsWarper",
            Self::TopK { .. } => "TopKLogitsWarper",
            Self::TopP { .. } => "TopPLogitsWarper",
            Self::MinP { .. } => "MinPLogitsWarper",
            Self::Typical { .. } => "TypicalLogitsWarper",
        }
    }

    fn apply(&self, history: &[u32], scores: &mut [f32]) {
        match self {
            Self::RepetitionPenalty { penalty } => {
                // Each distinct token once: transformers gathers the scores, then scatters.
                let mut seen = history.to_vec();
                seen.sort_unstable();
                seen.dedup();
                for token in seen {
                    if let Some(score) = scores.get_mut(token as usize) {
                        *score = if *score < 0.0 {
                            *score * penalty
                        } else {
                            *score / penalty
                        };
                    }
                }
            }
            Self::NoRepeatNGram { ngram_size } => {
                for token in banned_ngram_tokens(history, *ngram_size) {
                    if let Some(score) = scores.get_mut(token as usize) {
                        *score = f32::NEG_INFINITY;
                    }
                }
            }
            Self::NoBadWords { sequences } => {
                for sequence in sequences {
                    let (&last, prefix) = sequence.split_last().expect("validated non-empty");
                    if sequence.len() > 1 && sequence.len() > history.len() {
                        continue;
                    }
                    if history.ends_with(prefix)
                        && let Some(score) = scores.get_mut(last as usize)
                    {
                        *score = f32::NEG_INFINITY;
                    }
                }
            }
            Self::MinLength {
                min_length,
                eos_token_ids,
            } => {
                if history.len() < *min_length {
                    forbid(scores, eos_token_ids);
                }
            }
            Self::MinNewTokens {
                prompt_length,
                min_new_tokens,
                eos_token_ids,
            } => {
                if history.len().saturating_sub(*prompt_length) < *min_new_tokens {
                    forbid(scores, eos_token_ids);
                }
            }
            Self::ForcedBos { bos_token_id } => {
                if history.len() == 1 {
                    force(scores, std::slice::from_ref(bos_token_id));
                }
            }
            Self::ForcedEos {
                max_length,
                eos_token_ids,
            } => {
                if history.len() + 1 == *max_length {
                    force(scores, eos_token_ids);
                }
            }
            Self::Temperature { temperature } => {
                for score in scores.iter_mut() {
                    *score /= temperature;
                }
            }
            Self::TopK { top_k } => {
                let top_k = (*top_k).min(scores.len());
                if top_k == 0 {
                    return;
                }
                let mut sorted = scores.to_vec();
                sorted.sort_unstable_by(|a, b| b.total_cmp(a));
                let threshold = sorted[top_k - 1];
                for score in scores.iter_mut() {
                    if *score < threshold {
                        *score = f32::NEG_INFINITY;
                    }
                }
            }
            Self::TopP {
                top_p,
                min_tokens_to_keep,
            } => {
                // Ascending order; remove the low tail whose cumulative probability is at most
                // 1 − top_p, keeping the last `min_tokens_to_keep`.
                let order = argsort(scores, false);
                let sorted: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
                let probs = softmax(&sorted);
                let threshold = 1.0 - *top_p;
                let keep_from = order.len().saturating_sub(*min_tokens_to_keep);
                let mut cumulative = 0.0f64;
                for (rank, (&index, &p)) in order.iter().zip(&probs).enumerate() {
                    cumulative += p as f64;
                    if rank < keep_from && (cumulative as f32) <= threshold {
                        scores[index] = f32::NEG_INFINITY;
                    }
                }
            }
            Self::MinP {
                min_p,
                min_tokens_to_keep,
            } => {
                let probs = softmax(scores);
                let top = probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let threshold = min_p * top;
                let order = argsort(scores, true);
                for &index in order.iter().skip(*min_tokens_to_keep) {
                    if probs[index] < threshold {
                        scores[index] = f32::NEG_INFINITY;
                    }
                }
            }
            Self::Typical {
                mass,
                min_tokens_to_keep,
            } => {
                let log_probs = log_softmax(scores);
                let entropy: f64 = log_probs
                    .iter()
                    .map(|&l| {
                        let product = l as f64 * (l as f64).exp();
                        if product.is_nan() { 0.0 } else { -product }
                    })
                    .sum();
                let shifted: Vec<f32> = log_probs
                    .iter()
                    .map(|&l| ((-l) - entropy as f32).abs())
                    .collect();
                let order = argsort(&shifted, false);
                let sorted_logits: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
                let probs = softmax(&sorted_logits);
                let mut cumulative = 0.0f64;
                let mut last = 0usize;
                for &p in &probs {
                    cumulative += p as f64;
                    if (cumulative as f32) < *mass {
                        last += 1;
                    }
                }
                let last = last.min(order.len() - 1);
                let limit = shifted[order[last]];
                for (rank, &index) in order.iter().enumerate() {
                    if rank >= *min_tokens_to_keep && shifted[index] > limit {
                        scores[index] = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }
}

/// Every score -inf but those of `tokens`, 0.
fn force(scores: &mut [f32], tokens: &[u32]) {
    scores.fill(f32::NEG_INFINITY);
    for &token in tokens {
        if let Some(score) = scores.get_mut(token as usize) {
            *score = 0.0;
        }
    }
}

fn forbid(scores: &mut [f32], tokens: &[u32]) {
    for &token in tokens {
        if let Some(score) = scores.get_mut(token as usize) {
            *score = f32::NEG_INFINITY;
        }
    }
}

/// Tokens that would complete an n-gram already in `history` (transformers'
/// `_calc_banned_ngram_tokens`).
fn banned_ngram_tokens(history: &[u32], ngram_size: usize) -> Vec<u32> {
    if ngram_size == 0 || history.len() + 1 < ngram_size {
        return Vec::new();
    }
    let mut following: HashMap<&[u32], Vec<u32>> = HashMap::new();
    for window in history.windows(ngram_size) {
        let (&last, prefix) = window.split_last().expect("ngram_size > 0");
        following.entry(prefix).or_default().push(last);
    }
    let start = history.len() + 1 - ngram_size;
    following.remove(&history[start..]).unwrap_or_default()
}

/// Indices that sort `values` (ascending, or descending), ties by index.
fn argsort(values: &[f32], descending: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    if descending {
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    } else {
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    }
    order
}

/// Softmax in f32 with the sum in f64; all -inf gives all zeros.
pub(crate) fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return vec![0.0; scores.len()];
    }
    let exps: Vec<f32> = scores.iter().map(|&s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().map(|&e| e as f64).sum();
    exps.iter().map(|&e| (e as f64 / sum) as f32).collect()
}

/// `log_softmax` in f32 with the sum in f64.
pub(crate) fn log_softmax(scores: &[f32]) -> Vec<f32> {
    let mut log_probs = scores.to_vec();
    log_softmax_in_place(&mut log_probs);
    log_probs
}

/// [`log_softmax`] overwriting its input.
pub(crate) fn log_softmax_in_place(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        scores.fill(f32::NEG_INFINITY);
        return;
    }
    let sum: f64 = scores.iter().map(|&s| ((s - max) as f64).exp()).sum();
    let log_sum = sum.ln() as f32;
    for score in scores {
        *score = *score - max - log_sum;
    }
}

/// A chain of processors applied in order; [`LogitsProcessorList::from_config`] builds the
/// one `generate()` builds (`GenerationMixin._get_logits_processor`).
#[derive(Debug, Default)]
pub struct LogitsProcessorList {
    processors: Vec<Box<dyn LogitsProcessor>>,
}

impl LogitsProcessorList {
    /// A chain of the given processors.
    pub fn new(processors: Vec<Box<dyn LogitsProcessor>>) -> Self {
        Self { processors }
    }

    /// Adds a processor at the end of the chain.
    pub fn push(&mut self, processor: impl LogitsProcessor + 'static) {
        self.processors.push(Box::new(processor));
    }

    /// The chain for `config` and a decoder prompt of `prompt_length` tokens (the padded
    /// prompt; 1, the start token, for encoder-decoder models), stopping at the length
    /// `config` resolves to without a model limit: see
    /// [`LogitsProcessorList::for_generation`].
    pub fn from_config(config: &GenerationConfig, prompt_length: usize) -> Self {
        let max_length = config.resolved_max_length(prompt_length, None);
        Self::for_generation(config, prompt_length, max_length)
    }

    /// The chain for `config`, a decoder prompt of `prompt_length` tokens and decoding up to
    /// `max_length` tokens, in transformers' order: repetition penalty, no-repeat n-gram, bad
    /// words, min length, min new tokens, forced BOS, forced EOS; then, when sampling,
    /// temperature, top-k, top-p, min-p, typical-p.
    pub fn for_generation(
        config: &GenerationConfig,
        prompt_length: usize,
        max_length: usize,
    ) -> Self {
        let mut processors: Vec<Builtin> = Vec::new();
        let eos = &config.eos_token_id;
        if config.repetition_penalty != 1.0 {
            processors.push(Builtin::RepetitionPenalty {
                penalty: config.repetition_penalty,
            });
        }
        if config.no_repeat_ngram_size > 0 {
            processors.push(Builtin::NoRepeatNGram {
                ngram_size: config.no_repeat_ngram_size,
            });
        }
        if !config.bad_words_ids.is_empty() {
            let sequences = config
                .bad_words_ids
                .iter()
                .filter(|sequence| !(sequence.len() == 1 && eos.contains(&sequence[0])))
                .cloned()
                .collect();
            processors.push(Builtin::NoBadWords { sequences });
        }
        let min_length = config.resolved_min_length(prompt_length);
        if !eos.is_empty() && min_length > 0 {
            processors.push(Builtin::MinLength {
                min_length,
                eos_token_ids: eos.clone(),
            });
        }
        if let Some(min_new_tokens) = config.min_new_tokens
            && !eos.is_empty()
            && min_new_tokens > 0
        {
            processors.push(Builtin::MinNewTokens {
                prompt_length,
                min_new_tokens,
                eos_token_ids: eos.clone(),
            });
        }
        if let Some(bos_token_id) = config.forced_bos_token_id {
            processors.push(Builtin::ForcedBos { bos_token_id });
        }
        if !config.forced_eos_token_id.is_empty() {
            processors.push(Builtin::ForcedEos {
                max_length,
                eos_token_ids: config.forced_eos_token_id.clone(),
            });
        }
        if config.do_sample {
            // With beams, keep at least one token besides the end-of-sequence ones.
            let min_tokens_to_keep = if config.num_beams > 1 {
                eos.len().max(1) + 1
            } else {
                1
            };
            if config.temperature != 1.0 {
                processors.push(Builtin::Temperature {
                    temperature: config.temperature,
                });
            }
            if config.top_k != 0 {
                processors.push(Builtin::TopK {
                    top_k: config.top_k.max(min_tokens_to_keep),
                });
            }
            if config.top_p < 1.0 {
                processors.push(Builtin::TopP {
                    top_p: config.top_p,
                    min_tokens_to_keep,
                });
            }
            if let Some(min_p) = config.min_p {
                processors.push(Builtin::MinP {
                    min_p,
                    min_tokens_to_keep,
                });
            }
            if config.typical_p < 1.0 {
                processors.push(Builtin::Typical {
                    mass: config.typical_p,
                    min_tokens_to_keep,
                });
            }
        }
        Self {
            processors: processors
                .into_iter()
                .map(|processor| Box::new(processor) as Box<dyn LogitsProcessor>)
                .collect(),
        }
    }

    /// The processors, in order.
    pub fn processors(&self) -> &[Box<dyn LogitsProcessor>] {
        &self.processors
    }

    /// The processors' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.processors
            .iter()
            .map(|processor| processor.name())
            .collect()
    }

    /// Whether the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.processors.is_empty()
    }

    /// Applies every processor in order to one row.
    ///
    /// # Shapes
    /// `history`: the row's tokens so far; `scores`: vocab.
    pub fn apply(&self, history: &[u32], scores: &mut [f32]) {
        for processor in &self.processors {
            processor.apply(history, scores);
        }
    }
}
