//! T5, as transformers' `models/t5/modeling_t5.py` (4.57.6): T5 v1.0 (ReLU feed-forward, LM head
//! tied to the shared embeddings, read with the d_model^-0.5 rescale) and v1.1 / FLAN-T5 / mT5's
//! layout (`gated-gelu`, untied LM head).
//!
//! Pre-norm blocks with T5's RMS LayerNorm (no mean, no bias); attention without the 1/√d scaling,
//! with a relative position bias computed by the first block of each stack (bidirectional buckets
//! in the encoder, causal ones in the decoder) and shared by the others. Hidden states flow as
//! (tokens, d_model) matrices, tokens = rows × positions.

use std::path::Path;
use std::sync::OnceLock;

use ndarray::{Array2, ArrayView2, ArrayView3, ArrayViewMut2, Axis, concatenate, s};
use oxformer_nn::{Embedding, Linear, Tensor, Weights};
use oxformer_tensor::{Activation, ArgmaxScreen, AttentionMask, attention_into};

use crate::bert::load_layers;
use crate::config::{ModelConfig, T5Config};
use crate::error::{Error, Result};
use crate::generation::{Generative, NextStep, Prompts};
use crate::input::{EncoderInput, EncoderOutput};
use crate::seq2seq::{
    DecoderOutput, LayerCache, Seq2SeqCache, check_ids, greedy_step, start_generation,
};
use crate::workspace::{SharedWorkspace, Workspace, matrix};

const MODEL: &str = "T5ForConditionalGeneration";

/// modeling_t5.py `T5LayerNorm`: `weight · x / √(mean(x²) + ε)`, no mean subtracted, no bias.
#[derive(Debug, Clone)]
pub struct T5LayerNorm {
    weight: Tensor,
    eps: f32,
}

impl T5LayerNorm {
    /// Loads `weight` `[dim]`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(weights: &Weights, dim: usize, eps: f32) -> Result<Self> {
        Ok(Self {
            weight: weights.get("weight", &[dim])?,
            eps,
        })
    }

    /// `out ← norm(x)`, row by row.
    ///
    /// # Shapes
    /// `x`, `out`: (rows, dim).
    pub fn forward_into(&self, x: ArrayView2<'_, f32>, mut out: ArrayViewMut2<'_, f32>) {
        let weight = self.weight.as_slice();
        for (row, mut target) in x.rows().into_iter().zip(out.rows_mut()) {
            let variance = row.iter().map(|&value| value * value).sum::<f32>() / row.len() as f32;
            let scale = 1.0 / (variance + self.eps).sqrt();
            for ((target, &value), &weight) in target.iter_mut().zip(row).zip(weight) {
                *target = weight * (value * scale);
            }
        }
    }
}

/// modeling_t5.py `T5Attention._relative_position_bucket`: the bucket of `memory − query`.
///
/// Half the buckets (of each direction when `bidirectional`) are exact distances; the rest grow
/// logarithmically up to `max_distance`, computed in f32 as torch does.
pub fn relative_position_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let mut num_buckets = num_buckets as i64;
    let mut bucket = 0;
    let distance = if bidirectional {
        num_buckets /= 2;
        if relative_position > 0 {
            bucket += num_buckets;
        }
        relative_position.abs()
    } else {
        (-relative_position).max(0)
    };
    let max_exact = num_buckets / 2;
    if distance < max_exact {
        return (bucket + distance) as usize;
    }
    let ratio = ((max_distance as f64) / (max_exact as f64)).ln() as f32;
    let large = max_exact
        + ((distance as f32 / max_exact as f32).ln() / ratio * (num_buckets - max_exact) as f32)
            as i64;
    (bucket + large.min(num_buckets - 1)) as usize
}

/// modeling_t5.py `T5Attention` used as self-attention: `q`, `k`, `v` fused at load into one
/// product (no biases), `o`, and in the first block of a stack the relative position table.
#[derive(Debug, Clone)]
pub struct T5Attention {
    qkv: Linear,
    o: Linear,
    /// `relative_attention_bias.weight`, (buckets, heads).
    relative_attention_bias: Option<Tensor>,
    num_heads: usize,
    head_dim: usize,
}

/// `parts`' `weight`s `[out, in]` stacked into one Linear without bias (T5's projections have
/// none, so [`Linear::load_fused`] does not apply).
fn load_stacked(parts: &[Weights], in_features: usize, out_features: usize) -> Result<Linear> {
    let tensors = parts
        .iter()
        .map(|part| part.get("weight", &[out_features, in_features]))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let views = tensors
        .iter()
        .map(Tensor::view2)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let stacked = concatenate(Axis(0), &views).expect("parts have the same width");
    let name = parts
        .iter()
        .map(|part| part.prefix().to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    Ok(Linear::from_weight(&name, stacked.view(), None)?)
}

impl T5Attention {
    /// Loads `q`, `k`, `v`, `o` and, with `has_relative_attention_bias`,
    /// `relative_attention_bias`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full path.
    pub fn load(
        weights: &Weights,
        config: &T5Config,
        has_relative_attention_bias: bool,
    ) -> Result<Self> {
        let (d_model, inner) = (config.d_model, config.inner_dim());
        let parts = ["q", "k", "v"].map(|name| weights.sub(name));
        Ok(Self {
            qkv: load_stacked(&parts, d_model, inner)?,
            o: Linear::load_without_bias(&weights.sub("o"), inner, d_model)?,
            relative_attention_bias: has_relative_attention_bias
                .then(|| {
                    weights.sub("relative_attention_bias").get(
                        "weight",
                        &[config.relative_attention_num_buckets, config.num_heads],
                    )
                })
                .transpose()?,
            num_heads: config.num_heads,
            head_dim: config.d_kv,
        })
    }
}

/// modeling_t5.py `T5Attention.compute_bias` (+ the causal mask in the decoder): the bias of each
/// head between queries at `past ..` and keys at `0 .. past + queries`, into `buffer`.
///
/// # Shapes
/// `table`: (buckets, heads); result: (heads, queries, past + queries).
fn position_bias<'a>(
    buffer: &'a mut Vec<f32>,
    stack: &T5Stack,
    past: usize,
    queries: usize,
) -> ArrayView3<'a, f32> {
    let table = stack.bias_table();
    let is_decoder = stack.is_decoder;
    let heads = table.ncols();
    let keys = past + queries;
    let (buckets, max_distance) = (stack.num_buckets, stack.max_distance);
    buffer.clear();
    buffer.resize(heads * queries * keys, 0.0);
    let mut bias = ndarray::ArrayViewMut3::from_shape((heads, queries, keys), &mut buffer[..])
        .expect("the buffer holds heads × queries × keys values");
    for query in 0..queries {
        let context_position = (past + query) as i64;
        for key in 0..keys {
            let relative = key as i64 - context_position;
            if is_decoder && relative > 0 {
                bias.slice_mut(s![.., query, key]).fill(f32::NEG_INFINITY);
                continue;
            }
            let bucket = relative_position_bucket(relative, !is_decoder, buckets, max_distance);
            bias.slice_mut(s![.., query, key])
                .assign(&table.row(bucket));
        }
    }
    ArrayView3::from_shape((heads, queries, keys), &buffer[..]).expect("filled above")
}

/// modeling_t5.py `T5LayerSelfAttention`: `hidden + o(attention(norm(hidden)))`.
#[derive(Debug, Clone)]
pub struct T5LayerSelfAttention {
    attention: T5Attention,
    layer_norm: T5LayerNorm,
}

impl T5LayerSelfAttention {
    fn load(weights: &Weights, config: &T5Config, has_bias: bool) -> Result<Self> {
        Ok(Self {
            attention: T5Attention::load(&weights.sub("SelfAttention"), config, has_bias)?,
            layer_norm: T5LayerNorm::load(
                &weights.sub("layer_norm"),
                config.d_model,
                config.layer_norm_epsilon,
            )?,
        })
    }
}

/// modeling_t5.py `T5LayerCrossAttention`: `hidden + o(attention(q(norm(hidden)), encoder))`,
/// the encoder's keys and values computed once per input (by
/// [`T5ForConditionalGeneration::start_from_encoder`]).
#[derive(Debug, Clone)]
pub struct T5LayerCrossAttention {
    q: Linear,
    /// `k` and `v` side by side.
    kv: Linear,
    o: Linear,
    layer_norm: T5LayerNorm,
}

impl T5LayerCrossAttention {
    fn load(weights: &Weights, config: &T5Config) -> Result<Self> {
        let attention = weights.sub("EncDecAttention");
        let (d_model, inner) = (config.d_model, config.inner_dim());
        Ok(Self {
            q: Linear::load_without_bias(&attention.sub("q"), d_model, inner)?,
            kv: load_stacked(&[attention.sub("k"), attention.sub("v")], d_model, inner)?,
            o: Linear::load_without_bias(&attention.sub("o"), inner, d_model)?,
            layer_norm: T5LayerNorm::load(
                &weights.sub("layer_norm"),
                d_model,
                config.layer_norm_epsilon,
            )?,
        })
    }

    /// The encoder output's keys and values, side by side: (tokens, 2 × inner).
    fn key_values(&self, encoder_hidden: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        Ok(self.kv.forward(encoder_hidden)?)
    }
}

/// modeling_t5.py `T5LayerFF` with `T5DenseActDense` (`wi`, `wo`) or `T5DenseGatedActDense`
/// (`wi_0`, `wi_1` fused into one product, `wo`): `hidden + wo(ff(norm(hidden)))`.
#[derive(Debug, Clone)]
pub struct T5LayerFF {
    /// `wi`, or `wi_0` and `wi_1` side by side.
    wi: Linear,
    wo: Linear,
    gated: bool,
    activation: Activation,
    layer_norm: T5LayerNorm,
}

impl T5LayerFF {
    fn load(weights: &Weights, config: &T5Config) -> Result<Self> {
        let dense = weights.sub("DenseReluDense");
        let (d_model, d_ff) = (config.d_model, config.d_ff);
        let wi = if config.is_gated_act {
            load_stacked(&[dense.sub("wi_0"), dense.sub("wi_1")], d_model, d_ff)?
        } else {
            Linear::load_without_bias(&dense.sub("wi"), d_model, d_ff)?
        };
        Ok(Self {
            wi,
            wo: Linear::load_without_bias(&dense.sub("wo"), d_ff, d_model)?,
            gated: config.is_gated_act,
            activation: config.dense_act_fn.activation(),
            layer_norm: T5LayerNorm::load(
                &weights.sub("layer_norm"),
                d_model,
                config.layer_norm_epsilon,
            )?,
        })
    }

    /// `out ← residual + wo(ff(norm(residual)))`.
    ///
    /// # Shapes
    /// `residual`, `out`: (rows, d_model).
    fn forward_into(
        &self,
        residual: ArrayView2<'_, f32>,
        (normed, intermediate, gated): (&mut Vec<f32>, &mut Vec<f32>, &mut Vec<f32>),
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        let (rows, d_model) = residual.dim();
        let mut normed = matrix(normed, rows, d_model);
        self.layer_norm.forward_into(residual, normed.view_mut());
        let d_ff = self.wo.in_features();
        if !self.gated {
            let mut inner = matrix(intermediate, rows, d_ff);
            self.wi
                .forward_into(normed.view(), self.activation, None, inner.view_mut())?;
            return Ok(self.wo.forward_into(
                inner.view(),
                Activation::Identity,
                Some(residual),
                out,
            )?);
        }
        // (rows, [wi_0 | wi_1]) → act(wi_0 x) · wi_1 x
        let mut both = matrix(intermediate, rows, 2 * d_ff);
        self.wi
            .forward_into(normed.view(), Activation::Identity, None, both.view_mut())?;
        let mut gated = matrix(gated, rows, d_ff);
        for (source, mut target) in both.rows().into_iter().zip(gated.rows_mut()) {
            let (activated, linear) = source.split_at(Axis(0), d_ff);
            for ((target, &a), &b) in target.iter_mut().zip(activated).zip(linear) {
                *target = self.activation.apply(a) * b;
            }
        }
        Ok(self
            .wo
            .forward_into(gated.view(), Activation::Identity, Some(residual), out)?)
    }
}

/// Where a block's new positions sit: `rows` sequences of `new` positions each, after `past`.
struct Step<'a> {
    rows: usize,
    /// (heads, new, past + new); −∞ above the diagonal in the decoder.
    bias: ArrayView3<'a, f32>,
    /// The decoder's: a query sees no later key (so the kernel skips them).
    causal: bool,
    /// The encoder's key padding, (rows, keys); `None` in the decoder.
    padding: Option<ArrayView2<'a, f32>>,
}

/// modeling_t5.py `T5Block`: self-attention, cross-attention (decoder), feed-forward.
#[derive(Debug, Clone)]
pub struct T5Block {
    self_attention: T5LayerSelfAttention,
    cross_attention: Option<T5LayerCrossAttention>,
    ff: T5LayerFF,
}

impl T5Block {
    fn load(weights: &Weights, config: &T5Config, is_decoder: bool, index: usize) -> Result<Self> {
        let layer = weights.sub("layer");
        let ff_index = if is_decoder { 2 } else { 1 };
        Ok(Self {
            self_attention: T5LayerSelfAttention::load(&layer.sub(0), config, index == 0)?,
            cross_attention: is_decoder
                .then(|| T5LayerCrossAttention::load(&layer.sub(1), config))
                .transpose()?,
            ff: T5LayerFF::load(&layer.sub(ff_index), config)?,
        })
    }

    /// `hidden ← block(hidden)`; in the decoder, the new keys and values go into `cache`.
    ///
    /// # Shapes
    /// `hidden`: (rows × new, d_model).
    fn forward_in_place(
        &self,
        mut hidden: ArrayViewMut2<'_, f32>,
        step: &Step<'_>,
        mut cache: Option<LayerCache<'_>>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        let (tokens, d_model) = hidden.dim();
        let attention = &self.self_attention.attention;
        let (heads, head_dim) = (attention.num_heads, attention.head_dim);
        let inner = heads * head_dim;
        let new = tokens / step.rows;

        let mut normed = matrix(&mut workspace.normed, tokens, d_model);
        self.self_attention
            .layer_norm
            .forward_into(hidden.view(), normed.view_mut());
        let mut qkv = matrix(&mut workspace.qkv, tokens, 3 * inner);
        attention
            .qkv
            .forward_into(normed.view(), Activation::Identity, None, qkv.view_mut())?;
        let mut context = matrix(&mut workspace.context, tokens, inner);
        let out = context
            .view_mut()
            .into_shape_with_order((step.rows, new, heads, head_dim))
            .expect("context is (tokens, inner)")
            .permuted_axes([0, 2, 1, 3]);
        match cache.as_mut() {
            Some(cache) => {
                let (queries, keys, values) = cache.append(qkv.view(), step.rows);
                let mask = AttentionMask {
                    key_padding: None,
                    causal: step.causal,
                    bias: Some(step.bias),
                };
                // no scaling: T5 folds it into the weights
                attention_into(queries, keys, values, &mask, 1.0, out);
            }
            None => {
                let qkv = qkv
                    .view()
                    .into_shape_with_order((step.rows, new, 3, heads, head_dim))
                    .expect("qkv is (tokens, 3 × inner)");
                let part = |index: usize| {
                    qkv.index_axis_move(Axis(2), index)
                        .permuted_axes([0, 2, 1, 3])
                };
                let mask = AttentionMask {
                    key_padding: step.padding,
                    causal: step.causal,
                    bias: Some(step.bias),
                };
                attention_into(part(0), part(1), part(2), &mask, 1.0, out);
            }
        }
        let mut attended = matrix(&mut workspace.attention_output, tokens, d_model);
        attention.o.forward_into(
            context.view(),
            Activation::Identity,
            Some(hidden.view()),
            attended.view_mut(),
        )?;

        if let (Some(cross), Some(cache)) = (&self.cross_attention, cache.as_ref()) {
            let mut normed = matrix(&mut workspace.normed, tokens, d_model);
            cross
                .layer_norm
                .forward_into(attended.view(), normed.view_mut());
            let mut query = matrix(&mut workspace.query, tokens, inner);
            cross
                .q
                .forward_into(normed.view(), Activation::Identity, None, query.view_mut())?;
            let mut context = matrix(&mut workspace.context, tokens, inner);
            // no scaling: T5's position bias of cross-attention is zero
            cache.cross_attention_into(query.view(), 1.0, context.view_mut());
            // the block's input is read for the last time above
            cross.o.forward_into(
                context.view(),
                Activation::Identity,
                Some(attended.view()),
                hidden.view_mut(),
            )?;
            attended.assign(&hidden);
        }
        let buffers = (
            &mut workspace.normed,
            &mut workspace.intermediate,
            &mut workspace.gated,
        );
        self.ff.forward_into(attended.view(), buffers, hidden)
    }
}

/// modeling_t5.py `T5Stack`: the blocks and the final norm of the encoder or the decoder; the
/// first block's relative position table serves them all.
#[derive(Debug, Clone)]
pub struct T5Stack {
    block: Vec<T5Block>,
    final_layer_norm: T5LayerNorm,
    is_decoder: bool,
    /// `relative_attention_num_buckets`.
    num_buckets: usize,
    /// `relative_attention_max_distance`.
    max_distance: usize,
}

impl T5Stack {
    fn load(weights: &Weights, config: &T5Config, is_decoder: bool) -> Result<Self> {
        let layers = if is_decoder {
            config.num_decoder_layers
        } else {
            config.num_layers
        };
        Ok(Self {
            block: load_layers(layers, |index| {
                T5Block::load(&weights.sub("block").sub(index), config, is_decoder, index)
            })?,
            final_layer_norm: T5LayerNorm::load(
                &weights.sub("final_layer_norm"),
                config.d_model,
                config.layer_norm_epsilon,
            )?,
            is_decoder,
            num_buckets: config.relative_attention_num_buckets,
            max_distance: config.relative_attention_max_distance,
        })
    }

    fn bias_table(&self) -> ArrayView2<'_, f32> {
        self.block[0]
            .self_attention
            .attention
            .relative_attention_bias
            .as_ref()
            .expect("the first block holds the relative position table")
            .view2()
            .expect("the table has two dimensions")
    }

    /// Runs every block on `hidden` (rows × new, d_model), then the final norm into the result;
    /// with `states`, pushes the blocks' inputs and the normed output as transformers does.
    fn forward(
        &self,
        mut hidden: Array2<f32>,
        rows: usize,
        padding: Option<ArrayView2<'_, f32>>,
        mut cache: Option<&mut Seq2SeqCache>,
        mut states: Option<&mut Vec<Array2<f32>>>,
        workspace: &mut Workspace,
    ) -> Result<Array2<f32>> {
        let new = hidden.nrows() / rows;
        let past = cache.as_ref().map_or(0, |cache| cache.len());
        let mut bias_buffer = std::mem::take(&mut workspace.position_bias);
        let bias = position_bias(&mut bias_buffer, self, past, new);
        let step = Step {
            rows,
            bias,
            causal: self.is_decoder,
            padding,
        };
        let mut result = Ok(());
        for (index, block) in self.block.iter().enumerate() {
            if let Some(states) = states.as_deref_mut() {
                states.push(hidden.clone());
            }
            let layer = cache.as_deref_mut().map(|cache| cache.layer(index));
            result = block.forward_in_place(hidden.view_mut(), &step, layer, workspace);
            if result.is_err() {
                break;
            }
        }
        workspace.position_bias = bias_buffer;
        result?;
        if let Some(cache) = cache {
            cache.advance(new);
        }
        let mut out = Array2::zeros(hidden.dim());
        self.final_layer_norm
            .forward_into(hidden.view(), out.view_mut());
        if let Some(states) = states {
            states.push(out.clone());
        }
        Ok(out)
    }
}

/// modeling_t5.py `T5ForConditionalGeneration`: the shared embeddings, the encoder and decoder
/// stacks, and the LM head (tied to the embeddings and read with the d_model^-0.5 rescale when
/// `tie_word_embeddings`, else `lm_head.weight`).
#[derive(Debug, Clone)]
pub struct T5ForConditionalGeneration {
    shared: Embedding,
    encoder: T5Stack,
    decoder: T5Stack,
    lm_head: Linear,
    /// The head's weight unpacked, `[vocab, d_model]` (the shared table when tied): the exact
    /// recheck of [`T5ForConditionalGeneration::greedy_tokens`].
    lm_head_weight: Tensor,
    /// The 8-bit screen of `lm_head_weight`, made on the first greedy step.
    screen: OnceLock<Option<ArgmaxScreen>>,
    /// d_model^-0.5 with a tied head, else 1.
    head_scale: f32,
    config: T5Config,
    workspace: SharedWorkspace,
}

impl T5ForConditionalGeneration {
    /// Loads `config.json` and the weights of a model folder.
    ///
    /// # Errors
    /// A missing or invalid config, a config of another `model_type`, missing weights.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let config = match ModelConfig::from_folder(dir)? {
            ModelConfig::T5(config) => config,
            other => {
                return Err(Error::ConfigField {
                    source_name: dir.join("config.json").display().to_string(),
                    field: "model_type".to_string(),
                    reason: format!("expected `t5` or `mt5`, found `{}`", other.model_type()),
                });
            }
        };
        Self::load(Weights::from_folder(dir)?, &config)
    }

    /// Loads `shared`, `encoder.*`, `decoder.*` and `lm_head` (tied to `shared` unless the config
    /// unties it). Old checkpoints that store only `encoder.embed_tokens.weight` are read too.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full dotted path; a config T5 cannot run.
    pub fn load(mut weights: Weights, config: &T5Config) -> Result<Self> {
        let (vocab, d_model) = (config.vocab_size, config.d_model);
        if !weights.contains("shared.weight") && weights.contains("encoder.embed_tokens.weight") {
            weights.alias("shared.weight", "encoder.embed_tokens.weight");
        }
        let tied = ModelConfig::T5(config.clone()).tie_weights(
            &mut weights,
            "lm_head.weight",
            "shared.weight",
        );
        Ok(Self {
            shared: Embedding::load(&weights.sub("shared"), vocab, d_model)?,
            encoder: T5Stack::load(&weights.sub("encoder"), config, false)?,
            decoder: T5Stack::load(&weights.sub("decoder"), config, true)?,
            lm_head: Linear::load_without_bias(&weights.sub("lm_head"), d_model, vocab)?,
            lm_head_weight: weights.get("lm_head.weight", &[vocab, d_model])?,
            screen: OnceLock::new(),
            head_scale: if tied {
                (d_model as f32).powf(-0.5)
            } else {
                1.0
            },
            config: config.clone(),
            workspace: SharedWorkspace::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// `shared[ids]`, one row per token.
    fn embed(&self, ids: ArrayView2<'_, u32>) -> Result<Array2<f32>> {
        check_ids(MODEL, ids, self.config.vocab_size)?;
        let ids: Vec<u32> = ids.iter().copied().collect();
        Ok(self.shared.forward(&ids)?)
    }

    /// Runs the encoder.
    ///
    /// # Shapes
    /// `input`: (batch, seq); see [`EncoderOutput`] (no pooler). With `output_hidden_states`:
    /// the embeddings, then each block's output, the last after `final_layer_norm`.
    ///
    /// # Errors
    /// [`Error::Input`] for mismatched shapes, a bad mask or an id beyond the vocabulary.
    pub fn encode(
        &self,
        input: &EncoderInput<'_>,
        output_hidden_states: bool,
    ) -> Result<EncoderOutput> {
        input.validate(MODEL, usize::MAX)?;
        let (batch, seq) = input.input_ids.dim();
        let hidden = self.embed(input.input_ids)?;
        let padding = input.key_padding();
        let mut states = output_hidden_states.then(Vec::new);
        let last = self.workspace.with(|workspace| {
            self.encoder.forward(
                hidden,
                batch,
                Some(padding.view()),
                None,
                states.as_mut(),
                workspace,
            )
        })?;
        let to_3d = |matrix: Array2<f32>| {
            matrix
                .into_shape_with_order((batch, seq, self.config.d_model))
                .expect("hidden states are (batch × seq, d_model)")
        };
        Ok(EncoderOutput {
            last_hidden_state: to_3d(last),
            pooler_output: None,
            hidden_states: states.unwrap_or_default().into_iter().map(to_3d).collect(),
        })
    }

    /// Runs the encoder once per input and every decoder layer's cross-attention keys and values
    /// on its output; returns the cache for `rows_per_input` decoder rows per input, of up to
    /// `capacity` decoder positions.
    ///
    /// # Errors
    /// As [`T5ForConditionalGeneration::encode`]; also when `rows_per_input` is 0.
    pub fn start(
        &self,
        input: &EncoderInput<'_>,
        rows_per_input: usize,
        capacity: usize,
    ) -> Result<Seq2SeqCache> {
        let output = self.encode(input, false)?;
        self.start_from_encoder(
            output.last_hidden_state.view(),
            input.attention_mask,
            rows_per_input,
            capacity,
        )
    }

    /// [`T5ForConditionalGeneration::start`] from the encoder's output.
    ///
    /// # Shapes
    /// `encoder_hidden`: (inputs, source, d_model); `attention_mask`: (inputs, source).
    ///
    /// # Errors
    /// Mismatched shapes, `rows_per_input` 0.
    pub fn start_from_encoder(
        &self,
        encoder_hidden: ArrayView3<'_, f32>,
        attention_mask: ArrayView2<'_, u32>,
        rows_per_input: usize,
        capacity: usize,
    ) -> Result<Seq2SeqCache> {
        let (inputs, source, d_model) = encoder_hidden.dim();
        if attention_mask.dim() != (inputs, source)
            || d_model != self.config.d_model
            || rows_per_input == 0
        {
            return Err(Error::Input {
                model: MODEL.to_string(),
                reason: format!(
                    "encoder output {:?}, attention mask {:?}, {rows_per_input} rows per input: \
                     expected (inputs, source, {}), (inputs, source) and at least one row",
                    encoder_hidden.dim(),
                    attention_mask.dim(),
                    self.config.d_model
                ),
            });
        }
        let hidden = encoder_hidden
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((inputs * source, d_model))
            .expect("standard layout");
        let cross = self
            .decoder
            .block
            .iter()
            .map(|block| {
                block
                    .cross_attention
                    .as_ref()
                    .expect("decoder blocks have cross-attention")
                    .key_values(hidden.view())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Seq2SeqCache::new(
            cross,
            attention_mask.mapv(|value| value as f32),
            (self.config.num_heads, self.config.d_kv),
            rows_per_input,
            capacity,
        ))
    }

    /// Runs the decoder on `decoder_input_ids` after the positions in `cache` (appending to it)
    /// and returns the LM head's logits of every new position.
    ///
    /// # Shapes
    /// `decoder_input_ids`: (rows, new) with rows = `cache.rows()`; see [`DecoderOutput`].
    ///
    /// # Errors
    /// An id beyond the vocabulary, a cache of other rows or too small, no new position.
    pub fn decode(
        &self,
        decoder_input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
        output_hidden_states: bool,
    ) -> Result<DecoderOutput> {
        let (rows, new) = decoder_input_ids.dim();
        let mut states = output_hidden_states.then(Vec::new);
        let hidden = self.decode_hidden(decoder_input_ids, cache, states.as_mut())?;
        let logits = self
            .logits(hidden.view())?
            .into_shape_with_order((rows, new, self.config.vocab_size))
            .expect("logits are (rows × new, vocab)");
        let d_model = self.config.d_model;
        Ok(DecoderOutput {
            logits,
            hidden_states: states
                .unwrap_or_default()
                .into_iter()
                .map(|state| {
                    state
                        .into_shape_with_order((rows, new, d_model))
                        .expect("(rows × new, d_model)")
                })
                .collect(),
        })
    }

    /// [`T5ForConditionalGeneration::decode`] returning only the logits of each row's last new
    /// position: what a generation step needs.
    ///
    /// # Shapes
    /// result: (rows, vocab).
    ///
    /// # Errors
    /// As [`T5ForConditionalGeneration::decode`].
    pub fn decode_last(
        &self,
        decoder_input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<Array2<f32>> {
        let hidden = self.decode_last_hidden(decoder_input_ids, cache)?;
        self.logits(hidden.view())
    }

    /// The decoder's final hidden state of each row's last new position (the LM head's input,
    /// for [`T5ForConditionalGeneration::logits`] or
    /// [`T5ForConditionalGeneration::greedy_tokens`]), (rows, d_model).
    ///
    /// # Errors
    /// As [`T5ForConditionalGeneration::decode`].
    pub fn decode_last_hidden(
        &self,
        decoder_input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<Array2<f32>> {
        let new = decoder_input_ids.ncols();
        let hidden = self.decode_hidden(decoder_input_ids, cache, None)?;
        Ok(hidden.slice(s![new - 1..;new, ..]).to_owned())
    }

    /// Each row's largest logit's id (the first on ties), as [`T5ForConditionalGeneration::logits`]
    /// followed by an argmax would give, found by streaming an 8-bit copy of the LM head and
    /// rechecking in f32 only the rows it cannot rule out ([`ArgmaxScreen`]); `None` when the
    /// screen cannot decide a row (then compute the logits).
    ///
    /// # Shapes
    /// `hidden`: (rows, d_model).
    pub fn greedy_tokens(&self, hidden: ArrayView2<'_, f32>) -> Option<Vec<u32>> {
        let weight = self.lm_head_weight.view2().ok()?;
        if hidden.ncols() != weight.ncols() {
            return None;
        }
        let screen = self
            .screen
            .get_or_init(|| ArgmaxScreen::from_linear_weight(weight))
            .as_ref()?;
        hidden
            .rows()
            .into_iter()
            .map(|row| {
                // as `logits` computes them (× 1 changes nothing for an untied head)
                let scaled: Vec<f32> = row.iter().map(|&value| value * self.head_scale).collect();
                screen
                    .argmax(&scaled, weight)
                    .and_then(|index| u32::try_from(index).ok())
            })
            .collect()
    }

    /// The decoder's final hidden states, (rows × new, d_model).
    fn decode_hidden(
        &self,
        decoder_input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
        states: Option<&mut Vec<Array2<f32>>>,
    ) -> Result<Array2<f32>> {
        let (rows, new) = decoder_input_ids.dim();
        if new == 0 {
            return Err(Error::Input {
                model: MODEL.to_string(),
                reason: "no decoder positions to run".to_string(),
            });
        }
        cache.check_step(MODEL, rows, new)?;
        let hidden = self.embed(decoder_input_ids)?;
        self.workspace.with(|workspace| {
            self.decoder
                .forward(hidden, rows, None, Some(cache), states, workspace)
        })
    }

    /// The LM head: `(hidden · head_scale) · lm_headᵀ`.
    ///
    /// # Shapes
    /// `hidden`: (rows, d_model); result: (rows, vocab).
    ///
    /// # Errors
    /// A `hidden` of the wrong width.
    pub fn logits(&self, hidden: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        if self.head_scale == 1.0 {
            return Ok(self.lm_head.forward(hidden)?);
        }
        let scaled = hidden.mapv(|value| value * self.head_scale);
        Ok(self.lm_head.forward(scaled.view())?)
    }
}

impl Generative for T5ForConditionalGeneration {
    type Cache = Seq2SeqCache;

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn max_positions(&self) -> Option<usize> {
        None
    }

    fn is_encoder_decoder(&self) -> bool {
        true
    }

    /// The encoder once per prompt and every decoder layer's cross-attention keys and values;
    /// each of the `expand` rows of a prompt starts from `decoder_start_token_id`.
    fn start(
        &self,
        prompts: &Prompts,
        expand: usize,
        capacity: usize,
        decoder_start_token_id: Option<u32>,
    ) -> Result<(Seq2SeqCache, Vec<Vec<u32>>)> {
        start_generation(
            "T5ForConditionalGeneration",
            prompts,
            decoder_start_token_id,
            self.config.common.decoder_start_token_id,
            |input| T5ForConditionalGeneration::start(self, input, expand, capacity),
        )
    }

    fn forward_last(
        &self,
        input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<Array2<f32>> {
        self.decode_last(input_ids, cache)
    }

    /// Through the 8-bit screen of the LM head ([`T5ForConditionalGeneration::greedy_tokens`]); the logits
    /// when it cannot decide.
    fn forward_last_greedy(
        &self,
        input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<NextStep> {
        let hidden = self.decode_last_hidden(input_ids, cache)?;
        greedy_step(
            hidden,
            |hidden| self.greedy_tokens(hidden),
            |hidden| self.logits(hidden),
        )
    }

    fn reorder_cache(&self, cache: &mut Seq2SeqCache, rows: &[usize]) -> Result<()> {
        cache.reorder_rows(rows)
    }
}
