//! BART, as transformers' `models/bart/modeling_bart.py` (4.57.6): token embeddings (scaled by
//! √d_model when `scale_embedding`), learned positions offset by 2, `layernorm_embedding`, then
//! post-LayerNorm encoder and decoder layers (self-attention, cross-attention in the decoder, a
//! feed-forward block), and an LM head tied to the shared embeddings plus `final_logits_bias`.
//!
//! Marian (`marian.rs`) is this model with sinusoidal positions and no embedding LayerNorm
//! (modeling_marian.py's layers are "Copied from" BART's): it reuses everything here but the
//! embeddings. Hidden states flow as (tokens, d_model) matrices, tokens = rows × positions.

use std::path::Path;
use std::sync::OnceLock;

use ndarray::{Array2, ArrayView2, ArrayView3, ArrayViewMut2, s};
use oxformer_nn::{Embedding, LayerNorm, Linear, Tensor, Weights};
use oxformer_tensor::{Activation, ArgmaxScreen, AttentionMask, line_padded};

use crate::bert::{load_layers, multi_head_attention_into};
use crate::config::{BartConfig, HiddenAct, ModelConfig};
use crate::error::{Error, Result};
use crate::generation::{Generative, NextStep, Prompts};
use crate::input::{EncoderInput, EncoderOutput, TokenLayout};
use crate::seq2seq::{
    DecoderOutput, LayerCache, Seq2SeqCache, check_ids, greedy_step, start_generation,
};
use crate::workspace::{SharedWorkspace, Workspace, line_matrix, matrix};

/// `nn.LayerNorm`'s default epsilon, which every BART and Marian norm uses.
const LAYER_NORM_EPS: f32 = 1e-5;

/// The sizes of a BART-like model's layers (BART's and Marian's configs name them alike).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BartLayout {
    pub(crate) d_model: usize,
    pub(crate) encoder_layers: usize,
    pub(crate) encoder_ffn_dim: usize,
    pub(crate) encoder_attention_heads: usize,
    pub(crate) decoder_layers: usize,
    pub(crate) decoder_ffn_dim: usize,
    pub(crate) decoder_attention_heads: usize,
    pub(crate) activation_function: HiddenAct,
}

impl BartLayout {
    fn of(config: &BartConfig) -> Self {
        Self {
            d_model: config.d_model,
            encoder_layers: config.encoder_layers,
            encoder_ffn_dim: config.encoder_ffn_dim,
            encoder_attention_heads: config.encoder_attention_heads,
            decoder_layers: config.decoder_layers,
            decoder_ffn_dim: config.decoder_ffn_dim,
            decoder_attention_heads: config.decoder_attention_heads,
            activation_function: config.activation_function,
        }
    }
}

/// Where position vectors come from.
#[derive(Debug, Clone)]
pub(crate) enum PositionTable {
    /// modeling_bart.py `BartLearnedPositionalEmbedding`: a learned table read at position + 2.
    Learned(Embedding),
    /// A fixed table read at the position (Marian's sinusoids), (positions, d_model).
    Fixed(Array2<f32>),
}

/// modeling_bart.py `BartScaledWordEmbedding` + the positions + `layernorm_embedding`:
/// `norm(token[id] · scale + position[past + t])`, the norm where the model has one.
#[derive(Debug, Clone)]
pub(crate) struct BartEmbeddings {
    pub(crate) tokens: Embedding,
    /// √d_model with `scale_embedding`, else 1.
    pub(crate) scale: f32,
    pub(crate) positions: PositionTable,
    /// Most positions (`max_position_embeddings`).
    pub(crate) max_positions: usize,
    pub(crate) layer_norm: Option<LayerNorm>,
}

impl BartEmbeddings {
    /// BART's: `embed_positions` (max + 2 rows) and `layernorm_embedding` under `weights`.
    fn load_bart(weights: &Weights, tokens: &Embedding, config: &BartConfig) -> Result<Self> {
        let d_model = config.d_model;
        Ok(Self {
            tokens: tokens.clone(),
            scale: if config.scale_embedding {
                (d_model as f32).sqrt()
            } else {
                1.0
            },
            positions: PositionTable::Learned(Embedding::load(
                &weights.sub("embed_positions"),
                config.max_position_embeddings + 2,
                d_model,
            )?),
            max_positions: config.max_position_embeddings,
            layer_norm: Some(LayerNorm::load(
                &weights.sub("layernorm_embedding"),
                d_model,
                LAYER_NORM_EPS,
            )?),
        })
    }

    /// The embedded tokens of `ids`, each after `past` positions.
    ///
    /// # Shapes
    /// `ids`: (rows, new); result: (rows × new, d_model).
    fn forward(&self, model: &str, ids: ArrayView2<'_, u32>, past: usize) -> Result<Array2<f32>> {
        let (rows, new) = ids.dim();
        if past + new > self.max_positions {
            return Err(Error::Input {
                model: model.to_string(),
                reason: format!(
                    "position {} is beyond the {} this model allows (max_position_embeddings)",
                    past + new - 1,
                    self.max_positions
                ),
            });
        }
        check_ids(model, ids, self.tokens.num_embeddings())?;
        let dim = self.tokens.dim();
        let mut values = line_padded(rows * dim * new);
        for row in ids.rows() {
            for (t, &id) in row.iter().enumerate() {
                let token = self.tokens.row(id)?;
                let position = match &self.positions {
                    PositionTable::Learned(table) => table.row((past + t + 2) as u32)?,
                    PositionTable::Fixed(table) => table
                        .row(past + t)
                        .to_slice()
                        .expect("the table is in standard layout"),
                };
                values.extend(
                    token
                        .iter()
                        .zip(position)
                        .map(|(&token, &position)| token * self.scale + position),
                );
            }
        }
        let mut out = line_matrix(values, rows * new, dim);
        if let Some(norm) = &self.layer_norm {
            norm.forward_in_place(out.view_mut(), None)?;
        }
        Ok(out)
    }
}

/// modeling_bart.py `BartAttention` as self-attention: `q_proj`, `k_proj`, `v_proj` fused at load
/// into one product, and `out_proj`. Scaling by 1/√head_dim.
#[derive(Debug, Clone)]
struct BartSelfAttention {
    qkv: Linear,
    out_proj: Linear,
    num_heads: usize,
}

impl BartSelfAttention {
    fn load(weights: &Weights, d_model: usize, num_heads: usize) -> Result<Self> {
        let parts = ["q_proj", "k_proj", "v_proj"].map(|name| weights.sub(name));
        Ok(Self {
            qkv: Linear::load_fused(&parts, d_model, d_model)?,
            out_proj: Linear::load(&weights.sub("out_proj"), d_model, d_model)?,
            num_heads,
        })
    }

    fn head_dim(&self) -> usize {
        self.out_proj.in_features() / self.num_heads
    }

    fn scale(&self) -> f32 {
        (self.head_dim() as f32).powf(-0.5)
    }
}

/// modeling_bart.py `BartAttention` as the decoder's cross-attention: `q_proj` on the decoder,
/// `k_proj` and `v_proj` (fused) on the encoder's output once per input, `out_proj`.
#[derive(Debug, Clone)]
struct BartCrossAttention {
    q_proj: Linear,
    kv: Linear,
    out_proj: Linear,
}

impl BartCrossAttention {
    fn load(weights: &Weights, d_model: usize) -> Result<Self> {
        let parts = ["k_proj", "v_proj"].map(|name| weights.sub(name));
        Ok(Self {
            q_proj: Linear::load(&weights.sub("q_proj"), d_model, d_model)?,
            kv: Linear::load_fused(&parts, d_model, d_model)?,
            out_proj: Linear::load(&weights.sub("out_proj"), d_model, d_model)?,
        })
    }
}

/// The feed-forward block both layers end with: `final_layer_norm(fc2(act(fc1(x))) + x)`.
#[derive(Debug, Clone)]
struct BartFeedForward {
    fc1: Linear,
    fc2: Linear,
    final_layer_norm: LayerNorm,
    activation: Activation,
}

impl BartFeedForward {
    fn load(
        weights: &Weights,
        d_model: usize,
        ffn_dim: usize,
        activation: HiddenAct,
    ) -> Result<Self> {
        Ok(Self {
            fc1: Linear::load(&weights.sub("fc1"), d_model, ffn_dim)?,
            fc2: Linear::load(&weights.sub("fc2"), ffn_dim, d_model)?,
            final_layer_norm: LayerNorm::load(
                &weights.sub("final_layer_norm"),
                d_model,
                LAYER_NORM_EPS,
            )?,
            activation: activation.activation(),
        })
    }

    /// `out ← final_layer_norm(fc2(act(fc1(x))) + x)`, the inner activations in `inner_buffer`.
    fn forward_into(
        &self,
        x: ArrayView2<'_, f32>,
        inner_buffer: &mut Vec<f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        let mut inner = matrix(inner_buffer, x.nrows(), self.fc1.out_features());
        self.fc1
            .forward_into(x, self.activation, None, inner.view_mut())?;
        Ok(self
            .fc2
            .forward_into_normed(inner.view(), x, &self.final_layer_norm, out)?)
    }
}

/// modeling_bart.py `BartEncoderLayer`: post-LayerNorm self-attention and feed-forward.
#[derive(Debug, Clone)]
struct BartEncoderLayer {
    self_attn: BartSelfAttention,
    self_attn_layer_norm: LayerNorm,
    feed_forward: BartFeedForward,
}

impl BartEncoderLayer {
    fn load(weights: &Weights, layout: &BartLayout) -> Result<Self> {
        let d_model = layout.d_model;
        Ok(Self {
            self_attn: BartSelfAttention::load(
                &weights.sub("self_attn"),
                d_model,
                layout.encoder_attention_heads,
            )?,
            self_attn_layer_norm: LayerNorm::load(
                &weights.sub("self_attn_layer_norm"),
                d_model,
                LAYER_NORM_EPS,
            )?,
            feed_forward: BartFeedForward::load(
                weights,
                d_model,
                layout.encoder_ffn_dim,
                layout.activation_function,
            )?,
        })
    }

    /// `hidden ← layer(hidden)`.
    ///
    /// # Shapes
    /// `hidden`: (batch × seq, d_model).
    fn forward_in_place(
        &self,
        hidden: ArrayViewMut2<'_, f32>,
        layout: &TokenLayout,
        mask: &AttentionMask<'_>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        let (tokens, d_model) = hidden.dim();
        let attention = &self.self_attn;
        let mut qkv = matrix(&mut workspace.qkv, tokens, 3 * d_model);
        attention
            .qkv
            .forward_into(hidden.view(), Activation::Identity, None, qkv.view_mut())?;
        let mut context = matrix(&mut workspace.context, tokens, d_model);
        multi_head_attention_into(
            qkv.view(),
            layout,
            attention.num_heads,
            attention.head_dim(),
            mask,
            context.view_mut(),
        );
        let mut attended = matrix(&mut workspace.attention_output, tokens, d_model);
        attention.out_proj.forward_into_normed(
            context.view(),
            hidden.view(),
            &self.self_attn_layer_norm,
            attended.view_mut(),
        )?;
        // the layer's input is read for the last time above
        self.feed_forward
            .forward_into(attended.view(), &mut workspace.intermediate, hidden)
    }
}

/// modeling_bart.py `BartDecoderLayer`: post-LayerNorm causal self-attention, cross-attention
/// over the encoder's output, feed-forward.
#[derive(Debug, Clone)]
struct BartDecoderLayer {
    self_attn: BartSelfAttention,
    self_attn_layer_norm: LayerNorm,
    encoder_attn: BartCrossAttention,
    encoder_attn_layer_norm: LayerNorm,
    feed_forward: BartFeedForward,
}

impl BartDecoderLayer {
    fn load(weights: &Weights, layout: &BartLayout) -> Result<Self> {
        let d_model = layout.d_model;
        let norm = |name: &str| LayerNorm::load(&weights.sub(name), d_model, LAYER_NORM_EPS);
        Ok(Self {
            self_attn: BartSelfAttention::load(
                &weights.sub("self_attn"),
                d_model,
                layout.decoder_attention_heads,
            )?,
            self_attn_layer_norm: norm("self_attn_layer_norm")?,
            encoder_attn: BartCrossAttention::load(&weights.sub("encoder_attn"), d_model)?,
            encoder_attn_layer_norm: norm("encoder_attn_layer_norm")?,
            feed_forward: BartFeedForward::load(
                weights,
                d_model,
                layout.decoder_ffn_dim,
                layout.activation_function,
            )?,
        })
    }

    /// `hidden ← layer(hidden)`, the new keys and values appended to `cache`.
    ///
    /// # Shapes
    /// `hidden`: (rows × new, d_model).
    fn forward_in_place(
        &self,
        mut hidden: ArrayViewMut2<'_, f32>,
        rows: usize,
        mut cache: LayerCache<'_>,
        workspace: &mut Workspace,
    ) -> Result<()> {
        let (tokens, d_model) = hidden.dim();
        let attention = &self.self_attn;
        let scale = attention.scale();
        let mut qkv = matrix(&mut workspace.qkv, tokens, 3 * d_model);
        attention
            .qkv
            .forward_into(hidden.view(), Activation::Identity, None, qkv.view_mut())?;
        let mut context = matrix(&mut workspace.context, tokens, d_model);
        cache.self_attention_into(qkv.view(), rows, scale, context.view_mut());
        let mut attended = matrix(&mut workspace.attention_output, tokens, d_model);
        attention.out_proj.forward_into_normed(
            context.view(),
            hidden.view(),
            &self.self_attn_layer_norm,
            attended.view_mut(),
        )?;

        let cross = &self.encoder_attn;
        let mut query = matrix(&mut workspace.query, tokens, d_model);
        cross.q_proj.forward_into(
            attended.view(),
            Activation::Identity,
            None,
            query.view_mut(),
        )?;
        cache.cross_attention_into(query.view(), scale, context.view_mut());
        // the layer's input is read for the last time above
        cross.out_proj.forward_into_normed(
            context.view(),
            attended.view(),
            &self.encoder_attn_layer_norm,
            hidden.view_mut(),
        )?;
        self.feed_forward.forward_into(
            hidden.view(),
            &mut workspace.intermediate,
            attended.view_mut(),
        )?;
        hidden.assign(&attended);
        Ok(())
    }
}

/// modeling_bart.py `BartModel` (and `MarianModel`): the encoder's and the decoder's embeddings
/// and layers.
#[derive(Debug, Clone)]
pub struct BartModel {
    encoder_embeddings: BartEmbeddings,
    encoder_layers: Vec<BartEncoderLayer>,
    decoder_embeddings: BartEmbeddings,
    decoder_layers: Vec<BartDecoderLayer>,
    layout: BartLayout,
    /// Names the model in errors.
    name: &'static str,
    workspace: SharedWorkspace,
}

impl BartModel {
    /// The layers under `weights` (`encoder.layers.{i}`, `decoder.layers.{i}`) around the given
    /// embeddings.
    pub(crate) fn load_with(
        weights: &Weights,
        layout: BartLayout,
        (encoder_embeddings, decoder_embeddings): (BartEmbeddings, BartEmbeddings),
        name: &'static str,
    ) -> Result<Self> {
        Ok(Self {
            encoder_embeddings,
            encoder_layers: load_layers(layout.encoder_layers, |index| {
                BartEncoderLayer::load(&weights.sub("encoder.layers").sub(index), &layout)
            })?,
            decoder_embeddings,
            decoder_layers: load_layers(layout.decoder_layers, |index| {
                BartDecoderLayer::load(&weights.sub("decoder.layers").sub(index), &layout)
            })?,
            layout,
            name,
            workspace: SharedWorkspace::default(),
        })
    }

    /// Runs the encoder.
    ///
    /// # Shapes
    /// `input`: (batch, seq); see [`EncoderOutput`] (no pooler). With `output_hidden_states`:
    /// the embeddings' output, then each layer's.
    ///
    /// # Errors
    /// [`Error::Input`] for mismatched shapes, a bad mask, more positions than
    /// `max_position_embeddings`, an id beyond the vocabulary.
    pub fn encode(
        &self,
        input: &EncoderInput<'_>,
        output_hidden_states: bool,
    ) -> Result<EncoderOutput> {
        input.validate(self.name, self.encoder_embeddings.max_positions)?;
        let (batch, seq) = input.input_ids.dim();
        let mut hidden = self
            .encoder_embeddings
            .forward(self.name, input.input_ids, 0)?;
        let key_padding = input.key_padding();
        let mask = AttentionMask {
            key_padding: Some(key_padding.view()),
            causal: false,
            bias: None,
        };
        let layout = TokenLayout::Padded { batch, seq };
        let mut states = output_hidden_states.then(|| vec![hidden.clone()]);
        self.workspace.with(|workspace| {
            for layer in &self.encoder_layers {
                layer.forward_in_place(hidden.view_mut(), &layout, &mask, workspace)?;
                if let Some(states) = states.as_mut() {
                    states.push(hidden.clone());
                }
            }
            Ok::<_, Error>(())
        })?;
        let to_3d = |matrix: Array2<f32>| layout.unpack(matrix);
        Ok(EncoderOutput {
            last_hidden_state: to_3d(hidden),
            pooler_output: None,
            hidden_states: states.unwrap_or_default().into_iter().map(to_3d).collect(),
        })
    }

    /// The cache for `rows_per_input` decoder rows per input of up to `capacity` positions,
    /// with every decoder layer's cross-attention keys and values of the encoder's output.
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
            || d_model != self.layout.d_model
            || rows_per_input == 0
        {
            return Err(Error::Input {
                model: self.name.to_string(),
                reason: format!(
                    "encoder output {:?}, attention mask {:?}, {rows_per_input} rows per input: \
                     expected (inputs, source, {}), (inputs, source) and at least one row",
                    encoder_hidden.dim(),
                    attention_mask.dim(),
                    self.layout.d_model
                ),
            });
        }
        let hidden = encoder_hidden
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((inputs * source, d_model))
            .expect("standard layout");
        let cross = self
            .decoder_layers
            .iter()
            .map(|layer| Ok(layer.encoder_attn.kv.forward(hidden.view())?))
            .collect::<Result<Vec<_>>>()?;
        let heads = self.layout.decoder_attention_heads;
        Ok(Seq2SeqCache::new(
            cross,
            attention_mask.mapv(|value| value as f32),
            (heads, d_model / heads),
            rows_per_input,
            capacity,
        ))
    }

    /// The decoder's last layer's output for `decoder_input_ids` after the positions in `cache`
    /// (appended to it); with `states`, the embeddings' output and each layer's.
    ///
    /// # Shapes
    /// `decoder_input_ids`: (rows, new); result: (rows × new, d_model).
    pub(crate) fn decode_hidden(
        &self,
        decoder_input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
        mut states: Option<&mut Vec<Array2<f32>>>,
    ) -> Result<Array2<f32>> {
        let (rows, new) = decoder_input_ids.dim();
        if new == 0 {
            return Err(Error::Input {
                model: self.name.to_string(),
                reason: "no decoder positions to run".to_string(),
            });
        }
        cache.check_step(self.name, rows, new)?;
        let mut hidden =
            self.decoder_embeddings
                .forward(self.name, decoder_input_ids, cache.len())?;
        if let Some(states) = states.as_deref_mut() {
            states.push(hidden.clone());
        }
        self.workspace.with(|workspace| {
            for (index, layer) in self.decoder_layers.iter().enumerate() {
                layer.forward_in_place(hidden.view_mut(), rows, cache.layer(index), workspace)?;
                if let Some(states) = states.as_deref_mut() {
                    states.push(hidden.clone());
                }
            }
            Ok::<_, Error>(())
        })?;
        cache.advance(new);
        Ok(hidden)
    }
}

/// modeling_bart.py `BartForConditionalGeneration`, which modeling_marian.py's `MarianMTModel`
/// copies: [`BartModel`] and the LM head (tied to the decoder's embeddings unless the config
/// unties it) with `final_logits_bias` as its bias. BART's is [`BartForConditionalGeneration`],
/// Marian's [`crate::marian::MarianMTModel`]: this type over each one's config, each loaded by its
/// own file (which embeddings, which names).
#[derive(Debug, Clone)]
pub struct ConditionalGeneration<C> {
    model: BartModel,
    /// `[vocab, d_model]`, bias `final_logits_bias`.
    lm_head: Linear,
    /// The head's weight unpacked (the exact recheck of the greedy screen).
    lm_head_weight: Tensor,
    /// Whether `final_logits_bias` is all zeros (as in the published BART and opus-mt
    /// checkpoints): only then can the greedy screen, which knows no bias, stand for the head.
    bias_is_zero: bool,
    /// The 8-bit screen of `lm_head_weight`, made on the first greedy step.
    screen: OnceLock<Option<ArgmaxScreen>>,
    config: C,
    /// `max_position_embeddings` and `decoder_start_token_id` of `config`, for generation.
    max_positions: usize,
    decoder_start_token_id: Option<u32>,
}

/// BART: [`ConditionalGeneration`] over [`BartConfig`].
pub type BartForConditionalGeneration = ConditionalGeneration<BartConfig>;

impl BartForConditionalGeneration {
    /// Loads `config.json` and the weights of a model folder.
    ///
    /// # Errors
    /// A missing or invalid config, a config of another `model_type`, missing weights.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let config = match ModelConfig::from_folder(dir)? {
            ModelConfig::Bart(config) => config,
            other => {
                return Err(Error::ConfigField {
                    source_name: dir.join("config.json").display().to_string(),
                    field: "model_type".to_string(),
                    reason: format!("expected `bart`, found `{}`", other.model_type()),
                });
            }
        };
        Self::load(Weights::from_folder(dir)?, &config)
    }

    /// Loads `model.shared`, `model.encoder.*`, `model.decoder.*`, `final_logits_bias` and
    /// `lm_head` (bare `BartModel` names without `model.` are read too).
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full dotted path.
    pub fn load(mut weights: Weights, config: &BartConfig) -> Result<Self> {
        let shared = shared_embeddings(&mut weights);
        ModelConfig::Bart(config.clone()).tie_weights(&mut weights, "lm_head.weight", &shared);
        let model_weights = weights.sub_if_present("model");
        let (vocab, d_model) = (config.vocab_size, config.d_model);
        let tokens = Embedding::load(&model_weights.sub("shared"), vocab, d_model)?;
        let embeddings = (
            BartEmbeddings::load_bart(&model_weights.sub("encoder"), &tokens, config)?,
            BartEmbeddings::load_bart(&model_weights.sub("decoder"), &tokens, config)?,
        );
        let model = BartModel::load_with(
            &model_weights,
            BartLayout::of(config),
            embeddings,
            "BartForConditionalGeneration",
        )?;
        ConditionalGeneration::new(
            model,
            &weights,
            vocab,
            config.clone(),
            (
                config.max_position_embeddings,
                config.common.decoder_start_token_id,
            ),
        )
    }
}

/// The name of the shared embeddings, `model.shared.weight` (`shared.weight` in a bare
/// `BartModel`), made to stand for an `embed_tokens` table when a checkpoint holds only that
/// (modeling_bart.py ties the three).
pub(crate) fn shared_embeddings(weights: &mut Weights) -> String {
    let body = if weights.has_sub("model") {
        "model."
    } else {
        ""
    };
    let shared = format!("{body}shared.weight");
    for stack in ["encoder", "decoder"] {
        let embed = format!("{body}{stack}.embed_tokens.weight");
        if !weights.contains(&shared) && weights.contains(&embed) {
            weights.alias(&shared, &embed);
        }
    }
    shared
}

impl<C> ConditionalGeneration<C> {
    /// `model` with `lm_head.weight` (the caller ties it) and `final_logits_bias` (zeros when
    /// absent, as transformers' `_keys_to_ignore_on_load_missing`), for `config`, whose
    /// `max_position_embeddings` and `decoder_start_token_id` generation takes.
    pub(crate) fn new(
        model: BartModel,
        weights: &Weights,
        vocab: usize,
        config: C,
        (max_positions, decoder_start_token_id): (usize, Option<u32>),
    ) -> Result<Self> {
        let d_model = model.layout.d_model;
        let weight = weights.get("lm_head.weight", &[vocab, d_model])?;
        let bias = if weights.contains("final_logits_bias") {
            weights
                .get("final_logits_bias", &[1, vocab])?
                .as_slice()
                .to_vec()
        } else {
            vec![0.0; vocab]
        };
        Ok(Self {
            model,
            lm_head: Linear::from_weight(
                &weights.full_name("lm_head"),
                weight.view2()?,
                Some(&bias),
            )?,
            lm_head_weight: weight,
            bias_is_zero: bias.iter().all(|&value| value == 0.0),
            screen: OnceLock::new(),
            config,
            max_positions,
            decoder_start_token_id,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &C {
        &self.config
    }

    /// The encoder and decoder.
    pub fn model(&self) -> &BartModel {
        &self.model
    }

    /// Runs the encoder; see [`BartModel::encode`].
    ///
    /// # Errors
    /// As [`BartModel::encode`].
    pub fn encode(
        &self,
        input: &EncoderInput<'_>,
        output_hidden_states: bool,
    ) -> Result<EncoderOutput> {
        self.model.encode(input, output_hidden_states)
    }

    /// Runs the encoder once per input and returns the decoder's cache for `rows_per_input` rows
    /// per input (beams) of up to `capacity` positions; see [`BartModel::start_from_encoder`].
    ///
    /// # Errors
    /// As [`BartModel::encode`]; `rows_per_input` 0.
    pub fn start(
        &self,
        input: &EncoderInput<'_>,
        rows_per_input: usize,
        capacity: usize,
    ) -> Result<Seq2SeqCache> {
        let output = self.model.encode(input, false)?;
        self.model.start_from_encoder(
            output.last_hidden_state.view(),
            input.attention_mask,
            rows_per_input,
            capacity,
        )
    }

    /// Runs the decoder on `decoder_input_ids` after the positions in `cache` (appending to it):
    /// the logits of every new position and, when asked for, the decoder's hidden states.
    ///
    /// # Shapes
    /// `decoder_input_ids`: (rows, new), rows = `cache.rows()`; see [`DecoderOutput`].
    ///
    /// # Errors
    /// An id beyond the vocabulary, a position beyond `max_position_embeddings`, a cache of other
    /// rows or too small, no new position.
    pub fn decode(
        &self,
        decoder_input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
        output_hidden_states: bool,
    ) -> Result<DecoderOutput> {
        let (rows, new) = decoder_input_ids.dim();
        let mut states = output_hidden_states.then(Vec::new);
        let hidden = self
            .model
            .decode_hidden(decoder_input_ids, cache, states.as_mut())?;
        let vocab = self.lm_head.out_features();
        let d_model = self.model.layout.d_model;
        Ok(DecoderOutput {
            logits: self
                .logits(hidden.view())?
                .into_shape_with_order((rows, new, vocab))
                .expect("logits are (rows × new, vocab)"),
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

    /// The logits of each row's last new position, (rows, vocab): a generation step.
    ///
    /// # Errors
    /// As [`ConditionalGeneration::decode`].
    pub fn decode_last(
        &self,
        decoder_input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<Array2<f32>> {
        let hidden = self.decode_last_hidden(decoder_input_ids, cache)?;
        self.logits(hidden.view())
    }

    /// The decoder's final hidden state of each row's last new position, (rows, d_model).
    ///
    /// # Errors
    /// As [`ConditionalGeneration::decode`].
    pub fn decode_last_hidden(
        &self,
        decoder_input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<Array2<f32>> {
        let new = decoder_input_ids.ncols();
        let hidden = self.model.decode_hidden(decoder_input_ids, cache, None)?;
        Ok(hidden.slice(s![new - 1..;new, ..]).to_owned())
    }

    /// Each row's largest logit's id (the first on ties), as the head followed by an argmax,
    /// from an 8-bit screen of the head rechecked in f32 ([`ArgmaxScreen`]); `None` when
    /// `final_logits_bias` is not zero or the screen cannot decide (then compute the logits).
    ///
    /// # Shapes
    /// `hidden`: (rows, d_model).
    pub fn greedy_tokens(&self, hidden: ArrayView2<'_, f32>) -> Option<Vec<u32>> {
        if !self.bias_is_zero {
            return None;
        }
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
                screen
                    .argmax(&row.to_vec(), weight)
                    .and_then(|index| u32::try_from(index).ok())
            })
            .collect()
    }

    /// The LM head: `hidden · lm_headᵀ + final_logits_bias`, (rows, vocab).
    ///
    /// # Errors
    /// A `hidden` of the wrong width.
    pub fn logits(&self, hidden: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        Ok(self.lm_head.forward(hidden)?)
    }
}

impl<C: Send + Sync> Generative for ConditionalGeneration<C> {
    type Cache = Seq2SeqCache;

    fn vocab_size(&self) -> usize {
        self.lm_head.out_features()
    }

    fn max_positions(&self) -> Option<usize> {
        Some(self.max_positions)
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
            self.model.name,
            prompts,
            decoder_start_token_id,
            self.decoder_start_token_id,
            |input| ConditionalGeneration::start(self, input, expand, capacity),
        )
    }

    fn forward_last(
        &self,
        input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<Array2<f32>> {
        self.decode_last(input_ids, cache)
    }

    /// Through the 8-bit screen of the LM head ([`ConditionalGeneration::greedy_tokens`]); the
    /// logits when it cannot decide.
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
