//! The layers every transformer is built from, loaded by HF's tensor names.
//!
//! Each layer is loaded once from a prefix-scoped [`Weights`](crate::Weights) view and keeps its
//! weights in the form its kernel wants (a [`Linear`] packs its matrix once); `forward` only reads.

mod embedding;
mod layer_norm;
mod linear;

pub use embedding::Embedding;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
