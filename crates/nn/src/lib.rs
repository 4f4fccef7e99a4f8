//! oxformer-nn: model weights and the layers built from them.
//!
//! - [`SafeTensors`] opens `model.safetensors` (or a sharded set) over a memory map and
//!   validates every header; [`Tensor`] is f32 data, zero-copy where the file allows.
//! - [`Weights`] looks tensors up by HF's exact dotted names under a prefix, with shape
//!   checks, closest-name suggestions and aliases for tied weights.
//! - [`hub`] resolves a model id (`org/name`) to a folder in the Hugging Face cache, downloading
//!   what is missing with the `hub` feature.
//! - [`layers`]: [`Linear`] (weights packed once, fused epilogue), [`Embedding`], [`LayerNorm`],
//!   [`MultiHeadAttention`], [`FeedForward`]; `crates/models/examples/custom_model.rs` builds a
//!   model from them.
//!
//! Used alone, on a checkpoint:
//!
//! ```
//! use oxformer_nn::{LayerNorm, Linear, Weights};
//!
//! let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/models/bert"));
//! let weights = Weights::from_folder(dir)?;
//! // Tensors by HF's dotted names, under a prefix.
//! let layer = weights.sub("encoder").sub("layer").sub(0);
//! let query = Linear::load(&layer.sub("attention").sub("self").sub("query"), 32, 32)?;
//! let norm = LayerNorm::load(&layer.sub("output").sub("LayerNorm"), 32, 1e-12)?;
//! let x = ndarray::Array2::<f32>::ones((3, 32));
//! let y = norm.forward(query.forward(x.view())?.view(), Some(x.view()))?; // (3, 32)
//! assert_eq!(y.dim(), (3, 32));
//! // A missing tensor is an error naming its full path.
//! let missing = Linear::load(&layer.sub("attention").sub("nope"), 32, 32).unwrap_err();
//! assert!(missing.to_string().contains("encoder.layer.0.attention.nope.weight"));
//! # Ok::<(), oxformer_nn::Error>(())
//! ```

mod checkpoint;
mod error;
pub mod hub;
pub mod layers;
mod tensor;
mod weights;

pub use ::safetensors::Dtype;
pub use checkpoint::{SafeTensors, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
pub use error::{Error, Result};
pub use hub::{resolve_model, resolve_model_at};
pub use layers::{Embedding, FeedForward, LayerNorm, Linear, MultiHeadAttention};
pub use tensor::Tensor;
pub use weights::Weights;
