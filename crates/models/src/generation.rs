//! What a model gives the generation engine (oxformer-pipelines' `generation`): the
//! [`Generative`] trait, which decoder-only and encoder-decoder models implement in their own
//! files, and the [`Prompts`] it starts from.
//!
//! The engine's loop, for any model (transformers/generation/utils.py `GenerationMixin`):
//!
//! 1. [`Generative::start`] runs what happens once per input (nothing for GPT-2; the encoder and
//!    its cross-attention keys and values for T5/BART/Marian) and gives each row's first decoder
//!    ids (the left-padded prompt; `[decoder_start_token_id]`).
//! 2. [`Generative::forward_last`] runs the ids the cache does not hold yet and returns the
//!    next-token logits of each row; the model derives positions and masks itself.
//! 3. Beam search moves rows with [`Generative::reorder_cache`].

use ndarray::{Array2, ArrayView2};

use crate::error::{Error, Result};

/// The name in errors about prompts.
const GENERATION: &str = "generation";

/// A model the generation engine can drive: decoder-only (GPT-2) or encoder-decoder (T5, BART,
/// Marian).
///
/// Rows: the engine decodes `inputs × expand` rows (`expand` is `num_beams`, or
/// `num_return_sequences` when sampling); row `r` belongs to input `r / expand`.
pub trait Generative: Send + Sync {
    /// What is kept between steps: the decoder's self-attention keys and values, the
    /// encoder-decoder models' cross-attention keys and values (computed once per input and
    /// shared by that input's rows, never copied per row), and what the model needs to derive
    /// positions and masks (the prompts' padding, the encoder's padding).
    type Cache: Send;

    /// Size of the vocabulary (the logits' width).
    fn vocab_size(&self) -> usize;

    /// The most decoder positions the model can take, if limited.
    fn max_positions(&self) -> Option<usize>;

    /// Whether the prompt goes to an encoder (`config.is_encoder_decoder`): then the decoder
    /// starts from `decoder_start_token_id` and the prompt is not part of the sequences.
    fn is_encoder_decoder(&self) -> bool;

    /// Runs what happens once per input and returns the cache for `prompts.len() × expand`
    /// rows, with room for `capacity` decoder positions per row, and the ids each row feeds to
    /// the decoder first: decoder-only models, the padded prompt (row `r` is prompt
    /// `r / expand`); encoder-decoder models, `[decoder_start_token_id]`, after running the
    /// encoder once per prompt and computing the cross-attention keys and values.
    ///
    /// # Errors
    /// Prompts the model cannot take (ids, too many positions); an encoder-decoder model
    /// without `decoder_start_token_id`.
    fn start(
        &self,
        prompts: &Prompts,
        expand: usize,
        capacity: usize,
        decoder_start_token_id: Option<u32>,
    ) -> Result<(Self::Cache, Vec<Vec<u32>>)>;

    /// Runs `input_ids` after the positions `cache` holds, appends them to it, and returns the
    /// logits of each row's last new position.
    ///
    /// # Shapes
    /// `input_ids`: (rows, new); result: (rows, vocab).
    ///
    /// # Errors
    /// Ids the model cannot take, more positions than the cache or the model holds.
    fn forward_last(
        &self,
        input_ids: ArrayView2<'_, u32>,
        cache: &mut Self::Cache,
    ) -> Result<Array2<f32>>;

    /// As [`Generative::forward_last`], for greedy decoding without logits processors: a model
    /// that can find each row's largest logit (first on ties) without computing all of them
    /// returns the tokens; by default, the logits.
    ///
    /// # Errors
    /// As [`Generative::forward_last`].
    fn forward_last_greedy(
        &self,
        input_ids: ArrayView2<'_, u32>,
        cache: &mut Self::Cache,
    ) -> Result<NextStep> {
        self.forward_last(input_ids, cache).map(NextStep::Logits)
    }

    /// Beam search: row `i` of the decoder's cache becomes old row `rows[i]`
    /// (`Cache.reorder_cache(beam_idx)`). `rows[i]` always belongs to the same input as `i`, so
    /// per-input state (the cross-attention keys and values) stays where it is.
    ///
    /// # Errors
    /// When `rows` does not fit the cache.
    fn reorder_cache(&self, cache: &mut Self::Cache, rows: &[usize]) -> Result<()>;
}

/// What a decoding step of the model gives: the logits of each row's last position, or, from
/// [`Generative::forward_last_greedy`], directly the largest one's id.
#[derive(Clone, Debug)]
pub enum NextStep {
    /// (rows, vocab).
    Logits(Array2<f32>),
    /// One id per row.
    Tokens(Vec<u32>),
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
        Self::padded(prompts, pad_token_id, true)
    }

    /// Prompts right-padded with `pad_token_id` to the longest (what tokenizers of
    /// encoder-decoder models do).
    ///
    /// # Errors
    /// When there is no prompt or a prompt is empty.
    pub fn right_padded(prompts: &[Vec<u32>], pad_token_id: u32) -> Result<Self> {
        Self::padded(prompts, pad_token_id, false)
    }

    fn padded(prompts: &[Vec<u32>], pad_token_id: u32, left: bool) -> Result<Self> {
        if prompts.is_empty() {
            return Err(input_error("no prompt to generate from".into()));
        }
        if let Some(index) = prompts.iter().position(Vec::is_empty) {
            return Err(input_error(format!(
                "prompt {index} has no tokens to generate from"
            )));
        }
        let length = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(prompts.len());
        let mut attention_mask = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let padding = length - prompt.len();
            let (mut ids, mut mask) = (Vec::with_capacity(length), Vec::with_capacity(length));
            if left {
                ids.resize(padding, pad_token_id);
                mask.resize(padding, 0);
            }
            ids.extend_from_slice(prompt);
            mask.resize(mask.len() + prompt.len(), 1);
            ids.resize(length, pad_token_id);
            mask.resize(length, 0);
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
            return Err(input_error("no prompt to generate from".into()));
        }
        if input_ids.len() != attention_mask.len()
            || input_ids
                .iter()
                .zip(&attention_mask)
                .any(|(ids, mask)| ids.len() != length || mask.len() != length)
        {
            return Err(input_error(
                "input_ids and attention_mask must be rows of one length".into(),
            ));
        }
        if let Some(index) = attention_mask.iter().position(|mask| !mask.contains(&1)) {
            return Err(input_error(format!(
                "prompt {index} has no real token (its attention mask is all 0)"
            )));
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
    pub fn expanded(&self, times: usize) -> Self {
        let repeat = |rows: &[Vec<u32>]| {
            rows.iter()
                .flat_map(|row| std::iter::repeat_n(row.clone(), times))
                .collect()
        };
        Self {
            input_ids: repeat(&self.input_ids),
            attention_mask: repeat(&self.attention_mask),
        }
    }

    /// The ids as one (prompts, length) matrix.
    pub fn input_ids_matrix(&self) -> Array2<u32> {
        to_matrix(&self.input_ids)
    }

    /// The mask as one (prompts, length) matrix.
    pub fn attention_mask_matrix(&self) -> Array2<u32> {
        to_matrix(&self.attention_mask)
    }
}

fn to_matrix(rows: &[Vec<u32>]) -> Array2<u32> {
    let length = rows.first().map_or(0, Vec::len);
    Array2::from_shape_fn((rows.len(), length), |(row, column)| rows[row][column])
}

fn input_error(reason: String) -> Error {
    Error::Input {
        model: GENERATION.to_string(),
        reason,
    }
}
