//! The layers every transformer is built from, loaded by HF's tensor names.
//!
//! Each layer is loaded once from a prefix-scoped [`Weights`](crate::Weights) view, or built
//! from arrays in hand ([`Linear::from_weight`], [`Embedding::from_table`],
//! [`LayerNorm::from_parts`], [`MultiHeadAttention::from_parts`], [`FeedForward::from_parts`]),
//! and keeps its weights in the form its kernel wants (a [`Linear`] packs its matrix once);
//! `forward` only reads. `crates/models/examples/custom_model.rs` builds a model from them.

mod attention;
mod embedding;
mod feed_forward;
mod layer_norm;
mod linear;

pub use attention::MultiHeadAttention;
pub use embedding::Embedding;
pub use feed_forward::FeedForward;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
