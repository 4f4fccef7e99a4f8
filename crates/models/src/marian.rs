//! Marian (opus-mt), as transformers' `models/marian/modeling_marian.py` (4.57.6): BART's layers
//! ([`crate::bart`], which modeling_marian.py copies) with sinusoidal positions, token embeddings
//! scaled by √d_model (`scale_embedding`), no embedding LayerNorm, the encoder, decoder and LM head
//! sharing one table (`share_encoder_decoder_embeddings`), and `final_logits_bias`. Generation
//! starts the decoder at `<pad>` (`decoder_start_token_id`).

use std::path::Path;

use ndarray::{Array2, ArrayView2};
use oxformer_nn::{Embedding, Weights};

use crate::bart::{BartEmbeddings, BartLayout, BartModel, PositionTable, Seq2SeqLm};
use crate::config::{MarianConfig, ModelConfig};
use crate::error::{Error, Result};
use crate::generation::{Generative, NextStep, Prompts};
use crate::input::{EncoderInput, EncoderOutput};
use crate::seq2seq::{DecoderOutput, Seq2SeqCache, greedy_step, start_generation};

const MODEL: &str = "MarianMTModel";

/// modeling_marian.py `MarianSinusoidalPositionalEmbedding._init_weight`: position `p`, feature
/// `j < dim/2` is `sin(p / 10000^(2j/dim))`, feature `dim/2 + j` the `cos` of the same angle (the
/// sin half, then the cos half; not interleaved), computed in f64 and stored in f32.
///
/// # Shapes
/// result: (positions, dim).
pub fn sinusoidal_positions(positions: usize, dim: usize) -> Array2<f32> {
    // numpy: position_enc[pos, j] = pos / 10000^(2 (j // 2) / dim); sin of the even j, cos of the odd
    let sentinel = dim.div_ceil(2);
    Array2::from_shape_fn((positions, dim), |(position, feature)| {
        let (j, sine) = if feature < sentinel {
            (2 * feature, true)
        } else {
            (2 * (feature - sentinel) + 1, false)
        };
        let angle = position as f64 / 10000f64.powf((2 * (j / 2)) as f64 / dim as f64);
        (if sine { angle.sin() } else { angle.cos() }) as f32
    })
}

impl BartLayout {
    fn of_marian(config: &MarianConfig) -> Self {
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

/// modeling_marian.py `MarianMTModel`: the encoder and decoder ([`BartModel`]'s layers) and the LM
/// head tied to the decoder's embeddings, plus `final_logits_bias`.
#[derive(Debug, Clone)]
pub struct MarianMTModel {
    inner: Seq2SeqLm,
    config: MarianConfig,
}

impl MarianMTModel {
    /// Loads `config.json` and the weights of a model folder.
    ///
    /// # Errors
    /// A missing or invalid config, a config of another `model_type`, missing weights.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let config = match ModelConfig::from_folder(dir)? {
            ModelConfig::Marian(config) => config,
            other => {
                return Err(Error::ConfigField {
                    source_name: dir.join("config.json").display().to_string(),
                    field: "model_type".to_string(),
                    reason: format!("expected `marian`, found `{}`", other.model_type()),
                });
            }
        };
        Self::load(Weights::from_folder(dir)?, &config)
    }

    /// Loads `model.shared` (or, with `share_encoder_decoder_embeddings` false,
    /// `model.encoder.embed_tokens` and `model.decoder.embed_tokens`), `model.encoder.*`,
    /// `model.decoder.*`, `final_logits_bias` and `lm_head` (tied to the decoder's table unless
    /// the config unties it). The sinusoidal tables are computed, not read.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its full dotted path.
    pub fn load(mut weights: Weights, config: &MarianConfig) -> Result<Self> {
        let body = if weights.has_sub("model") {
            "model."
        } else {
            ""
        };
        let d_model = config.d_model;
        let (encoder_tokens, decoder_tokens) = if config.share_encoder_decoder_embeddings {
            let shared = format!("{body}shared.weight");
            for stack in ["encoder", "decoder"] {
                let embed = format!("{body}{stack}.embed_tokens.weight");
                if !weights.contains(&shared) && weights.contains(&embed) {
                    weights.alias(&shared, &embed);
                }
            }
            (shared.clone(), shared)
        } else {
            (
                format!("{body}encoder.embed_tokens.weight"),
                format!("{body}decoder.embed_tokens.weight"),
            )
        };
        ModelConfig::Marian(config.clone()).tie_weights(
            &mut weights,
            "lm_head.weight",
            &decoder_tokens,
        );
        let table = |name: &str, vocab: usize| {
            let prefix = name.strip_suffix(".weight").expect("a weight name");
            Embedding::load(&weights.sub(prefix), vocab, d_model)
        };
        let target_vocab = config.target_vocab_size();
        let positions = sinusoidal_positions(config.max_position_embeddings, d_model);
        let embeddings = |tokens: Embedding| BartEmbeddings {
            tokens,
            scale: if config.scale_embedding {
                (d_model as f32).sqrt()
            } else {
                1.0
            },
            positions: PositionTable::Fixed(positions.clone()),
            max_positions: config.max_position_embeddings,
            layer_norm: None,
        };
        let model = BartModel::load_with(
            &weights.sub_if_present("model"),
            BartLayout::of_marian(config),
            (
                embeddings(table(&encoder_tokens, config.vocab_size)?),
                embeddings(table(&decoder_tokens, target_vocab)?),
            ),
            MODEL,
        )?;
        Ok(Self {
            inner: Seq2SeqLm::new(model, &weights, target_vocab)?,
            config: config.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MarianConfig {
        &self.config
    }

    /// The encoder and decoder.
    pub fn model(&self) -> &BartModel {
        self.inner.model()
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
        self.inner.encode(input, output_hidden_states)
    }

    /// Runs the encoder once per input and returns the decoder's cache for `rows_per_input` rows
    /// per input (beams) of up to `capacity` positions.
    ///
    /// # Errors
    /// As [`BartModel::encode`]; `rows_per_input` 0.
    pub fn start(
        &self,
        input: &EncoderInput<'_>,
        rows_per_input: usize,
        capacity: usize,
    ) -> Result<Seq2SeqCache> {
        self.inner.start(input, rows_per_input, capacity)
    }

    /// Runs the decoder after the positions in `cache` (appending to it): the logits of every
    /// new position and, when asked for, the decoder's hidden states.
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
        self.inner
            .decode(decoder_input_ids, cache, output_hidden_states)
    }

    /// The logits of each row's last new position, (rows, vocab): a generation step.
    ///
    /// # Errors
    /// As [`MarianMTModel::decode`].
    pub fn decode_last(
        &self,
        decoder_input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<Array2<f32>> {
        self.inner.decode_last(decoder_input_ids, cache)
    }

    /// The decoder's final hidden state of each row's last new position, (rows, d_model).
    ///
    /// # Errors
    /// As [`MarianMTModel::decode`].
    pub fn decode_last_hidden(
        &self,
        decoder_input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<Array2<f32>> {
        self.inner.decode_last_hidden(decoder_input_ids, cache)
    }

    /// Each row's largest logit's id (the first on ties), from an 8-bit screen of the head
    /// rechecked in f32; `None` when `final_logits_bias` is not zero or the screen cannot decide.
    ///
    /// # Shapes
    /// `hidden`: (rows, d_model).
    pub fn greedy_tokens(&self, hidden: ArrayView2<'_, f32>) -> Option<Vec<u32>> {
        self.inner.greedy_tokens(hidden)
    }

    /// The LM head: `hidden · lm_headᵀ + final_logits_bias`, (rows, vocab).
    ///
    /// # Errors
    /// A `hidden` of the wrong width.
    pub fn logits(&self, hidden: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        self.inner.logits(hidden)
    }
}

impl Generative for MarianMTModel {
    type Cache = Seq2SeqCache;

    fn vocab_size(&self) -> usize {
        self.config.target_vocab_size()
    }

    fn max_positions(&self) -> Option<usize> {
        Some(self.config.max_position_embeddings)
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
            "MarianMTModel",
            prompts,
            decoder_start_token_id,
            self.config.common.decoder_start_token_id,
            |input| MarianMTModel::start(self, input, expand, capacity),
        )
    }

    fn forward_last(
        &self,
        input_ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<Array2<f32>> {
        self.decode_last(input_ids, cache)
    }

    /// Through the 8-bit screen of the LM head ([`MarianMTModel::greedy_tokens`]); the logits
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
