//! What the encoder-decoder models ([`crate::t5`], [`crate::bart`], [`crate::marian`]) share:
//! the decoder's [`Seq2SeqCache`] and the attention steps that read and write it.
//!
//! The encoder runs once per input. Each decoder layer's cross-attention keys and values are
//! computed from its output once, per input, and kept in the cache; the decoder rows of that input
//! (beams, returned sequences) all read them, so nothing is copied per row. The self-attention keys
//! and values of the decoder rows are appended step by step into buffers allocated once for the
//! whole generation (transformers' `EncoderDecoderCache` of two `DynamicCache`s, preallocated).

use std::sync::{Mutex, PoisonError};

use ndarray::{Array2, Array4, ArrayView2, ArrayView4, ArrayViewMut2, Axis, s};
use oxformer_tensor::{AttentionMask, attention_into, for_each_part};

use crate::error::{Error, Result};
use crate::generation::{NextStep, Prompts};
use crate::input::EncoderInput;

/// The decoder's keys and values for a batch of `inputs × rows_per_input` decoder rows.
///
/// Row `r` belongs to input `r / rows_per_input`. [`Seq2SeqCache::reorder_rows`] (beam search)
/// moves self-attention rows only between rows of the same input, so the cross-attention part,
/// one per input, never moves.
#[derive(Clone, Debug)]
pub struct Seq2SeqCache {
    /// Per decoder layer: (rows, heads, capacity, head_dim).
    keys: Vec<Array4<f32>>,
    /// Per decoder layer: (rows, heads, capacity, head_dim).
    values: Vec<Array4<f32>>,
    len: usize,
    /// Per decoder layer: the encoder output's keys and values side by side,
    /// (inputs × source, 2 × heads × head_dim).
    cross: Vec<Array2<f32>>,
    /// (inputs, source): 1 for real encoder tokens, 0 for padding.
    encoder_padding: Array2<f32>,
    rows_per_input: usize,
    heads: usize,
    head_dim: usize,
}

impl Seq2SeqCache {
    /// An empty self-attention cache for `inputs × rows_per_input` rows of up to `capacity`
    /// positions, around the cross-attention keys and values `cross` (one matrix per layer).
    pub(crate) fn new(
        cross: Vec<Array2<f32>>,
        encoder_padding: Array2<f32>,
        (heads, head_dim): (usize, usize),
        rows_per_input: usize,
        capacity: usize,
    ) -> Self {
        let rows = encoder_padding.nrows() * rows_per_input;
        let shape = (rows, heads, capacity, head_dim);
        let layers = cross.len();
        Self {
            keys: (0..layers).map(|_| Array4::zeros(shape)).collect(),
            values: (0..layers).map(|_| Array4::zeros(shape)).collect(),
            len: 0,
            cross,
            encoder_padding,
            rows_per_input,
            heads,
            head_dim,
        }
    }

    /// Number of decoder positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no decoder position is stored yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of decoder positions it can hold.
    pub fn capacity(&self) -> usize {
        self.keys.first().map_or(0, |keys| keys.dim().2)
    }

    /// Number of decoder rows: `inputs × rows_per_input`.
    pub fn rows(&self) -> usize {
        self.inputs() * self.rows_per_input
    }

    /// Number of encoder inputs.
    pub fn inputs(&self) -> usize {
        self.encoder_padding.nrows()
    }

    /// Decoder rows per input (beams × returned sequences).
    pub fn rows_per_input(&self) -> usize {
        self.rows_per_input
    }

    /// Padded length of the encoder inputs.
    pub fn source_len(&self) -> usize {
        self.encoder_padding.ncols()
    }

    /// Forgets the decoder positions (the encoder's keys and values stay).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Row `i` of the self-attention cache becomes the old row `rows[i]`, as transformers'
    /// `EncoderDecoderCache.reorder_cache(beam_idx)`; `rows[i]` must belong to the same input as
    /// `i`, so that the cross-attention keys and values stay where they are.
    ///
    /// # Errors
    /// When `rows` has another length than [`Seq2SeqCache::rows`], names a row that does not
    /// exist, or moves a row to another input.
    pub fn reorder_rows(&mut self, rows: &[usize]) -> Result<()> {
        let count = self.rows();
        let per_input = self.rows_per_input;
        if rows.len() != count
            || rows.iter().enumerate().any(|(target, &source)| {
                source >= count || source / per_input != target / per_input
            })
        {
            return Err(Error::Input {
                model: "Seq2SeqCache".to_string(),
                reason: format!(
                    "cannot reorder {count} rows ({per_input} per input) by {rows:?}: each row must \
                     come from a row of the same input"
                ),
            });
        }
        if rows
            .iter()
            .enumerate()
            .all(|(target, &source)| target == source)
        {
            return Ok(());
        }
        // only the rows that change are written, in place, in an order that reads each old row
        // before it is overwritten; the buffers are independent, one part each
        let moves = reorder_moves(rows);
        let (len, heads, head_dim) = (self.len, self.heads, self.head_dim);
        let buffers: Vec<Mutex<&mut Array4<f32>>> = self
            .keys
            .iter_mut()
            .chain(self.values.iter_mut())
            .map(Mutex::new)
            .collect();
        for_each_part(buffers.len(), |index| {
            let mut buffer = buffers[index]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let capacity = buffer.dim().2;
            let data = buffer
                .as_slice_mut()
                .expect("cache buffers are allocated in standard layout");
            // a row's stored positions: per head, len × head_dim values from here
            let head_start = |row: usize, head: usize| (row * heads + head) * capacity * head_dim;
            let stored = len * head_dim;
            let mut saved = vec![0.0f32; heads * stored];
            for &step in &moves {
                for head in 0..heads {
                    let saved_head = head * stored..(head + 1) * stored;
                    match step {
                        Move::Copy { from, to } => {
                            let from = head_start(from, head);
                            data.copy_within(from..from + stored, head_start(to, head));
                        }
                        Move::Save(row) => {
                            let from = head_start(row, head);
                            saved[saved_head].copy_from_slice(&data[from..from + stored]);
                        }
                        Move::Restore(row) => {
                            let to = head_start(row, head);
                            data[to..to + stored].copy_from_slice(&saved[saved_head]);
                        }
                    }
                }
            }
        });
        Ok(())
    }

    /// Checks that `rows` decoder rows of `new` positions fit after what is stored.
    pub(crate) fn check_step(&self, model: &str, rows: usize, new: usize) -> Result<()> {
        if rows != self.rows() || self.len + new > self.capacity() {
            return Err(Error::Input {
                model: model.to_string(),
                reason: format!(
                    "the decoder cache holds {} rows of up to {} positions ({} used), but {rows} rows \
                     of {new} more were given",
                    self.rows(),
                    self.capacity(),
                    self.len
                ),
            });
        }
        Ok(())
    }

    /// Records that `new` positions were appended by every layer.
    pub(crate) fn advance(&mut self, new: usize) {
        self.len += new;
    }

    /// Layer `index`'s self-attention buffers and cross-attention keys and values.
    pub(crate) fn layer(&mut self, index: usize) -> LayerCache<'_> {
        let (heads, head_dim) = (self.heads, self.head_dim);
        let (inputs, source) = self.encoder_padding.dim();
        let cross = self.cross[index]
            .view()
            .into_shape_with_order((inputs, source, 2, heads, head_dim))
            .expect("cross keys and values are (inputs × source, 2 × inner)");
        // (inputs, source, heads, head_dim) → (inputs, heads, source, head_dim)
        let part = |index: usize| {
            cross
                .index_axis_move(Axis(2), index)
                .permuted_axes([0, 2, 1, 3])
        };
        LayerCache {
            keys: &mut self.keys[index],
            values: &mut self.values[index],
            cross_keys: part(0),
            cross_values: part(1),
            encoder_padding: self.encoder_padding.view(),
            past: self.len,
            rows_per_input: self.rows_per_input,
        }
    }
}

/// One step of a reorder done in place ([`reorder_moves`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Move {
    /// Row `to` becomes row `from`.
    Copy { from: usize, to: usize },
    /// Row `row` is kept aside (one row at a time).
    Save(usize),
    /// Row `row` becomes the row kept aside.
    Restore(usize),
}

/// The moves that make row `i` the old row `rows[i]` for every `i`, in place, writing only the
/// rows that change: a row is overwritten once no other row still has to read it; each cycle
/// (rows that take each other's, as a swap) goes through one row kept aside.
fn reorder_moves(rows: &[usize]) -> Vec<Move> {
    let count = rows.len();
    let changes = |target: usize| rows[target] != target;
    // readers[r]: rows still to be written that read the old row r
    let mut readers = vec![0usize; count];
    for (target, &source) in rows.iter().enumerate() {
        if changes(target) {
            readers[source] += 1;
        }
    }
    let mut written = vec![false; count];
    let mut moves = Vec::new();
    let mut ready: Vec<usize> = (0..count)
        .filter(|&target| changes(target) && readers[target] == 0)
        .collect();
    // the cycle being undone: its first row, kept aside
    let mut aside = None;
    loop {
        while let Some(target) = ready.pop() {
            let source = rows[target];
            if aside == Some(source) {
                moves.push(Move::Restore(target));
                aside = None;
            } else {
                moves.push(Move::Copy {
                    from: source,
                    to: target,
                });
                readers[source] -= 1;
                if readers[source] == 0 && changes(source) && !written[source] {
                    ready.push(source);
                }
            }
            written[target] = true;
        }
        // what is left are cycles, each row read by the one before it
        let Some(start) = (0..count).find(|&target| changes(target) && !written[target]) else {
            break;
        };
        moves.push(Move::Save(start));
        aside = Some(start);
        readers[start] = 0;
        ready.push(start);
    }
    moves
}

/// One decoder layer's view of a [`Seq2SeqCache`].
pub(crate) struct LayerCache<'a> {
    /// (rows, heads, capacity, head_dim).
    pub(crate) keys: &'a mut Array4<f32>,
    pub(crate) values: &'a mut Array4<f32>,
    /// (inputs, heads, source, head_dim).
    pub(crate) cross_keys: ArrayView4<'a, f32>,
    pub(crate) cross_values: ArrayView4<'a, f32>,
    /// (inputs, source).
    pub(crate) encoder_padding: ArrayView2<'a, f32>,
    /// Positions stored before this step.
    pub(crate) past: usize,
    pub(crate) rows_per_input: usize,
}

impl LayerCache<'_> {
    /// Writes the new keys and values of a fused query/key/value product into the self-attention
    /// buffers, after the `past` stored positions; returns the queries as
    /// (rows, heads, new, head_dim) and the keys and values stored so far, as
    /// (rows, heads, past + new, head_dim).
    ///
    /// # Shapes
    /// `qkv`: (rows × new, 3 × heads × head_dim), each row `[q | k | v]`.
    pub(crate) fn append<'q>(
        &mut self,
        qkv: ArrayView2<'q, f32>,
        rows: usize,
    ) -> (
        ArrayView4<'q, f32>,
        ArrayView4<'_, f32>,
        ArrayView4<'_, f32>,
    ) {
        let (_, heads, _, head_dim) = self.keys.dim();
        let new = qkv.nrows() / rows;
        let total = self.past + new;
        let qkv = qkv
            .into_shape_with_order((rows, new, 3, heads, head_dim))
            .expect("the QKV product is (rows × new, 3 × inner)");
        let part = |index: usize| {
            qkv.index_axis_move(Axis(2), index)
                .permuted_axes([0, 2, 1, 3])
        };
        self.keys
            .slice_mut(s![.., .., self.past..total, ..])
            .assign(&part(1));
        self.values
            .slice_mut(s![.., .., self.past..total, ..])
            .assign(&part(2));
        (
            part(0),
            self.keys.slice(s![.., .., ..total, ..]),
            self.values.slice(s![.., .., ..total, ..]),
        )
    }

    /// Causal self-attention of the new positions over every stored one (`scale · Q·Kᵀ`, the
    /// fused kernel), after [`LayerCache::append`]; the heads side by side into `context`.
    ///
    /// # Shapes
    /// `qkv`: (rows × new, 3 × inner); `context`: (rows × new, inner).
    pub(crate) fn self_attention_into(
        &mut self,
        qkv: ArrayView2<'_, f32>,
        rows: usize,
        scale: f32,
        context: ArrayViewMut2<'_, f32>,
    ) {
        let (queries, keys, values) = self.append(qkv, rows);
        let (_, heads, new, head_dim) = queries.dim();
        let mask = AttentionMask {
            key_padding: None,
            causal: true,
            bias: None,
        };
        let out = context
            .into_shape_with_order((rows, new, heads, head_dim))
            .expect("context is (rows × new, inner)")
            .permuted_axes([0, 2, 1, 3]);
        attention_into(queries, keys, values, &mask, scale, out);
    }

    /// Cross-attention of the decoder rows' queries over their input's encoder keys and values
    /// (no copy per row: the rows of one input are that input's queries, side by side).
    ///
    /// # Shapes
    /// `query`: (rows × new, inner); `context`: (rows × new, inner).
    pub(crate) fn cross_attention_into(
        &self,
        query: ArrayView2<'_, f32>,
        scale: f32,
        context: ArrayViewMut2<'_, f32>,
    ) {
        let (inputs, heads, _, head_dim) = self.cross_keys.dim();
        // the rows of one input are consecutive: (inputs, rows_per_input × new) queries each
        let queries_per_input = query.nrows() / inputs;
        let queries = query
            .into_shape_with_order((inputs, queries_per_input, heads, head_dim))
            .expect("queries are (rows × new, inner)")
            .permuted_axes([0, 2, 1, 3]);
        let out = context
            .into_shape_with_order((inputs, queries_per_input, heads, head_dim))
            .expect("context is (rows × new, inner)")
            .permuted_axes([0, 2, 1, 3]);
        let mask = AttentionMask {
            key_padding: Some(self.encoder_padding),
            causal: false,
            bias: None,
        };
        debug_assert_eq!(queries_per_input % self.rows_per_input, 0);
        attention_into(
            queries,
            self.cross_keys,
            self.cross_values,
            &mask,
            scale,
            out,
        );
    }
}

/// The decoder's inputs checked against the vocabulary: every id below `vocab`.
pub(crate) fn check_ids(model: &str, ids: ArrayView2<'_, u32>, vocab: usize) -> Result<()> {
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(Error::Input {
            model: model.to_string(),
            reason: format!("token id {id} is not below vocab_size {vocab}"),
        });
    }
    Ok(())
}

/// What a decoder pass returns.
///
/// # Shapes
/// `logits`: (rows, new, vocab); each of `hidden_states`: (rows, new, d_model).
#[derive(Clone, Debug)]
pub struct DecoderOutput {
    /// The LM head's scores of every new position.
    pub logits: ndarray::Array3<f32>,
    /// When asked for, as transformers' `decoder_hidden_states`: the embeddings' output, then
    /// each layer's (the last after the final norm where the model has one); empty otherwise.
    pub hidden_states: Vec<ndarray::Array3<f32>>,
}

/// [`crate::generation::Generative::start`] of the encoder-decoder models: `run` runs the encoder
/// once per prompt (`rows_per_input` decoder rows each) into a cache of `capacity` positions;
/// every row starts from `decoder_start_token_id`, or the config's when the call gives none.
pub(crate) fn start_generation(
    model: &str,
    prompts: &Prompts,
    decoder_start_token_id: Option<u32>,
    config_start: Option<u32>,
    run: impl FnOnce(&EncoderInput<'_>) -> Result<Seq2SeqCache>,
) -> Result<(Seq2SeqCache, Vec<Vec<u32>>)> {
    let start = decoder_start_token_id
        .or(config_start)
        .ok_or_else(|| Error::Input {
            model: model.to_string(),
            reason:
                "no decoder_start_token_id (neither in the generation config nor in config.json): \
                 the decoder has nothing to start from"
                    .to_string(),
        })?;
    let input_ids = prompts.input_ids_matrix();
    let attention_mask = prompts.attention_mask_matrix();
    let cache = run(&EncoderInput::new(input_ids.view(), attention_mask.view()))?;
    let rows = cache.rows();
    Ok((cache, vec![vec![start]; rows]))
}

/// [`crate::generation::Generative::forward_last_greedy`] of the encoder-decoder models: the
/// screened ids when the head's screen decides every row, else the logits.
pub(crate) fn greedy_step(
    hidden: Array2<f32>,
    greedy_tokens: impl FnOnce(ArrayView2<'_, f32>) -> Option<Vec<u32>>,
    logits: impl FnOnce(ArrayView2<'_, f32>) -> Result<Array2<f32>>,
) -> Result<NextStep> {
    match greedy_tokens(hidden.view()) {
        Some(tokens) => Ok(NextStep::Tokens(tokens)),
        None => logits(hidden.view()).map(NextStep::Logits),
    }
}

#[cfg(test)]
mod tests {
    use super::{Move, reorder_moves};

    /// Runs the moves over rows that hold their own number.
    fn apply(moves: &[Move], count: usize) -> Vec<usize> {
        let mut rows: Vec<usize> = (0..count).collect();
        let mut saved = None;
        for &step in moves {
            match step {
                Move::Copy { from, to } => rows[to] = rows[from],
                Move::Save(row) => saved = Some(rows[row]),
                Move::Restore(row) => rows[row] = saved.take().expect("a row was saved"),
            }
        }
        rows
    }

    #[test]
    fn in_place_moves_give_every_row_its_source_and_write_only_changed_rows() {
        // every map of 0..count into itself for count up to 5 (identity, swaps, cycles, many
        // rows reading one, chains into cycles)
        for count in 0..=5usize {
            let maps = count.pow(count as u32);
            for code in 0..maps {
                let rows: Vec<usize> = (0..count)
                    .map(|index| code / count.pow(index as u32) % count)
                    .collect();
                let moves = reorder_moves(&rows);
                assert_eq!(apply(&moves, count), rows, "{rows:?}: {moves:?}");
                let changed = (0..count).filter(|&row| rows[row] != row).count();
                let writes = moves
                    .iter()
                    .filter(|step| !matches!(step, Move::Save(_)))
                    .count();
                assert_eq!(writes, changed, "{rows:?}: {moves:?}");
            }
        }
    }
}
