//! DistilBERT, as transformers' `models/distilbert/modeling_distilbert.py` (4.57.6).

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2};
use oxformer_nn::{Embedding, LayerNorm, Linear, Weights};
use oxformer_tensor::{Activation, AttentionMask, line_padded};

use crate::bert::{load_layers, multi_head_attention_into, residual_layer_norm_into};
use crate::config::DistilBertConfig;
use crate::error::Result;
use crate::input::{EncoderInput, EncoderOutput, ForwardOptions, TokenLayout};
use crate::workspace::{SharedWorkspace, Workspace, line_matrix, matrix, run_block};

/// modeling_distilbert.py `Embeddings`: word + position embeddings (no token types), LayerNorm.
#[derive(Debug, Clone)]
pub struct DistilBertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    layer_norm: LayerNorm,
}

impl DistilBertEmbeddings {
    /// Loads `word_embeddings`, `position_embeddings` (learned or, with `sinusoidal_pos_embds`,
    /// the sinusoids transformers stored there), `LayerNorm`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &DistilBertConfig) -> Result<Self> {
        Ok(Self {
            word_embeddings: Embedding::load(
                &weights.sub("word_embeddings"),
                config.vocab_size,
                config.dim,
            )?,
            position_embeddings: Embedding::load(
                &weights.sub("position_embeddings"),
                config.max_position_embeddings,
                config.dim,
            )?,
            layer_norm: LayerNorm::load(
                &weights.sub("LayerNorm"),
                config.dim,
                DistilBertConfig::LAYER_NORM_EPS,
            )?,
        })
    }

    /// The word embedding table (the decoder of the tied masked-LM head).
    pub fn word_embeddings(&self) -> &Embedding {
        &self.word_embeddings
    }

    /// # Shapes
    /// `input`: (batch, seq); result: (batch · seq, dim).
    ///
    /// # Errors
    /// An id beyond the vocabulary, naming the table.
    pub fn forward(&self, input: &EncoderInput<'_>) -> Result<Array2<f32>> {
        let (batch, seq) = input.input_ids.dim();
        self.forward_rows(input, &TokenLayout::Padded { batch, seq })
    }

    /// [`DistilBertEmbeddings::forward`] for the rows of `layout` only.
    pub(crate) fn forward_rows(
        &self,
        input: &EncoderInput<'_>,
        layout: &TokenLayout,
    ) -> Result<Array2<f32>> {
        let (rows, dim) = (layout.rows(), self.layer_norm.dim());
        // the layers' GEMMs read and write it row by row: on a cache line
        let mut values = line_padded(rows * dim);
        for index in 0..rows {
            let (b, t) = layout.position(index);
            let word = self.word_embeddings.row(input.input_ids[[b, t]])?;
            let position = self.position_embeddings.row(t as u32)?;
            values.extend(
                word.iter()
                    .zip(position)
                    .map(|(&word, &position)| word + position),
            );
        }
        let mut out = line_matrix(values, rows, dim);
        self.layer_norm.forward_in_place(out.view_mut(), None)?;
        Ok(out)
    }
}

/// modeling_distilbert.py `MultiHeadSelfAttention`: `q_lin`, `k_lin`, `v_lin` fused at load into
/// one product, then `out_lin`.
#[derive(Debug, Clone)]
pub struct MultiHeadSelfAttention {
    qkv: Linear,
    out_lin: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl MultiHeadSelfAttention {
    /// Loads `q_lin`, `k_lin`, `v_lin`, `out_lin`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &DistilBertConfig) -> Result<Self> {
        let dim = config.dim;
        let parts = ["q_lin", "k_lin", "v_lin"].map(|name| weights.sub(name));
        Ok(Self {
            qkv: Linear::load_fused(&parts, dim, dim)?,
            out_lin: Linear::load(&weights.sub("out_lin"), dim, dim)?,
            num_heads: config.n_heads,
            head_dim: config.head_dim(),
        })
    }

    /// Self-attention: `out_lin(softmax(QKᵀ/√d + mask)·V)`, heads side by side before
    /// `out_lin`.
    ///
    /// # Shapes
    /// `hidden`: (batch, seq, dim); `key_padding`: (batch, seq), 1 for real tokens; result:
    /// (batch, seq, dim).
    ///
    /// # Errors
    /// [`crate::Error::Input`] for a mask of another shape; a width other than the layer's.
    pub fn forward(
        &self,
        hidden: ArrayView3<'_, f32>,
        key_padding: Option<ArrayView2<'_, f32>>,
    ) -> Result<Array3<f32>> {
        run_block(
            "MultiHeadSelfAttention",
            hidden,
            key_padding,
            |mut rows, layout, mask, workspace| {
                let mut context = matrix(&mut workspace.context, rows.nrows(), rows.ncols());
                self.context_into(
                    rows.view(),
                    layout,
                    mask,
                    &mut workspace.qkv,
                    context.view_mut(),
                )?;
                self.out_lin.forward_into(
                    context.view(),
                    Activation::Identity,
                    None,
                    rows.view_mut(),
                )?;
                Ok(())
            },
        )
    }

    /// The attention context before `out_lin`, written into `context`; the fused product goes
    /// through `qkv`.
    ///
    /// # Shapes
    /// `hidden`, `context`: (rows, dim).
    pub(crate) fn context_into(
        &self,
        hidden: ArrayView2<'_, f32>,
        layout: &TokenLayout,
        mask: &AttentionMask<'_>,
        qkv: &mut Vec<f32>,
        context: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        let mut qkv = matrix(qkv, hidden.nrows(), self.qkv.out_features()); // (rows, 3 · dim)
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

/// modeling_distilbert.py `FFN`: `lin2(activation(lin1(x)))`.
#[derive(Debug, Clone)]
pub struct Ffn {
    lin1: Linear,
    lin2: Linear,
    activation: Activation,
}

impl Ffn {
    /// Loads `lin1`, `lin2`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &DistilBertConfig) -> Result<Self> {
        Ok(Self {
            lin1: Linear::load(&weights.sub("lin1"), config.dim, config.hidden_dim)?,
            lin2: Linear::load(&weights.sub("lin2"), config.hidden_dim, config.dim)?,
            activation: config.activation.activation(),
        })
    }

    /// `lin2(activation(lin1(x)))`.
    ///
    /// # Shapes
    /// `hidden`: (rows, dim); result: (rows, dim).
    ///
    /// # Errors
    /// A width other than the layer's.
    pub fn forward(&self, hidden: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let inner = self.lin1.forward_with(hidden, self.activation, None)?;
        Ok(self.lin2.forward(inner.view())?)
    }
}

/// modeling_distilbert.py `TransformerBlock`: post-norm attention and feed-forward blocks.
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    attention: MultiHeadSelfAttention,
    sa_layer_norm: LayerNorm,
    ffn: Ffn,
    output_layer_norm: LayerNorm,
}

impl TransformerBlock {
    /// Loads `attention`, `sa_layer_norm`, `ffn`, `output_layer_norm`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &DistilBertConfig) -> Result<Self> {
        let eps = DistilBertConfig::LAYER_NORM_EPS;
        Ok(Self {
            attention: MultiHeadSelfAttention::load(&weights.sub("attention"), config)?,
            sa_layer_norm: LayerNorm::load(&weights.sub("sa_layer_norm"), config.dim, eps)?,
            ffn: Ffn::load(&weights.sub("ffn"), config)?,
            output_layer_norm: LayerNorm::load(&weights.sub("output_layer_norm"), config.dim, eps)?,
        })
    }

    /// One block: attention, then feed-forward, each followed by its residual LayerNorm.
    ///
    /// # Shapes
    /// `hidden`: (batch, seq, dim); `key_padding`: (batch, seq), 1 for real tokens; result:
    /// (batch, seq, dim).
    ///
    /// # Errors
    /// [`crate::Error::Input`] for a mask of another shape; a width other than the block's.
    pub fn forward(
        &self,
        hidden: ArrayView3<'_, f32>,
        key_padding: Option<ArrayView2<'_, f32>>,
    ) -> Result<Array3<f32>> {
        run_block(
            "TransformerBlock",
            hidden,
            key_padding,
            |rows, layout, mask, workspace| self.forward_in_place(rows, layout, mask, workspace),
        )
    }

    /// `hidden ← block(hidden)`, the intermediate results in `workspace`.
    ///
    /// # Shapes
    /// `hidden`: (rows, dim).
    pub(crate) fn forward_in_place(
        &self,
        hidden: ArrayViewMut2<'_, f32>,
        layout: &TokenLayout,
        mask: &AttentionMask<'_>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        let (rows, dim) = hidden.dim();
        let mut context = matrix(&mut workspace.context, rows, dim);
        self.attention.context_into(
            hidden.view(),
            layout,
            mask,
            &mut workspace.qkv,
            context.view_mut(),
        )?;
        let mut sa_output = matrix(&mut workspace.attention_output, rows, dim);
        residual_layer_norm_into(
            &self.attention.out_lin,
            &self.sa_layer_norm,
            context.view(),
            hidden.view(),
            sa_output.view_mut(),
        )?;
        let mut inner = matrix(
            &mut workspace.intermediate,
            rows,
            self.ffn.lin1.out_features(),
        );
        self.ffn.lin1.forward_into(
            sa_output.view(),
            self.ffn.activation,
            None,
            inner.view_mut(),
        )?;
        // The block's input is read for the last time above: its output takes its place.
        residual_layer_norm_into(
            &self.ffn.lin2,
            &self.output_layer_norm,
            inner.view(),
            sa_output.view(),
            hidden,
        )
    }
}

/// modeling_distilbert.py `DistilBertModel`: embeddings and `transformer.layer.*`.
#[derive(Debug, Clone)]
pub struct DistilBertModel {
    config: DistilBertConfig,
    embeddings: DistilBertEmbeddings,
    layers: Vec<TransformerBlock>,
    workspace: SharedWorkspace,
}

impl DistilBertModel {
    /// Loads a DistilBERT body from the checkpoint root: under `distilbert.` (task models) or
    /// at the root (`DistilBertModel` checkpoints).
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, config: &DistilBertConfig) -> Result<Self> {
        let weights = weights.sub_if_present("distilbert");
        let layers = load_layers(config.n_layers, |index| {
            TransformerBlock::load(&weights.sub("transformer").sub("layer").sub(index), config)
        })?;
        Ok(Self {
            config: config.clone(),
            embeddings: DistilBertEmbeddings::load(&weights.sub("embeddings"), config)?,
            layers,
            workspace: SharedWorkspace::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DistilBertConfig {
        &self.config
    }

    /// The embeddings.
    pub fn embeddings(&self) -> &DistilBertEmbeddings {
        &self.embeddings
    }

    /// Runs the model (token type ids, if given, are ignored as DistilBERT has none).
    ///
    /// # Shapes
    /// `input`: (batch, seq); see [`EncoderOutput`] (no pooler).
    ///
    /// # Errors
    /// [`crate::Error::Input`] for mismatched shapes, a bad mask or sequences longer than
    /// `max_position_embeddings`; an id beyond the vocabulary.
    pub fn forward(
        &self,
        input: &EncoderInput<'_>,
        options: &ForwardOptions,
    ) -> Result<EncoderOutput> {
        let ForwardOptions {
            output_hidden_states,
            skip_padding,
        } = *options;
        input.validate("DistilBertModel", self.config.max_position_embeddings)?;
        let layout = TokenLayout::new(input, skip_padding);
        let key_padding = input.key_padding();
        let mask = AttentionMask {
            key_padding: Some(key_padding.view()),
            causal: false,
            bias: None,
        };
        let mut hidden = self.embeddings.forward_rows(input, &layout)?;
        let mut states = Vec::new();
        if output_hidden_states {
            states.push(hidden.clone());
        }
        self.workspace.with(|workspace| {
            for layer in &self.layers {
                layer.forward_in_place(hidden.view_mut(), &layout, &mask, workspace)?;
                if output_hidden_states {
                    states.push(hidden.clone());
                }
            }
            Ok::<_, crate::Error>(())
        })?;
        let to_3d = |matrix: Array2<f32>| layout.unpack(matrix);
        Ok(EncoderOutput {
            last_hidden_state: to_3d(hidden),
            pooler_output: None,
            hidden_states: states.into_iter().map(to_3d).collect(),
        })
    }
}
