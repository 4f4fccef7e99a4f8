//! oxformer-models: `config.json` types and the transformer architectures.

pub mod config;
mod error;
pub mod gpt2;

pub use config::{
    BertConfig, CommonConfig, DistilBertConfig, Gpt2Config, HiddenAct, ModelConfig,
    PositionEmbeddingType, ProblemType, SummaryType,
};
pub use error::{Error, Result};
