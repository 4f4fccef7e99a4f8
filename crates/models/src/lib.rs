//! oxformer-models: `config.json` types and the transformer architectures.
//!
//! Encoders: [`bert::BertModel`], [`roberta::RobertaModel`] (also XLM-RoBERTa) and
//! [`distilbert::DistilBertModel`], each taking an [`EncoderInput`] and returning an
//! [`EncoderOutput`]. Generation ([`generation::Generative`]): the decoder-only
//! [`gpt2::Gpt2LmHeadModel`], and the encoder-decoder [`t5::T5ForConditionalGeneration`],
//! [`bart::BartForConditionalGeneration`] and [`marian::MarianMTModel`], which run the encoder
//! once per input into a [`seq2seq::Seq2SeqCache`] and then decode step by step.
//!
//! Used alone, without task heads or tokenizer:
//!
//! ```
//! use ndarray::array;
//! use oxformer_models::bert::BertModel;
//! use oxformer_models::{EncoderInput, ForwardOptions, ModelConfig};
//! use oxformer_nn::Weights;
//!
//! let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/models/bert"));
//! let ModelConfig::Bert(config) = ModelConfig::from_folder(dir)? else {
//!     unreachable!("a BERT folder");
//! };
//! let model = BertModel::load(&Weights::from_folder(dir)?, &config, true)?;
//! let (ids, mask) = (array![[2u32, 40, 41, 3], [2, 42, 3, 0]], array![[1u32, 1, 1, 1], [1, 1, 1, 0]]);
//! let input = EncoderInput::new(ids.view(), mask.view());
//! let options = ForwardOptions { output_hidden_states: true, ..Default::default() };
//! let output = model.forward(&input, &options)?;
//! assert_eq!(output.last_hidden_state.dim(), (2, 4, config.hidden_size));
//! assert_eq!(output.hidden_states.len(), config.num_hidden_layers + 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bart;
pub mod bert;
pub mod config;
pub mod distilbert;
mod error;
pub mod generation;
pub mod gpt2;
mod input;
pub mod marian;
pub mod roberta;
pub mod seq2seq;
pub mod t5;
mod workspace;

pub use config::{
    BartConfig, BertConfig, CommonConfig, DistilBertConfig, Gpt2Config, HiddenAct, MarianConfig,
    ModelConfig, PositionEmbeddingType, ProblemType, SummaryType, T5Config,
};
pub use error::{Error, Result};
pub use input::{EncoderInput, EncoderOutput, ForwardOptions};
