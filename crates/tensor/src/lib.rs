//! oxformer-tensor: the tensor core of oxformer.
//!
//! Tensors are [`ndarray`] arrays and views (re-exported as [`ndarray`]); the kernels here are what
//! a transformer forward pass spends its time in:
//!
//! - [`matmul_packed`]: `C = A·B` against weights packed once ([`PackedMatrix`]), with a fused
//!   [`Epilogue`] (bias, [`Activation`], residual); [`matmul`] and [`batched_matmul`] for the rest.
//! - [`attention`]: scaled-dot-product attention with padding and causal masks.
//! - [`layer_norm`], [`softmax_rows`], [`apply_activation`], [`gather_rows`], and f16/bf16 → f32.
//! - [`ThreadPool`]: run kernels on a chosen number of threads.
//!
//! Every fast kernel has a plain reference beside it (`*_reference`), which tests compare against.

mod activation;
mod convert;
mod error;
mod gather;
mod kernels;
mod simd;
mod threads;

pub use ndarray;

pub use activation::{Activation, apply_activation, apply_activation_on};
pub use convert::{bf16_to_f32, f16_to_f32};
pub use error::{Error, Result};
pub use gather::gather_rows;
pub use kernels::attention::{
    AttentionMask, attention, attention_into, attention_into_on, attention_reference,
};
pub use kernels::gemm::{
    Epilogue, GemmPath, PackedMatrix, Transpose, batched_matmul, cpu_paths, gemm_path,
    gemm_reference, matmul, matmul_packed, matmul_packed_into, matmul_packed_into_on,
};
pub use kernels::norm::{
    layer_norm, layer_norm_in_place, layer_norm_in_place_on, layer_norm_reference,
};
pub use kernels::softmax::{softmax_reference, softmax_rows, softmax_rows_on};
pub use threads::ThreadPool;
