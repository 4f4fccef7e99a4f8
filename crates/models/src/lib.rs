//! oxformer-models: `config.json` types and the transformer architectures.
//!
//! Encoders: [`bert::BertModel`], [`roberta::RobertaModel`] (also XLM-RoBERTa) and
//! [`distilbert::DistilBertModel`], each taking an [`EncoderInput`] and returning an
//! [`EncoderOutput`].

pub mod bert;
pub mod config;
pub mod distilbert;
mod error;
pub mod gpt2;
mod input;
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
