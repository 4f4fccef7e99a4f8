//! oxformer-models: `config.json` types and the transformer architectures.
//!
//! Encoders: [`bert::BertModel`], [`roberta::RobertaModel`] (also XLM-RoBERTa) and
//! [`distilbert::DistilBertModel`], each taking an [`EncoderInput`] and returning an
//! [`EncoderOutput`]. Decoders for generation: [`gpt2::Gpt2LmHeadModel`], implementing
//! [`generation::Generative`].

pub mod bert;
pub mod config;
pub mod distilbert;
mod error;
pub mod generation;
pub mod gpt2;
mod input;
pub mod roberta;
mod workspace;

pub use config::{
    BertConfig, CommonConfig, DistilBertConfig, Gpt2Config, HiddenAct, ModelConfig,
    PositionEmbeddingType, ProblemType, SummaryType,
};
pub use error::{Error, Result};
pub use input::{EncoderInput, EncoderOutput};
