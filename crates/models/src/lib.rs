//! oxformer-models: `config.json` types and the transformer architectures.
//!
//! Encoders: [`bert::BertModel`], [`roberta::RobertaModel`] (also XLM-RoBERTa) and
//! [`distilbert::DistilBertModel`], each taking an [`EncoderInput`] and returning an
//! [`EncoderOutput`]. Generation ([`generation::Generative`]): the decoder-only
//! [`gpt2::Gpt2LmHeadModel`], and the encoder-decoder [`t5::T5ForConditionalGeneration`],
//! [`bart::BartForConditionalGeneration`] and [`marian::MarianMTModel`], which run the encoder
//! once per input into a [`seq2seq::Seq2SeqCache`] and then decode step by step.

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
pub use input::{EncoderInput, EncoderOutput};
