//! oxformer-pipelines: HF transformers' pipelines, with the same options and output shapes.

pub mod generation;
pub mod text_generation;
