//! What every encoder takes and returns: [`EncoderInput`] and [`EncoderOutput`].

use ndarray::{Array2, Array3, ArrayView2};

use crate::error::{Error, Result};

/// A right-padded batch of token ids for an encoder.
///
/// # Shapes
/// `input_ids`, `attention_mask`, `token_type_ids`: (batch, seq). `attention_mask` is 1 for real
/// tokens and 0 for padding; every row needs at least one 1.
#[derive(Debug, Clone, Copy)]
pub struct EncoderInput<'a> {
    /// Token ids, below the model's vocabulary size.
    pub input_ids: ArrayView2<'a, u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: ArrayView2<'a, u32>,
    /// Segment ids (BERT-like models); `None` means all 0, as in transformers.
    pub token_type_ids: Option<ArrayView2<'a, u32>>,
}

impl<'a> EncoderInput<'a> {
    /// Ids and mask, no token types.
    pub fn new(input_ids: ArrayView2<'a, u32>, attention_mask: ArrayView2<'a, u32>) -> Self {
        Self {
            input_ids,
            attention_mask,
            token_type_ids: None,
        }
    }

    /// With segment ids.
    pub fn with_token_type_ids(mut self, token_type_ids: ArrayView2<'a, u32>) -> Self {
        self.token_type_ids = Some(token_type_ids);
        self
    }

    /// Number of sequences.
    pub fn batch_size(&self) -> usize {
        self.input_ids.nrows()
    }

    /// Padded length of every sequence.
    pub fn seq_len(&self) -> usize {
        self.input_ids.ncols()
    }

    /// Checks shapes and the mask, and that `seq_len` is at most `max_len`.
    ///
    /// # Errors
    /// [`Error::Input`] naming what is wrong.
    pub(crate) fn validate(&self, model: &str, max_len: usize) -> Result<()> {
        let invalid = |reason: String| Error::Input {
            model: model.to_string(),
            reason,
        };
        let shape = self.input_ids.dim();
        if shape.0 == 0 || shape.1 == 0 {
            return Err(invalid(format!(
                "input_ids has shape {shape:?}; an encoder needs at least one sequence of at least one token"
            )));
        }
        if self.attention_mask.dim() != shape {
            return Err(invalid(format!(
                "attention_mask has shape {:?}, input_ids {shape:?}",
                self.attention_mask.dim()
            )));
        }
        if let Some(types) = &self.token_type_ids
            && types.dim() != shape
        {
            return Err(invalid(format!(
                "token_type_ids has shape {:?}, input_ids {shape:?}",
                types.dim()
            )));
        }
        if shape.1 > max_len {
            return Err(invalid(format!(
                "sequences of {} tokens are longer than the {max_len} this model allows \
                 (max_position_embeddings); truncate or window the input",
                shape.1
            )));
        }
        for (row, mask) in self.attention_mask.rows().into_iter().enumerate() {
            if let Some(&value) = mask.iter().find(|&&value| value > 1) {
                return Err(invalid(format!(
                    "attention_mask holds {value} in row {row}; only 0 and 1 are allowed"
                )));
            }
            if mask.iter().all(|&value| value == 0) {
                return Err(invalid(format!(
                    "attention_mask row {row} is all 0: the sequence has no token to attend to"
                )));
            }
        }
        Ok(())
    }

    /// The attention mask as f32 key-padding weights (1 = attend), for the attention kernel.
    pub(crate) fn key_padding(&self) -> Array2<f32> {
        self.attention_mask.mapv(|value| value as f32)
    }
}

/// What an encoder's forward pass computes besides the last hidden state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardOptions {
    /// Also return every layer's output (transformers' `output_hidden_states=True`).
    pub output_hidden_states: bool,
    /// Compute only the positions whose mask is 1 (token-wise work on packed tokens; only
    /// attention sees sequence boundaries). Attended positions come out as with padding; padded
    /// positions of the outputs are 0 instead of transformers' values there. A batch whose first
    /// position is padding in some row (left padding) is run padded, so that position 0, which
    /// a pooler reads, is always computed.
    pub skip_padding: bool,
}

/// What an encoder body returns.
///
/// # Shapes
/// `last_hidden_state` and each of `hidden_states`: (batch, seq, hidden); `pooler_output`:
/// (batch, hidden).
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// The last layer's output.
    pub last_hidden_state: Array3<f32>,
    /// BERT's pooler (tanh of a dense layer on the first token), when the model has one.
    pub pooler_output: Option<Array2<f32>>,
    /// When requested: the embeddings' output, then every layer's (so `num_layers + 1` entries,
    /// the last equal to `last_hidden_state`), as transformers' `output_hidden_states=True`.
    /// Empty otherwise.
    pub hidden_states: Vec<Array3<f32>>,
}

/// Which token rows a forward pass computes, and where they sit in the (batch, seq) grid.
///
/// Token-wise work (embeddings, every Linear, LayerNorm) runs on a (rows, hidden) matrix;
/// only attention sees sequence boundaries.
#[derive(Debug, Clone)]
pub(crate) enum TokenLayout {
    /// Every (batch, seq) position, padding included: rows = batch · seq, row `b · seq + t`.
    /// Padded positions are computed as transformers computes them (queries that attend to the
    /// real keys), so every output matches transformers'.
    Padded { batch: usize, seq: usize },
    /// Only positions whose mask is 1, sequence after sequence: no work is spent on padding.
    /// Padded positions of the outputs are 0. Used only when position 0 of every sequence is
    /// real (the usual right padding).
    Packed {
        batch: usize,
        seq: usize,
        /// (b, t) of each row.
        positions: Vec<(usize, usize)>,
        /// The rows of each sequence.
        sequences: Vec<std::ops::Range<usize>>,
    },
}

impl TokenLayout {
    pub(crate) fn new(input: &EncoderInput<'_>, skip_padding: bool) -> Self {
        let (batch, seq) = input.input_ids.dim();
        let has_padding = input.attention_mask.iter().any(|&value| value == 0);
        // The pooler and the classification heads read position 0: it must be computed, so
        // batches padded on the left are run padded.
        let first_positions_real = input
            .attention_mask
            .column(0)
            .iter()
            .all(|&value| value != 0);
        if !skip_padding || !has_padding || !first_positions_real {
            return Self::Padded { batch, seq };
        }
        let mut positions = Vec::new();
        let mut sequences = Vec::with_capacity(batch);
        for (b, mask) in input.attention_mask.rows().into_iter().enumerate() {
            let start = positions.len();
            positions.extend(
                mask.iter()
                    .enumerate()
                    .filter(|&(_, &value)| value != 0)
                    .map(|(t, _)| (b, t)),
            );
            sequences.push(start..positions.len());
        }
        Self::Packed {
            batch,
            seq,
            positions,
            sequences,
        }
    }

    pub(crate) fn batch(&self) -> usize {
        match self {
            Self::Padded { batch, .. } | Self::Packed { batch, .. } => *batch,
        }
    }

    pub(crate) fn seq(&self) -> usize {
        match self {
            Self::Padded { seq, .. } | Self::Packed { seq, .. } => *seq,
        }
    }

    /// Number of rows computed.
    pub(crate) fn rows(&self) -> usize {
        match self {
            Self::Padded { batch, seq } => batch * seq,
            Self::Packed { positions, .. } => positions.len(),
        }
    }

    /// (b, t) of row `row`.
    pub(crate) fn position(&self, row: usize) -> (usize, usize) {
        match self {
            Self::Padded { seq, .. } => (row / seq, row % seq),
            Self::Packed { positions, .. } => positions[row],
        }
    }

    /// A (rows, width) matrix laid out on the (batch, seq) grid; skipped positions are 0.
    ///
    /// # Shapes
    /// `matrix`: (rows, width); result: (batch, seq, width).
    pub(crate) fn unpack(&self, matrix: Array2<f32>) -> Array3<f32> {
        let width = matrix.ncols();
        match self {
            Self::Padded { batch, seq } => matrix
                .into_shape_with_order((*batch, *seq, width))
                .expect("hidden states are contiguous"),
            Self::Packed {
                batch,
                seq,
                positions,
                ..
            } => {
                let mut out = Array3::<f32>::zeros((*batch, *seq, width));
                for (row, &(b, t)) in matrix.rows().into_iter().zip(positions) {
                    out.slice_mut(ndarray::s![b, t, ..]).assign(&row);
                }
                out
            }
        }
    }
}
