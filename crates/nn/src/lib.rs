//! oxformer-nn: model weights and the layers built from them.
//!
//! - [`SafeTensors`] opens `model.safetensors` (or a sharded set) over a memory map and
//!   validates every header; [`Tensor`] is f32 data, zero-copy where the file allows.
//! - [`Weights`] looks tensors up by HF's exact dotted names under a prefix, with shape
//!   checks, closest-name suggestions and aliases for tied weights.
//! - [`hub`] resolves a model id (`org/name`) to a folder in the local Hugging Face cache.
//! - [`layers`]: [`Linear`] (weights packed once, fused epilogue), [`Embedding`], [`LayerNorm`].

mod checkpoint;
mod error;
pub mod hub;
pub mod layers;
mod tensor;
mod weights;

pub use ::safetensors::Dtype;
pub use checkpoint::{SafeTensors, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
pub use error::{Error, Result};
pub use hub::resolve_model;
pub use layers::{Embedding, FeedForward, LayerNorm, Linear, MultiHeadAttention};
pub use tensor::Tensor;
pub use weights::Weights;
