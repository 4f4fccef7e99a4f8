//! oxformer-tensor: the tensor core of oxformer.
//!
//! Tensors are [`ndarray`] arrays and views (re-exported as [`ndarray`]); the kernels here are what
//! a transformer forward pass spends its time in:
//!
//! - [`matmul_packed`]: `C = A·B` against weights packed once ([`PackedMatrix`]), with a fused
//!   [`Epilogue`] (bias, [`Activation`], residual); [`matmul`] and [`batched_matmul`] for the rest.
//! - [`attention`]: scaled-dot-product attention with padding and causal masks.
//! - [`layer_norm`], [`softmax_rows`], [`apply_activation`], [`gather_rows`], and f16/bf16 → f32.
//! - [`ArgmaxScreen`]: the exact argmax of a language-model head's scores from an 8-bit copy of
//!   its weights (greedy decoding), rows rechecked in f32.
//! - [`ThreadPool`]: run kernels on a chosen number of threads; [`team`]: keep them awake;
//!   [`for_each_part`] and [`map_parts`]: split work of one's own over them as the kernels do.
//!
//! Every fast kernel has a plain reference beside it (`*_reference`), which tests compare against.
//!
//! Used alone, on plain ndarray arrays:
//!
//! ```
//! use oxformer_tensor::ndarray::{Array2, Array4};
//! use oxformer_tensor::{
//!     AttentionMask, Epilogue, PackedMatrix, attention, attention_reference, gemm_reference,
//!     matmul_packed,
//! };
//!
//! // A weight of a torch.nn.Linear ([out, in]), packed once, then used for many products.
//! let weight = Array2::from_shape_fn((96, 64), |(i, j)| ((i * 31 + j * 17) % 13) as f32 / 13.0);
//! let packed = PackedMatrix::from_linear_weight(weight.view());
//! let x = Array2::from_shape_fn((7, 64), |(i, j)| ((i + j) % 5) as f32 - 2.0);
//! let y = matmul_packed(x.view(), &packed, &Epilogue::none()); // (7, 96) = x · weightᵀ
//! let expected = gemm_reference(x.view(), weight.t(), &Epilogue::none());
//! assert!(y.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-4));
//!
//! // Attention over (batch, heads, tokens, head_dim), causal as in a decoder.
//! let q = Array4::from_shape_fn((1, 2, 5, 8), |(_, h, t, d)| ((h + t * d) % 7) as f32 / 7.0);
//! let mask = AttentionMask { key_padding: None, causal: true, bias: None };
//! let out = attention(q.view(), q.view(), q.view(), &mask, 8f32.sqrt().recip());
//! let expected = attention_reference(q.view(), q.view(), q.view(), &mask, 8f32.sqrt().recip());
//! assert!(out.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5));
//! ```
//!
//! # Instruction sets
//! The kernels are written once, generic over the vector instruction set, and compiled for
//! AVX-512F and for AVX2 + FMA; which one runs is chosen once per process ([`isa()`]): the best
//! this CPU has, capped by `OXFORMER_ISA=avx512|avx2|scalar` (so a machine with AVX-512 can time
//! the AVX2 path; `scalar` is plain Rust, with matrixmultiply for the product). Within that cap
//! `OXFORMER_GEMM_PATH=avx512|avx2|portable|reference` can still force the product's path
//! ([`gemm_path`]). The `*_on` variants ([`matmul_packed_into_on`] with a [`GemmPath`];
//! [`attention_into_on`], [`layer_norm_in_place_on`], [`softmax_rows_on`],
//! [`apply_activation_on`] with an [`Isa`]) take it explicitly, so that tests and benchmarks can
//! compare every path in one process.
//!
//! # Threads
//! Kernels run on the rayon pool they are called from; [`ThreadPool::install`] chooses it. Inside
//! [`team`], the pool's other threads stay awake between kernels (a decoding step: ~50 small
//! kernels in a row). No kernel splits a reduction between threads, so results are bit-identical
//! for any thread count, with or without a team.

mod activation;
mod buffer;
mod convert;
mod error;
mod gather;
mod isa;
mod kernels;
mod simd;
mod threads;

pub use ndarray;

pub use activation::{Activation, apply_activation, apply_activation_on};
pub use buffer::{line_aligned, line_padded};
pub use convert::{bf16_to_f32, f16_to_f32};
pub use error::{Error, Result};
pub use gather::gather_rows;
pub use isa::{
    CacheSizes, Isa, cache_sizes, cpu_isas, cpu_model, detected_isa, fma_peak_loop, isa,
};
pub use kernels::attention::{
    AttentionMask, KeyPadding, attention, attention_into, attention_into_on, attention_reference,
};
pub use kernels::gemm::{
    Epilogue, GemmPath, PackedMatrix, RowNorm, Transpose, batched_matmul, cpu_paths, gemm_path,
    gemm_reference, matmul, matmul_packed, matmul_packed_into, matmul_packed_into_on,
};
pub use kernels::norm::{
    layer_norm, layer_norm_in_place, layer_norm_in_place_on, layer_norm_reference,
};
pub use kernels::screen::{ArgmaxScreen, Screened, argmax_reference};
pub use kernels::softmax::{softmax_reference, softmax_rows, softmax_rows_on};
pub use threads::{ThreadPool, for_each_chunk_mut, for_each_part, map_parts, team};
