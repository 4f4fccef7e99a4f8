//! Marian (opus-mt), as transformers' `models/marian/modeling_marian.py` (4.57.6): BART's layers
//! ([`crate::bart`], which modeling_marian.py copies) with sinusoidal positions, token embeddings
//! scaled by √d_model (`scale_embedding`), no embedding LayerNorm, the encoder, decoder and LM head
//! sharing one table (`share_encoder_decoder_embeddings`), and `final_logits_bias`. Generation
//! starts the decoder at `<pad>` (`decoder_start_token_id`).

use std::path::Path;

use ndarray::Array2;
use oxformer_nn::{Embedding, Weights};

use crate::bart::{
    BartEmbeddings, BartLayout, BartModel, ConditionalGeneration, PositionTable, shared_embeddings,
};
use crate::config::{MarianConfig, ModelConfig};
use crate::error::{Error, Result};

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

/// modeling_marian.py `MarianMTModel`: BART's [`ConditionalGeneration`] (which it copies) over
/// [`MarianConfig`], with Marian's embeddings; the LM head is tied to the decoder's embeddings,
/// plus `final_logits_bias`.
pub type MarianMTModel = ConditionalGeneration<MarianConfig>;

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
            let shared = shared_embeddings(&mut weights);
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
        ConditionalGeneration::new(
            model,
            &weights,
            target_vocab,
            config.clone(),
            (
                config.max_position_embeddings,
                config.common.decoder_start_token_id,
            ),
        )
    }
}
