//! BERT, as transformers' `models/bert/modeling_bert.py` (4.57.6).
//!
//! The encoder here is shared by RoBERTa and XLM-RoBERTa (`roberta.rs`), which differ only in
//! their embeddings. Hidden states flow as (tokens, hidden) matrices, tokens = batch × seq, so
//! that every Linear is one matrix product over the whole batch.

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, Axis, s};
use oxformer_nn::{Embedding, LayerNorm, Linear, Weights};
use oxformer_tensor::{Activation, AttentionMask, attention_into, line_padded};
use rayon::prelude::*;

use crate::config::{BertConfig, PositionEmbeddingType};
use crate::error::{Error, Result};
use crate::input::{EncoderInput, EncoderOutput, ForwardOptions, TokenLayout};
use crate::workspace::{SharedWorkspace, Workspace, line_matrix, matrix, run_block};

/// modeling_bert.py `BertEmbeddings`: word + token type + absolute position embeddings, then
/// LayerNorm.
#[derive(Debug, Clone)]
pub struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
}

impl BertEmbeddings {
    /// Loads `word_embeddings`, `position_embeddings`, `token_type_embeddings`, `LayerNorm`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &BertConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self {
            word_embeddings: Embedding::load(
                &weights.sub("word_embeddings"),
                config.vocab_size,
                hidden,
            )?,
            position_embeddings: Embedding::load(
                &weights.sub("position_embeddings"),
                config.max_position_embeddings,
                hidden,
            )?,
            token_type_embeddings: Embedding::load(
                &weights.sub("token_type_embeddings"),
                config.type_vocab_size,
                hidden,
            )?,
            layer_norm: LayerNorm::load(&weights.sub("LayerNorm"), hidden, config.layer_norm_eps)?,
        })
    }

    /// The word embedding table (the decoder of tied masked-LM heads).
    pub fn word_embeddings(&self) -> &Embedding {
        &self.word_embeddings
    }

    /// `LayerNorm(word[id] + token_type[type] + position[pos])` for every token.
    ///
    /// # Shapes
    /// `position_ids`: (batch, seq); result: (batch · seq, hidden).
    ///
    /// # Errors
    /// An id, token type or position beyond its table, naming the table.
    pub fn forward(
        &self,
        input: &EncoderInput<'_>,
        position_ids: ArrayView2<'_, u32>,
    ) -> Result<Array2<f32>> {
        let (batch, seq) = input.input_ids.dim();
        let layout = TokenLayout::Padded { batch, seq };
        self.forward_rows(input, position_ids, &layout)
    }

    /// [`BertEmbeddings::forward`] for the rows of `layout` only.
    pub(crate) fn forward_rows(
        &self,
        input: &EncoderInput<'_>,
        position_ids: ArrayView2<'_, u32>,
        layout: &TokenLayout,
    ) -> Result<Array2<f32>> {
        let (rows, dim) = (layout.rows(), self.layer_norm.dim());
        // the layers' GEMMs read and write it row by row: on a cache line
        let mut values = line_padded(rows * dim);
        for index in 0..rows {
            let (b, t) = layout.position(index);
            let word = self.word_embeddings.row(input.input_ids[[b, t]])?;
            let token_type = input.token_type_ids.map_or(0, |types| types[[b, t]]);
            let token_type = self.token_type_embeddings.row(token_type)?;
            let position = self.position_embeddings.row(position_ids[[b, t]])?;
            // transformers adds in this order: (word + token type) + position.
            let sums = word.iter().zip(token_type).zip(position);
            values.extend(
                sums.map(|((&word, &token_type), &position)| (word + token_type) + position),
            );
        }
        let mut out = line_matrix(values, rows, dim);
        self.layer_norm.forward_in_place(out.view_mut(), None)?;
        Ok(out)
    }
}

/// modeling_bert.py `BertSelfAttention`, with `query`, `key` and `value` fused at load into one
/// product (N = 3 · hidden).
#[derive(Debug, Clone)]
pub struct BertSelfAttention {
    qkv: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl BertSelfAttention {
    /// Loads `query`, `key`, `value`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &BertConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        let parts = ["query", "key", "value"].map(|name| weights.sub(name));
        Ok(Self {
            qkv: Linear::load_fused(&parts, hidden, hidden)?,
            num_heads: config.num_attention_heads,
            head_dim: config.head_dim(),
        })
    }

    /// `softmax(QKᵀ/√d + mask)·V` per head, heads side by side (the context, before
    /// [`BertSelfOutput`]'s dense layer).
    ///
    /// # Shapes
    /// `hidden`: (batch, seq, hidden); `key_padding`: (batch, seq), 1 for real tokens; result:
    /// (batch, seq, hidden).
    ///
    /// # Errors
    /// [`Error::Input`] for a mask of another shape; a width other than the layer's.
    pub fn forward(
        &self,
        hidden: ArrayView3<'_, f32>,
        key_padding: Option<ArrayView2<'_, f32>>,
    ) -> Result<Array3<f32>> {
        run_block(
            "BertSelfAttention",
            hidden,
            key_padding,
            |mut rows, layout, mask, workspace| {
                let mut context = matrix(&mut workspace.context, rows.nrows(), rows.ncols());
                self.forward_into(
                    rows.view(),
                    layout,
                    mask,
                    &mut workspace.qkv,
                    context.view_mut(),
                )?;
                rows.assign(&context);
                Ok(())
            },
        )
    }

    /// `softmax(QKᵀ/√d + mask)·V` per head, heads side by side, written into `context`; the
    /// fused product goes through `qkv`.
    ///
    /// # Shapes
    /// `hidden`, `context`: (rows, hidden).
    pub(crate) fn forward_into(
        &self,
        hidden: ArrayView2<'_, f32>,
        layout: &TokenLayout,
        mask: &AttentionMask<'_>,
        qkv: &mut Vec<f32>,
        context: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        let mut qkv = matrix(qkv, hidden.nrows(), self.qkv.out_features()); // (rows, 3 · hidden)
        self.qkv
            .forward_into(hidden, Activation::Identity, None, qkv.view_mut())?;
        multi_head_attention_into(
            qkv.view(),
            layout,
            self.num_heads,
            self.head_dim,
            mask,
            context,
        );
        Ok(())
    }
}

/// Attention over a fused QKV matrix, reading Q, K and V as strided views (no copies).
///
/// With a padded layout all sequences go in one call with the key-padding `mask`; with a packed
/// layout each sequence is its own rows and attends to all of them, without a mask.
///
/// # Shapes
/// `qkv`: (rows, 3 · heads · head_dim), each row `[q | k | v]`, each part heads side by side;
/// `context` (overwritten): (rows, heads · head_dim), row-major.
pub(crate) fn multi_head_attention_into(
    qkv: ArrayView2<'_, f32>,
    layout: &TokenLayout,
    num_heads: usize,
    head_dim: usize,
    mask: &AttentionMask<'_>,
    mut context: ArrayViewMut2<'_, f32>,
) {
    let scale = 1.0 / (head_dim as f32).sqrt();
    // One call over `batch` sequences of `seq` rows each, starting at `start`.
    let mut attend = |start: usize, batch: usize, seq: usize, mask: &AttentionMask<'_>| {
        let rows = start..start + batch * seq;
        let qkv = qkv
            .slice(s![rows.clone(), ..])
            .into_shape_with_order((batch, seq, 3, num_heads, head_dim))
            .expect("rows of the QKV product are contiguous");
        // (batch, seq, heads, head_dim) → (batch, heads, seq, head_dim)
        let part = |index: usize| qkv.index_axis(Axis(2), index).permuted_axes([0, 2, 1, 3]);
        let out = context
            .slice_mut(s![rows, ..])
            .into_shape_with_order((batch, seq, num_heads, head_dim))
            .expect("rows of the context are contiguous")
            .permuted_axes([0, 2, 1, 3]);
        attention_into(part(0), part(1), part(2), mask, scale, out);
    };
    match layout {
        TokenLayout::Padded { batch, seq } => attend(0, *batch, *seq, mask),
        TokenLayout::Packed { sequences, .. } => {
            for sequence in sequences {
                attend(sequence.start, 1, sequence.len(), &AttentionMask::default());
            }
        }
    }
}

/// modeling_bert.py `BertSelfOutput`: `LayerNorm(dense(x) + input)`, the residual added in the
/// product's write-out.
#[derive(Debug, Clone)]
pub struct BertSelfOutput {
    dense: Linear,
    layer_norm: LayerNorm,
}

impl BertSelfOutput {
    /// Loads `dense` and `LayerNorm`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &BertConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self {
            dense: Linear::load(&weights.sub("dense"), hidden, hidden)?,
            layer_norm: LayerNorm::load(&weights.sub("LayerNorm"), hidden, config.layer_norm_eps)?,
        })
    }

    /// # Shapes
    /// `hidden`, `input`: (tokens, hidden); result: (tokens, hidden).
    pub fn forward(
        &self,
        hidden: ArrayView2<'_, f32>,
        input: ArrayView2<'_, f32>,
    ) -> Result<Array2<f32>> {
        let mut out = Array2::zeros(input.dim());
        self.forward_into(hidden, input, out.view_mut())?;
        Ok(out)
    }

    /// [`BertSelfOutput::forward`] into `out` (overwritten).
    pub(crate) fn forward_into(
        &self,
        hidden: ArrayView2<'_, f32>,
        input: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        residual_layer_norm_into(&self.dense, &self.layer_norm, hidden, input, out)
    }
}

/// `out ← LayerNorm(dense(x) + residual)`, both fused into the product's write-out.
///
/// # Shapes
/// `x`: (rows, dense's in_features); `residual`, `out`: (rows, dense's out_features).
pub(crate) fn residual_layer_norm_into(
    dense: &Linear,
    layer_norm: &LayerNorm,
    x: ArrayView2<'_, f32>,
    residual: ArrayView2<'_, f32>,
    out: ArrayViewMut2<'_, f32>,
) -> Result<()> {
    Ok(dense.forward_into_normed(x, residual, layer_norm, out)?)
}

/// modeling_bert.py `BertAttention`: self-attention, then its output block.
#[derive(Debug, Clone)]
pub struct BertAttention {
    self_attention: BertSelfAttention,
    output: BertSelfOutput,
}

impl BertAttention {
    /// Loads `self` and `output`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            self_attention: BertSelfAttention::load(&weights.sub("self"), config)?,
            output: BertSelfOutput::load(&weights.sub("output"), config)?,
        })
    }

    /// Self-attention and its output block: `LayerNorm(dense(attention(x)) + x)`.
    ///
    /// # Shapes
    /// `hidden`: (batch, seq, hidden); `key_padding`: (batch, seq), 1 for real tokens; result:
    /// (batch, seq, hidden).
    ///
    /// # Errors
    /// [`Error::Input`] for a mask of another shape; a width other than the layer's.
    pub fn forward(
        &self,
        hidden: ArrayView3<'_, f32>,
        key_padding: Option<ArrayView2<'_, f32>>,
    ) -> Result<Array3<f32>> {
        run_block(
            "BertAttention",
            hidden,
            key_padding,
            |mut rows, layout, mask, workspace| {
                let mut out = matrix(&mut workspace.attention_output, rows.nrows(), rows.ncols());
                self.forward_into(
                    rows.view(),
                    layout,
                    mask,
                    (&mut workspace.qkv, &mut workspace.context),
                    out.view_mut(),
                )?;
                rows.assign(&out);
                Ok(())
            },
        )
    }

    /// The block's output into `out`, its intermediate results through `qkv` and `context`.
    ///
    /// # Shapes
    /// `hidden`, `out`: (rows, hidden).
    pub(crate) fn forward_into(
        &self,
        hidden: ArrayView2<'_, f32>,
        layout: &TokenLayout,
        mask: &AttentionMask<'_>,
        (qkv, context): (&mut Vec<f32>, &mut Vec<f32>),
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        let mut context = matrix(context, hidden.nrows(), hidden.ncols());
        self.self_attention
            .forward_into(hidden, layout, mask, qkv, context.view_mut())?;
        self.output.forward_into(context.view(), hidden, out)
    }
}

/// modeling_bert.py `BertIntermediate`: `hidden_act(dense(x))`, the bias and activation fused
/// into the product's write-out.
#[derive(Debug, Clone)]
pub struct BertIntermediate {
    dense: Linear,
    activation: Activation,
}

impl BertIntermediate {
    /// Loads `dense`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            dense: Linear::load(
                &weights.sub("dense"),
                config.hidden_size,
                config.intermediate_size,
            )?,
            activation: config.hidden_act.activation(),
        })
    }

    /// # Shapes
    /// `hidden`: (tokens, hidden); result: (tokens, intermediate).
    pub fn forward(&self, hidden: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        Ok(self.dense.forward_with(hidden, self.activation, None)?)
    }

    /// [`BertIntermediate::forward`] into `out` (overwritten).
    pub(crate) fn forward_into(
        &self,
        hidden: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        Ok(self
            .dense
            .forward_into(hidden, self.activation, None, out)?)
    }
}

/// modeling_bert.py `BertOutput`: `LayerNorm(dense(intermediate) + attention_output)`.
#[derive(Debug, Clone)]
pub struct BertOutput {
    dense: Linear,
    layer_norm: LayerNorm,
}

impl BertOutput {
    /// Loads `dense` and `LayerNorm`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            dense: Linear::load(
                &weights.sub("dense"),
                config.intermediate_size,
                config.hidden_size,
            )?,
            layer_norm: LayerNorm::load(
                &weights.sub("LayerNorm"),
                config.hidden_size,
                config.layer_norm_eps,
            )?,
        })
    }

    /// # Shapes
    /// `intermediate`: (tokens, intermediate); `input`: (tokens, hidden); result: (tokens, hidden).
    pub fn forward(
        &self,
        intermediate: ArrayView2<'_, f32>,
        input: ArrayView2<'_, f32>,
    ) -> Result<Array2<f32>> {
        let mut out = Array2::zeros(input.dim());
        self.forward_into(intermediate, input, out.view_mut())?;
        Ok(out)
    }

    /// [`BertOutput::forward`] into `out` (overwritten).
    pub(crate) fn forward_into(
        &self,
        intermediate: ArrayView2<'_, f32>,
        input: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        residual_layer_norm_into(&self.dense, &self.layer_norm, intermediate, input, out)
    }
}

/// modeling_bert.py `BertLayer`: attention, then the feed-forward block.
#[derive(Debug, Clone)]
pub struct BertLayer {
    attention: BertAttention,
    intermediate: BertIntermediate,
    output: BertOutput,
}

impl BertLayer {
    /// Loads `attention`, `intermediate`, `output`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            attention: BertAttention::load(&weights.sub("attention"), config)?,
            intermediate: BertIntermediate::load(&weights.sub("intermediate"), config)?,
            output: BertOutput::load(&weights.sub("output"), config)?,
        })
    }

    /// One layer: attention block, then feed-forward block.
    ///
    /// # Shapes
    /// `hidden`: (batch, seq, hidden); `key_padding`: (batch, seq), 1 for real tokens; result:
    /// (batch, seq, hidden).
    ///
    /// # Errors
    /// [`Error::Input`] for a mask of another shape; a width other than the layer's.
    pub fn forward(
        &self,
        hidden: ArrayView3<'_, f32>,
        key_padding: Option<ArrayView2<'_, f32>>,
    ) -> Result<Array3<f32>> {
        run_block(
            "BertLayer",
            hidden,
            key_padding,
            |rows, layout, mask, workspace| self.forward_in_place(rows, layout, mask, workspace),
        )
    }

    /// `hidden ← layer(hidden)`, the intermediate results in `workspace`.
    ///
    /// # Shapes
    /// `hidden`: (rows, hidden).
    pub(crate) fn forward_in_place(
        &self,
        hidden: ArrayViewMut2<'_, f32>,
        layout: &TokenLayout,
        mask: &AttentionMask<'_>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        let (rows, hidden_size) = hidden.dim();
        let mut attention_output = matrix(&mut workspace.attention_output, rows, hidden_size);
        self.attention.forward_into(
            hidden.view(),
            layout,
            mask,
            (&mut workspace.qkv, &mut workspace.context),
            attention_output.view_mut(),
        )?;
        let intermediate_size = self.intermediate.dense.out_features();
        let mut intermediate = matrix(&mut workspace.intermediate, rows, intermediate_size);
        self.intermediate
            .forward_into(attention_output.view(), intermediate.view_mut())?;
        // The layer's input is read for the last time above: its output takes its place.
        self.output
            .forward_into(intermediate.view(), attention_output.view(), hidden)
    }
}

/// modeling_bert.py `BertEncoder`: the stack of layers.
#[derive(Debug, Clone)]
pub struct BertEncoder {
    layers: Vec<BertLayer>,
    workspace: SharedWorkspace,
}

impl BertEncoder {
    /// Loads `layer.0` … `layer.{num_hidden_layers - 1}`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &BertConfig) -> Result<Self> {
        let layers = load_layers(config.num_hidden_layers, |index| {
            BertLayer::load(&weights.sub("layer").sub(index), config)
        })?;
        Ok(Self {
            layers,
            workspace: SharedWorkspace::default(),
        })
    }

    /// Every layer in turn.
    ///
    /// # Shapes
    /// `hidden`: (batch, seq, hidden); `key_padding`: (batch, seq), 1 for real tokens; result:
    /// (batch, seq, hidden).
    ///
    /// # Errors
    /// [`Error::Input`] for a mask of another shape; a width other than the layers'.
    pub fn forward(
        &self,
        hidden: ArrayView3<'_, f32>,
        key_padding: Option<ArrayView2<'_, f32>>,
    ) -> Result<Array3<f32>> {
        run_block(
            "BertEncoder",
            hidden,
            key_padding,
            |mut rows, layout, mask, workspace| {
                for layer in &self.layers {
                    layer.forward_in_place(rows.view_mut(), layout, mask, workspace)?;
                }
                Ok(())
            },
        )
    }

    /// Runs every layer; with `all_hidden_states`, pushes each layer's output to it.
    ///
    /// # Shapes
    /// `hidden`: (rows, hidden); result: (rows, hidden).
    pub(crate) fn forward_rows(
        &self,
        mut hidden: Array2<f32>,
        layout: &TokenLayout,
        mask: &AttentionMask<'_>,
        mut all_hidden_states: Option<&mut Vec<Array2<f32>>>,
    ) -> Result<Array2<f32>> {
        self.workspace.with(|workspace| {
            for layer in &self.layers {
                layer.forward_in_place(hidden.view_mut(), layout, mask, workspace)?;
                if let Some(states) = all_hidden_states.as_deref_mut() {
                    states.push(hidden.clone());
                }
            }
            Ok(hidden)
        })
    }
}

/// Loads `count` layers side by side on the rayon pool (packing their weights is most of a
/// model's load); the first failing layer in order is the error returned.
///
/// Layers go in groups of [`LAYERS_AT_ONCE`]: a config that claims more layers than its
/// checkpoint holds fails at the first missing one, without room made for the claimed count
/// (the fuzzer's `num_hidden_layers` of 2^40 asked for terabytes).
pub(crate) fn load_layers<Layer: Send>(
    count: usize,
    load: impl Fn(usize) -> Result<Layer> + Sync,
) -> Result<Vec<Layer>> {
    let mut layers = Vec::new();
    for start in (0..count).step_by(LAYERS_AT_ONCE) {
        let group: Vec<Result<Layer>> = (start..count.min(start + LAYERS_AT_ONCE))
            .into_par_iter()
            .map(&load)
            .collect();
        for layer in group {
            layers.push(layer?);
        }
    }
    Ok(layers)
}

/// How many layers [`load_layers`] loads side by side (more than the cores of most machines).
const LAYERS_AT_ONCE: usize = 16;

/// modeling_bert.py `BertPooler`: `tanh(dense(hidden[:, 0]))`.
#[derive(Debug, Clone)]
pub struct BertPooler {
    dense: Linear,
}

impl BertPooler {
    /// Loads `dense`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &BertConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self {
            dense: Linear::load(&weights.sub("dense"), hidden, hidden)?,
        })
    }

    /// # Shapes
    /// `last_hidden_state`: (batch, seq, hidden); result: (batch, hidden).
    pub fn forward(&self, last_hidden_state: &Array3<f32>) -> Result<Array2<f32>> {
        let first = last_hidden_state.slice(s![.., 0, ..]);
        Ok(self.dense.forward_with(first, Activation::Tanh, None)?)
    }
}

/// modeling_bert.py `BertModel`: embeddings, encoder and (optionally) the pooler.
#[derive(Debug, Clone)]
pub struct BertModel {
    config: BertConfig,
    embeddings: BertEmbeddings,
    encoder: BertEncoder,
    pooler: Option<BertPooler>,
}

impl BertModel {
    /// Loads a BERT body. `weights` is the checkpoint root: the body is found under `bert.`
    /// (task models) or at the root (`BertModel` checkpoints). With `add_pooling_layer` the
    /// pooler is loaded too (and must be present).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for relative position embeddings or a decoder configuration; a
    /// missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &BertConfig, add_pooling_layer: bool) -> Result<Self> {
        check_supported(config, "BertModel")?;
        let weights = weights.sub_if_present("bert");
        Ok(Self {
            config: config.clone(),
            embeddings: BertEmbeddings::load(&weights.sub("embeddings"), config)?,
            encoder: BertEncoder::load(&weights.sub("encoder"), config)?,
            pooler: add_pooling_layer
                .then(|| BertPooler::load(&weights.sub("pooler"), config))
                .transpose()?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The embeddings (their word table is the decoder of the masked-LM head).
    pub fn embeddings(&self) -> &BertEmbeddings {
        &self.embeddings
    }

    /// Whether the pooler was loaded.
    pub fn has_pooler(&self) -> bool {
        self.pooler.is_some()
    }

    /// Runs the model, with what [`ForwardOptions`] asks for besides the last hidden state.
    ///
    /// # Shapes
    /// `input`: (batch, seq); see [`EncoderOutput`].
    ///
    /// # Errors
    /// [`Error::Input`] for mismatched shapes, a bad mask or sequences longer than
    /// `max_position_embeddings`; an id or token type beyond its table.
    pub fn forward(
        &self,
        input: &EncoderInput<'_>,
        options: &ForwardOptions,
    ) -> Result<EncoderOutput> {
        let ForwardOptions {
            output_hidden_states,
            skip_padding,
        } = *options;
        input.validate("BertModel", self.config.max_position_embeddings)?;
        let layout = TokenLayout::new(input, skip_padding);
        let position_ids = Array2::from_shape_fn((layout.batch(), layout.seq()), |(_, t)| t as u32);
        let hidden = self
            .embeddings
            .forward_rows(input, position_ids.view(), &layout)?;
        run_encoder(
            &self.encoder,
            self.pooler.as_ref(),
            hidden,
            input,
            &layout,
            output_hidden_states,
        )
    }
}

/// Encoder and pooler on embedded tokens: what BERT, RoBERTa and XLM-R share after their
/// embeddings.
pub(crate) fn run_encoder(
    encoder: &BertEncoder,
    pooler: Option<&BertPooler>,
    hidden: Array2<f32>,
    input: &EncoderInput<'_>,
    layout: &TokenLayout,
    output_hidden_states: bool,
) -> Result<EncoderOutput> {
    let key_padding = input.key_padding();
    let mask = AttentionMask {
        key_padding: Some(key_padding.view()),
        causal: false,
        bias: None,
    };
    let mut states = output_hidden_states.then(|| vec![hidden.clone()]);
    let last = encoder.forward_rows(hidden, layout, &mask, states.as_mut())?;
    let to_3d = |matrix: Array2<f32>| layout.unpack(matrix);
    let last_hidden_state = to_3d(last);
    let pooler_output = pooler
        .map(|pooler| pooler.forward(&last_hidden_state))
        .transpose()?;
    Ok(EncoderOutput {
        last_hidden_state,
        pooler_output,
        hidden_states: states.unwrap_or_default().into_iter().map(to_3d).collect(),
    })
}

/// Refuses what this encoder does not implement, rather than computing something else.
pub(crate) fn check_supported(config: &BertConfig, model: &str) -> Result<()> {
    let unsupported = |reason: &str| {
        Err(Error::Unsupported {
            model: model.to_string(),
            reason: reason.to_string(),
        })
    };
    if config.position_embedding_type != PositionEmbeddingType::Absolute {
        return unsupported(
            "position_embedding_type relative_key / relative_key_query is not implemented; \
             only `absolute`",
        );
    }
    if config.common.is_decoder || config.common.add_cross_attention {
        return unsupported("decoder use (is_decoder / add_cross_attention) is not implemented");
    }
    if !config.common.pruned_heads.values().all(Vec::is_empty) {
        return unsupported("pruned attention heads (pruned_heads) are not implemented");
    }
    Ok(())
}
